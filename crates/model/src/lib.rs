//! The MiniCPM model: configuration, muP rules, the decoder, KV cache and HF checkpoint I/O.

pub mod config;
pub mod error;
pub mod hf;
pub mod init;
pub mod kernels;
pub mod kv_cache;
pub mod model;
pub mod moe;
pub mod mup;
pub mod named;
pub mod params;
pub mod rope;
pub mod safetensors_io;
pub mod strict;
pub mod weights;

pub use config::ModelConfig;
pub use error::ModelError;
pub use kv_cache::KvCache;
pub use model::{MiniCpm, Site};
pub use mup::{Parametrization, TensorRole};
pub use params::ParamCounts;
pub use weights::Weights;
