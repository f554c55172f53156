//! MiniCPM models as GGUF files of llama.cpp's `minicpm` architecture: written from an HF
//! directory the way llama.cpp's own converter writes them (export.rs), and read back as a
//! tensor source for the inference runtime (source.rs) with the configuration and tokenizer
//! they carry (config.rs).

pub mod config;
pub mod export;
pub mod names;
pub mod requantize;
pub mod source;
pub mod types;
pub mod vocab;

pub use config::{chat_template, config_from_gguf, tokenizer_json};
pub use export::{export, Summary};
pub use source::GgufSource;
pub use types::{tensor_type, FileType};

#[cfg(test)]
mod tests;
