//! A run's data, opened and checked against its model before any update: the mixture's training
//! sources and the held-out set. Shared by the trainer and the coordinate check on text, so both
//! refuse the same bad data with the same message.

use crate::config::RunConfig;
use crate::error::{InvalidSetting, TrainError};
use minicpm_data::mixture::{Mixture, MixtureCursor, PhaseWeights};
use minicpm_data::{DataError, TokenDataset};

pub struct RunData {
    /// The training sources, in the mixture's fixed (name) order.
    pub sources: Vec<(String, TokenDataset)>,
    /// Phase -> source -> weight.
    pub weights: PhaseWeights,
    pub valid: TokenDataset,
}

impl RunData {
    /// Opens `cfg.data` and checks each dataset fits a model of `vocab_size` tokens and holds
    /// more than one sequence of `cfg.train.seq_len`.
    pub fn open(cfg: &RunConfig, vocab_size: usize) -> Result<Self, TrainError> {
        let (source_paths, weights) = cfg.data.resolved_mixture()?;
        let mut sources = Vec::with_capacity(source_paths.len());
        for (name, path) in &source_paths {
            sources.push((name.clone(), TokenDataset::open(path)?));
        }
        let valid_paths = cfg
            .data
            .valid
            .as_ref()
            .map(|v| v.as_slice().to_vec())
            .unwrap_or_default();
        if valid_paths.is_empty() {
            return Err(InvalidSetting::new(
                "data.valid",
                "data.valid: no held-out token-shard directory configured",
            )
            .into());
        }
        let valid = TokenDataset::open_many(&valid_paths)?;
        let data = RunData {
            sources,
            weights,
            valid,
        };
        let mut all: Vec<(String, &TokenDataset)> = data
            .sources
            .iter()
            .map(|(n, d)| (format!("sources.{n}"), d))
            .collect();
        all.push(("valid".into(), &data.valid));
        for (what, ds) in all {
            if ds.index.vocab_size > vocab_size {
                return Err(InvalidSetting::new(
                    format!("data.{what}"),
                    format!(
                        "data.{what}: token ids go up to {} but model.vocab_size is {vocab_size}",
                        ds.index.vocab_size
                    ),
                )
                .into());
            }
            if ds.tokens.len() <= cfg.train.seq_len {
                return Err(InvalidSetting::new(
                    format!("data.{what}"),
                    format!(
                        "data.{what}: {} tokens is too few for sequences of {}",
                        ds.tokens.len(),
                        cfg.train.seq_len
                    ),
                )
                .into());
            }
        }
        Ok(data)
    }

    /// The training stream of sequences of `seq_len`, from `cursor` (the default to start).
    pub fn mixture(
        &self,
        seq_len: usize,
        seed: u64,
        cursor: &MixtureCursor,
    ) -> Result<Mixture<'_>, DataError> {
        let borrowed = self.sources.iter().map(|(n, d)| (n.clone(), d)).collect();
        Mixture::new(borrowed, &self.weights, seq_len, seed, cursor)
    }
}
