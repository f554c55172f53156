//! `windtunnel search`: the hyper-parameter search the paper ran on its smallest proxy to arrive
//! at scale_emb 12, scale_depth 1.4, init_std 0.1 and LR 0.01.
//!
//! Method: random search (Bergstra and Bengio, 2012), each hyper-parameter drawn log-uniformly
//! from its range with a seeded generator, plus the paper's values as trial 0 so that the
//! result is always compared with them. With four hyper-parameters of unequal importance, random
//! search covers each one's range far better than a grid of the same cost.

use super::{
    parse_tokens, run_points, train_for_tokens, write_index, PlannedPoint, ProxyArgs, SweepArgs,
};
use clap::Args;
use minicpm_train::RunConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct SearchArgs {
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Random trials besides the paper's values.
    #[arg(long, default_value_t = 15)]
    trials: usize,
    /// Training tokens per trial: a count or a multiple of N (the paper: 10N).
    #[arg(long, default_value = "10N")]
    tokens: String,
    /// Seed of the draws (the runs themselves use the config's seed).
    #[arg(long, default_value_t = 0)]
    search_seed: u64,
    #[command(flatten)]
    sweep: SweepArgs,
    #[arg(long, default_value = "runs/windtunnel/search")]
    out: PathBuf,
}

/// (name, low, high): searched log-uniformly, in the order of [`TrialValues::from_draw`].
const SPACE: [(&str, f64, f64); 4] = [
    ("scale_emb", 1.0, 32.0),
    ("scale_depth", 0.25, 4.0),
    ("init_std", 0.01, 0.5),
    ("lr", 1e-3, 1e-1),
];

/// The paper's tuned values, in the order of [`SPACE`].
const PAPER: [f64; 4] = [12.0, 1.4, 0.1, 0.01];

/// Trial 0 is the paper's point; then `trials` draws.
fn draws(trials: usize, seed: u64) -> Vec<[f64; 4]> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = vec![PAPER];
    for _ in 0..trials {
        out.push(SPACE.map(|(_, lo, hi)| {
            let u: f64 = rng.random();
            (lo.ln() + u * (hi.ln() - lo.ln())).exp()
        }));
    }
    out
}

/// The hyper-parameters of one trial.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct TrialValues {
    scale_emb: f64,
    scale_depth: f64,
    /// The config's `model.initializer_range`.
    init_std: f64,
    lr: f64,
}

impl TrialValues {
    fn from_draw([scale_emb, scale_depth, init_std, lr]: [f64; 4]) -> Self {
        TrialValues {
            scale_emb,
            scale_depth,
            init_std,
            lr,
        }
    }

    fn apply(&self, cfg: &mut RunConfig) {
        cfg.model.scale_emb = self.scale_emb;
        cfg.model.scale_depth = self.scale_depth;
        cfg.model.initializer_range = self.init_std;
        cfg.optim.lr = self.lr;
    }
}

/// `search.json`: the finished trials, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SearchIndex {
    kind: SearchKind,
    method: String,
    width: usize,
    /// Training tokens of every trial.
    tokens: u64,
    ranked: Vec<RankedTrial>,
}

/// The index's `kind`, checked on reading so that another index is not taken for this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum SearchKind {
    #[serde(rename = "windtunnel-search")]
    WindtunnelSearch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RankedTrial {
    /// 0 is the paper's values.
    trial: usize,
    name: String,
    eval_loss: f64,
    #[serde(flatten)]
    values: TrialValues,
}

const SEARCH_INDEX: &str = "search.json";

