//! The inference runtime: the model without autodiff, its weights in their stored precision or
//! quantised, a preallocated KV cache, and a forward pass over a batch of sequences. The training
//! forward (`minicpm_model::MiniCpm`) is the reference it is tested against.

pub mod attention;
pub mod cache;
pub mod forward;
pub mod generate;
pub mod kernels;
pub mod loglikelihood;
pub mod matrix;
pub mod memory_source;
pub mod model;
pub mod rope;
pub mod safetensors_source;
pub mod score;
pub mod source;
pub mod speculative;

#[cfg(test)]
pub(crate) mod tests;

pub use cache::{CacheError, KvCache};
pub use forward::{Logits, RuntimeError, Sequence};
pub use generate::Request;
pub use loglikelihood::Loglikelihood;
pub use matrix::Matrix;
pub use memory_source::MemorySource;
pub use model::InferenceModel;
pub use safetensors_source::SafetensorsSource;
pub use source::{RopeLayout, TensorSource};
