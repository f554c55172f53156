//! Using trained models: sampling, incremental generation with a KV cache, chat templates, and
//! llama.cpp's formats: weight-only quantisation in its block layouts and GGUF files.

pub mod api;
pub use minicpm_data::chat_template;
pub mod engine;
pub mod eval;
pub mod gguf;
pub mod gguf_model;
pub mod logprobs;
pub mod model_files;
pub mod quant;
pub mod runtime;
pub mod sampling;
pub mod synthetic;
pub mod text_stream;

pub use sampling::{Sampler, SamplingParams};
