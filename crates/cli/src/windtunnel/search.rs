//! `windtunnel search`: the hyper-parameter search the paper ran on its smallest proxy to arrive
//! at scale_emb 12, scale_depth 1.4, init_std 0.1 and LR 0.01.
//!
//! Method: random search (Bergstra and Bengio, 2012), each hyper-parameter drawn log-uniformly
//! from its range with a seeded generator, plus the paper's values as trial 0 so that the
//! result is always compared with them. With four hyper-parameters of unequal importance, random
//! search covers each one's range far better than a grid of the same cost.

use super::{parse_tokens, run_points, write_index, PlannedPoint, ProxyArgs, SweepArgs};
use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
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

/// (config key, name, low, high): searched log-uniformly.
const SPACE: [(&str, &str, f64, f64); 4] = [
    ("model.scale_emb", "scale_emb", 1.0, 32.0),
    ("model.scale_depth", "scale_depth", 0.25, 4.0),
    ("model.initializer_range", "init_std", 0.01, 0.5),
    ("optim.lr", "lr", 1e-3, 1e-1),
];

/// The paper's tuned values, in the order of [`SPACE`].
const PAPER: [f64; 4] = [12.0, 1.4, 0.1, 0.01];

/// Trial 0 is the paper's point; then `trials` draws.
fn draws(trials: usize, seed: u64) -> Vec<[f64; 4]> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = vec![PAPER];
    for _ in 0..trials {
        out.push(SPACE.map(|(_, _, lo, hi)| {
            let u: f64 = rng.random();
            (lo.ln() + u * (hi.ln() - lo.ln())).exp()
        }));
    }
    out
}

pub fn run(a: SearchArgs) -> anyhow::Result<ExitCode> {
    a.sweep.threads()?;
    let widths = a.proxy.widths();
    let [w] = widths[..] else {
        anyhow::bail!("--widths: the search runs on one proxy; give one width");
    };
    let shape = a.proxy.shape(w)?;
    let n = a.proxy.config(&shape, &[])?.model.non_embedding_params();
    let tokens = parse_tokens(&a.tokens, n)?;
    let trials = draws(a.trials, a.search_seed);
    let mut planned = Vec::new();
    for (i, values) in trials.iter().enumerate() {
        let extra: Vec<String> = SPACE
            .iter()
            .zip(values)
            .map(|((key, ..), v)| format!("{key}={v}"))
            .collect();
        planned.push(PlannedPoint {
            name: format!("{}-d{w}-trial{i:03}", a.proxy.param.name()),
            config: a.proxy.config_for_tokens(&shape, &extra, &a.tokens)?,
        });
    }
    let Some(results) = run_points(planned, &a.sweep, &a.out)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut rows: Vec<(usize, [f64; 4], f64)> = results
        .iter()
        .zip(&trials)
        .enumerate()
        .filter_map(|(i, (r, v))| {
            let loss = r.summary.as_ref()?.eval_loss?;
            loss.is_finite().then_some((i, *v, loss))
        })
        .collect();
    rows.sort_by(|x, y| x.2.total_cmp(&y.2));
    let index: Vec<_> = rows
        .iter()
        .map(|(i, v, loss)| {
            let mut o = json!({"trial": i, "name": results[*i].name, "eval_loss": loss});
            for ((_, name, ..), x) in SPACE.iter().zip(v) {
                o[name] = json!(x);
            }
            o
        })
        .collect();
    write_index(
        &a.out.join("search.json"),
        &json!({"kind": "windtunnel-search", "method": "random search, log-uniform", "width": w, "tokens": tokens, "ranked": index}),
    )?;
    println!(
        "{:>6} {:>10} {:>12} {:>9} {:>9} {:>8}",
        "trial", "scale_emb", "scale_depth", "init_std", "lr", "loss"
    );
    for (i, v, loss) in rows.iter().take(10) {
        let mark = if *i == 0 { "  (the paper's)" } else { "" };
        println!(
            "{i:>6} {:>10.3} {:>12.3} {:>9.4} {:>9.5} {loss:>8.4}{mark}",
            v[0], v[1], v[2], v[3]
        );
    }
    if let Some(rank) = rows.iter().position(|r| r.0 == 0) {
        println!("the paper's values rank {} of {}", rank + 1, rows.len());
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
            for (x, (_, name, lo, hi)) in v.iter().zip(SPACE) {
                assert!((lo..=hi).contains(x), "{name} = {x}");
            }
        }
        // Log-uniform: about half the LR draws fall below the geometric midpoint 0.01.
        let below = d[1..].iter().filter(|v| v[3] < 0.01).count();
        assert!((70..130).contains(&below), "{below} of 200");
    }
}
