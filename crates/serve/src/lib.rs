//! Using trained models: sampling, incremental generation with a KV cache, chat templates, and
//! weight-only quantisation in llama.cpp's block layouts.

pub mod chat_template;
pub mod generate;
pub mod quant;
pub mod sampling;

pub use generate::generate;
pub use sampling::{Sampler, SamplingParams};
