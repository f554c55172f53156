//! `sweep-<param>.json`: what a learning-rate sweep leaves next to its points, the loss table
//! and every point's run, written and read back as one type.

use super::table::LrTable;
use minicpm_model::Parametrization;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The index's `kind`, checked on reading so that another index is not taken for this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LrSweepKind {
    #[serde(rename = "windtunnel-lr")]
    WindtunnelLr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrSweepIndex {
    pub kind: LrSweepKind,
    /// The training budget of every point as given: a count or a multiple of N (`20N`).
    pub tokens: String,
    pub table: LrTable,
    /// [`LrTable::best`]: each width's (learning rate, loss), None where no point finished.
    pub best: Vec<Option<(f64, f64)>>,
    pub points: Vec<LrSweepPoint>,
}

/// One (width, learning rate) point and how its run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrSweepPoint {
    pub name: String,
    pub dir: PathBuf,
    pub param: Parametrization,
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub lr: f64,
    /// None until the run has a summary (it has not finished).
    pub non_embedding_params: Option<u64>,
    pub steps: u64,
    pub finished: bool,
    /// None before the run finished, or when its loss was not finite (JSON has no NaN).
    pub eval_loss: Option<f64>,
    pub eval_bpb: Option<f64>,
}

impl LrSweepIndex {
    /// The index of the sweep of one parametrisation (both can share a directory).
    pub fn file_name(param: Parametrization) -> String {
        format!("sweep-{param}.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> LrSweepIndex {
        let table = LrTable::new(&[(16, 0.005, Some(5.5)), (16, 0.02, None)]);
        let point = |lr: f64, loss: Option<f64>| LrSweepPoint {
            name: format!("sp-d16-lr{lr}"),
            dir: PathBuf::from(format!("runs/sp-d16-lr{lr}")),
            param: Parametrization::Sp,
            width: 16,
            layers: 2,
            heads: 2,
            intermediate: 40,
            lr,
            non_embedding_params: loss.map(|_| 6_176),
            steps: 6,
            finished: loss.is_some(),
            eval_loss: loss,
            eval_bpb: loss.map(|l| l / 3.0),
        };
        LrSweepIndex {
            kind: LrSweepKind::WindtunnelLr,
            tokens: "20N".into(),
            best: table.best(),
            table,
            points: vec![point(0.005, Some(5.5)), point(0.02, None)],
        }
    }

    #[test]
    fn the_index_round_trips_in_the_files_layout() {
        let index = index();
        let json = serde_json::to_value(&index).unwrap();
        // The layout the files have always had: read by key, a user sees these names.
        assert_eq!(json["kind"], "windtunnel-lr");
        assert_eq!(json["best"], serde_json::json!([[0.005, 5.5]]));
        assert_eq!(json["points"][0]["param"], "sp");
        assert_eq!(json["points"][1]["eval_loss"], serde_json::Value::Null);
        assert_eq!(
            json["table"]["rows"][1]["losses"],
            serde_json::json!([null])
        );
        let text = serde_json::to_string_pretty(&json).unwrap();
        assert_eq!(serde_json::from_str::<LrSweepIndex>(&text).unwrap(), index);
        assert_eq!(
            LrSweepIndex::file_name(Parametrization::Sp),
            "sweep-sp.json"
        );
    }

    #[test]
    fn a_malformed_index_is_refused() {
        let mut json = serde_json::to_value(index()).unwrap();
        json["points"][0]["lr"] = "fast".into();
        let e = serde_json::from_value::<LrSweepIndex>(json.clone()).unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
        json["points"][0]["lr"] = 0.005.into();
        json["kind"] = "windtunnel-search".into();
        let e = serde_json::from_value::<LrSweepIndex>(json).unwrap_err();
        assert!(e.to_string().contains("windtunnel-search"), "{e}");
    }
}
