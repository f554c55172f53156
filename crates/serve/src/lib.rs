//! Using trained models: sampling and incremental generation with a KV cache.

pub mod generate;
pub mod sampling;

pub use generate::generate;
pub use sampling::{Sampler, SamplingParams};