pub fn run(a: SearchArgs) -> anyhow::Result<ExitCode> {
    a.sweep.threads()?;
    let widths = a.proxy.widths();
    let [w] = widths[..] else {
        anyhow::bail!("--widths: the search runs on one proxy; give one width");
    };
    let shape = a.proxy.shape(w)?;
    let n = a.proxy.config(&shape)?.model.non_embedding_params();
    let tokens = parse_tokens(&a.tokens, n)?;
    let trials: Vec<TrialValues> = draws(a.trials, a.search_seed)
        .into_iter()
        .map(TrialValues::from_draw)
        .collect();
    let mut planned = Vec::new();
    for (i, trial) in trials.iter().enumerate() {
        let mut config = a.proxy.config(&shape)?;
        trial.apply(&mut config);
        train_for_tokens(&mut config, &a.tokens)?;
        planned.push(PlannedPoint {
            name: format!("{}-d{w}-trial{i:03}", a.proxy.param),
            config: a.proxy.check(config)?,
        });
    }
    let Some(results) = run_points(planned, &a.sweep, &a.out)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut ranked: Vec<RankedTrial> = results
        .iter()
        .zip(&trials)
        .enumerate()
        .filter_map(|(i, (r, values))| {
            let loss = r.summary.as_ref()?.eval_loss?;
            loss.is_finite().then(|| RankedTrial {
                trial: i,
                name: r.name.clone(),
                eval_loss: loss,
                values: *values,
            })
        })
        .collect();
    ranked.sort_by(|x, y| x.eval_loss.total_cmp(&y.eval_loss));
    let index = SearchIndex {
        kind: SearchKind::WindtunnelSearch,
        method: "random search, log-uniform".into(),
        width: w,
        tokens,
        ranked,
    };
    write_index(&a.out.join(SEARCH_INDEX), &index)?;
    println!(
        "{:>6} {:>10} {:>12} {:>9} {:>9} {:>8}",
        "trial", "scale_emb", "scale_depth", "init_std", "lr", "loss"
    );
    for r in index.ranked.iter().take(10) {
        let (i, v) = (r.trial, &r.values);
        let mark = if i == 0 { "  (the paper's)" } else { "" };
        println!(
            "{i:>6} {:>10.3} {:>12.3} {:>9.4} {:>9.5} {:>8.4}{mark}",
            v.scale_emb, v.scale_depth, v.init_std, v.lr, r.eval_loss
        );
    }
    if let Some(rank) = index.ranked.iter().position(|r| r.trial == 0) {
        println!(
            "the paper's values rank {} of {}",
            rank + 1,
            index.ranked.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_start_with_the_paper_and_stay_in_range() {
        let d = draws(200, 7);
        assert_eq!(d[0], PAPER);
        assert_eq!(d, draws(200, 7), "seeded");
        for v in &d[1..] {
            for (x, (name, lo, hi)) in v.iter().zip(SPACE) {
                assert!((lo..=hi).contains(x), "{name} = {x}");
            }
        }
        // Log-uniform: about half the LR draws fall below the geometric midpoint 0.01.
        let below = d[1..].iter().filter(|v| v[3] < 0.01).count();
        assert!((70..130).contains(&below), "{below} of 200");
    }

    #[test]
    fn the_index_round_trips_in_the_files_layout() {
        let trial = |trial: usize, eval_loss: f64| RankedTrial {
            trial,
            name: format!("mup-d64-trial{trial:03}"),
            eval_loss,
            values: TrialValues::from_draw(draws(3, 1)[trial]),
        };
        let index = SearchIndex {
            kind: SearchKind::WindtunnelSearch,
            method: "random search, log-uniform".into(),
            width: 64,
            tokens: 409_600,
            ranked: vec![trial(2, 4.25), trial(0, 4.5)],
        };
        let json = serde_json::to_value(&index).unwrap();
        // The layout the file has always had: each trial's values beside its loss.
        assert_eq!(json["kind"], "windtunnel-search");
        assert_eq!(json["ranked"][1]["scale_emb"], 12.0);
        assert_eq!(json["ranked"][1]["init_std"], 0.1);
        assert_eq!(json["ranked"][0]["trial"], 2);
        let text = serde_json::to_string_pretty(&json).unwrap();
        assert_eq!(serde_json::from_str::<SearchIndex>(&text).unwrap(), index);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SEARCH_INDEX);
        super::super::write_index(&path, &index).unwrap();
        let back: Option<SearchIndex> = super::super::read_index(&path).unwrap();
        assert_eq!(back, Some(index));
        let broken =
            std::fs::read_to_string(&path)
                .unwrap()
                .replacen("\"lr\"", "\"learning_rate\"", 1);
        std::fs::write(&path, broken).unwrap();
        let e = super::super::read_index::<SearchIndex>(&path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("search.json") && e.contains("`lr`"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}
