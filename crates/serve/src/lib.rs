//! Using trained models: sampling, incremental generation with a KV cache, chat templates, and
//! llama.cpp's formats: weight-only quantisation in its block layouts and GGUF files.

pub mod chat_template;
pub mod generate;
pub mod gguf;
pub mod gguf_model;
pub mod quant;
pub mod runtime;
pub mod sampling;

pub use generate::generate;
pub use sampling::{Sampler, SamplingParams};
