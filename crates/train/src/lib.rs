//! Training: AdamW with muP parameter groups, LR schedules, the step loop, checkpoints and exact
//! resume.

mod adamw_host;
pub mod bench;
pub mod branch;
pub mod branch_policy;
pub mod cadence;
pub mod checkpoint;
pub mod collective;
pub mod config;
pub mod coord_check;
pub mod data_parallel;
pub mod derived_run;
pub mod diagnostics;
pub mod dpo;
pub mod error;
pub mod extend;
pub mod finetune;
#[cfg(test)]
mod finetune_parity;
pub mod flops;
pub mod lanes;
pub mod length_schedule;
pub mod lm_head_loss;
pub mod loss;
pub mod metrics;
pub mod open_run;
pub mod optimizer;
pub mod optimizer_shard;
pub mod progress;
pub mod recipe;
pub mod run_data;
pub mod runs;
pub mod schedule;
pub mod step;
pub mod trainer;
pub mod upcycle;

pub use collective::Collective;
pub use config::RunConfig;
pub use error::{InvalidSetting, TrainError};
pub use step::{GradientHook, Objective, Step};
pub use trainer::{train, TrainOptions, TrainOutcome};
