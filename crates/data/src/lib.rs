//! Data for training: tokenizers, token shards on disk, and the deterministic batch stream the
//! trainer reads.

pub mod atomic_file;
pub mod batches;
mod bpe_merges;
pub mod chat_template;
pub mod conversation;
pub mod conversation_sets;
pub mod error;
pub mod eval_sets;
pub mod eval_task;
pub mod fast_encoder;
pub mod fetch;
pub mod held_out;
pub mod inputs;
mod memo;
pub mod mixture;
pub mod parquet_input;
pub mod passkey;
pub mod pre_tokens;
pub mod prepare;
mod read_ahead;
pub mod sft_batches;
pub mod shards;
pub mod test_support;
pub mod tokenizer;

pub use batches::{Batch, BatchStream, IGNORE};
pub use error::DataError;
pub use shards::TokenDataset;
pub use tokenizer::TextTokenizer;
