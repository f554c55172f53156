//! `metrics.jsonl`: one JSON object per logged update. On resume, records from updates after the
//! checkpoint are dropped first, so the file reads as one uninterrupted run.

use minicpm_model::safetensors_io::write_atomic;
use minicpm_model::ModelError;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const METRICS_FILE: &str = "metrics.jsonl";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// 0-based index of the optimizer update.
    pub step: u64,
    /// Training tokens consumed after this update.
    pub tokens: u64,
    /// Peak-group learning rate used by this update (base LR x schedule factor).
    pub lr: f64,
    pub loss: f64,
    pub grad_norm: f64,
    pub tok_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_bpb: Option<f64>,
    /// Cosine similarity of this update's gradient with the previous update's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_cos: Option<f64>,
    /// The largest absolute change of any single weight in this update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_update: Option<f64>,
    /// DPO: the rewards of this update's training pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewards: Option<Rewards>,
    /// DPO: the rewards of the held-out pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_rewards: Option<Rewards>,
    /// MoE: per layer, each expert's share of the held-out token-slots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expert_load: Option<Vec<Vec<f32>>>,
    /// MoE: per layer, the mean entropy (nats) of the router's softmax on held-out tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_entropy: Option<Vec<f32>>,
    /// Data parallelism: seconds per update spent summing gradients and gathering losses over
    /// the ranks, the mean over the updates since the previous record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reduce_s: Option<f64>,
    /// The row length of this update, in a run with a length schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_len: Option<usize>,
}

/// Mean implicit rewards `beta * (log pi - log ref)` of preference pairs' answers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rewards {
    pub chosen: f64,
    pub rejected: f64,
    pub margin: f64,
    /// Share of pairs whose chosen answer has the higher reward.
    pub accuracy: f64,
}

impl From<crate::dpo::PairStats> for Rewards {
    fn from(s: crate::dpo::PairStats) -> Self {
        Rewards {
            chosen: s.mean_chosen(),
            rejected: s.mean_rejected(),
            margin: s.margin(),
            accuracy: s.accuracy(),
        }
    }
}

pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    /// Opens the run's log, keeping only records of updates before `keep_before`.
    pub fn open(run: &Path, keep_before: u64) -> Result<Self, ModelError> {
        let path = run.join(METRICS_FILE);
        if path.exists() {
            let kept: Vec<Record> = read(&path)?
                .into_iter()
                .filter(|r| r.step < keep_before)
                .collect();
            let mut text = String::new();
            for r in &kept {
                text.push_str(&serde_json::to_string(r).expect("record serialises"));
                text.push('\n');
            }
            write_atomic(&path, text.as_bytes())?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| ModelError::io(&path, e))?;
        Ok(MetricsLog { path, file })
    }

    pub fn append(&mut self, r: &Record) -> Result<(), ModelError> {
        let mut line = serde_json::to_string(r).expect("record serialises");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| ModelError::io(&self.path, e))
    }
}

/// Reads every record; a torn last line (a crash mid-append) is dropped, any other bad line is an error.
pub fn read(path: &Path) -> Result<Vec<Record>, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        match serde_json::from_str(l) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
            Err(e) => {
                return Err(ModelError::Parse {
                    origin: format!("{}:{}", path.display(), i + 1),
                    msg: e.to_string(),
                })
            }
        }
    }
    Ok(out)
}
