//! `windtunnel batch`: how many tokens each (model size, batch size) needs to reach a set of
//! losses, the batch size that needs the fewest at each loss, and the law bs_opt = a / L^b
//! through those optima (docs/MODEL.md section 8; the paper: a = 1.21e9, b = 6.24).

use super::{parse_tokens, run_points, write_index, PlannedPoint, ProxyArgs, SweepArgs};
use clap::Args;
use minicpm_lab::batch_law::{fit_batch_law, BatchRun};
use minicpm_lab::plot::{self, Chart, Series};
use minicpm_train::schedule::ScheduleConfig;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct BatchArgs {
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Batch sizes in tokens per update (multiples of the config's seq_len), e.g. 256,512,1024.
    #[arg(long, value_delimiter = ',', required = true)]
    batches: Vec<u64>,
    /// Held-out losses to reach (nats per token), e.g. 5.0,4.8,4.6.
    #[arg(long, value_delimiter = ',', required = true)]
    target_losses: Vec<f64>,
    /// Training tokens of every run, whatever its batch size: a count or a multiple of N.
    #[arg(long, default_value = "20N")]
    tokens: String,
    /// Evaluate every this many tokens (rounded to whole updates); default: 30 evaluations.
    #[arg(long)]
    eval_tokens: Option<u64>,
    /// The learning rate of every run (the paper: 0.01, cosine schedule).
    #[arg(long)]
    lr: Option<f64>,
    #[command(flatten)]
    sweep: SweepArgs,
    #[arg(long, default_value = "runs/windtunnel/batch")]
    out: PathBuf,
}

/// The study's index: the whole [`minicpm_lab::batch_law::BatchLawReport`].
const BATCH_LAW_INDEX: &str = "batch-law.json";

/// The largest micro-batch of at most 16 rows whose tokens divide the batch.
fn micro_batch(batch: u64, seq_len: u64) -> Option<u64> {
    if batch == 0 || !batch.is_multiple_of(seq_len) {
        return None;
    }
    (1..=16).rev().find(|m| batch.is_multiple_of(m * seq_len))
}

/// The paper's Cosine(T) after `warmup_steps`: over the whole run down to a tenth of the peak
/// (the schedule's default floor).
fn paper_cosine(warmup_steps: u64) -> ScheduleConfig {
    ScheduleConfig::Cosine {
        warmup_steps,
        period: None,
        floor: 0.1,
    }
}

pub fn run(a: BatchArgs) -> anyhow::Result<ExitCode> {
    a.sweep.threads()?;
    let mut batches = a.batches.clone();
    batches.sort_unstable();
    batches.dedup();
    if batches.len() < 3 {
        anyhow::bail!("--batches: a parabola per size needs at least 3 batch sizes");
    }
    let targets = a.target_losses.clone();
    if targets.iter().any(|t| !(t.is_finite() && *t > 0.0)) {
        anyhow::bail!("--target-losses: every loss must be positive");
    }
    let mut planned = Vec::new();
    let mut meta = Vec::new();
    for w in a.proxy.widths() {
        let shape = a.proxy.shape(w)?;
        let base = a.proxy.config(&shape)?;
        let n = base.model.non_embedding_params();
        let tokens = parse_tokens(&a.tokens, n)?;
        let warmup = base.schedule.warmup_steps();
        let seq = base.train.seq_len as u64;
        for &b in &batches {
            let micro = micro_batch(b, seq).ok_or_else(|| {
                anyhow::anyhow!("--batches: {b} is not a positive multiple of seq_len {seq}")
            })?;
            let mut config = base.clone();
            config.train.batch_tokens = b;
            config.train.micro_batch = micro as usize;
            config.train.steps = tokens.div_ceil(b).max(1);
            config.train.eval_every = (a.eval_tokens.unwrap_or(tokens / 30) / b).max(1);
            // The paper's batch-size runs: cosine decay over the whole run.
            config.schedule = paper_cosine(warmup);
            if let Some(lr) = a.lr {
                config.optim.lr = lr;
            }
            planned.push(PlannedPoint {
                name: format!("{}-d{w}-bs{b}", a.proxy.param),
                config: a.proxy.check(config)?,
            });
            meta.push((w, n, b));
        }
    }
    let Some(results) = run_points(planned, &a.sweep, &a.out)? else {
        return Ok(ExitCode::SUCCESS);
    };

    let runs: Vec<BatchRun> = meta
        .iter()
        .zip(&results)
        .filter_map(|((w, n, b), r)| {
            let s = r.summary.as_ref()?;
            Some(BatchRun {
                size_label: format!("d{w}"),
                params: *n as f64,
                batch_tokens: *b as f64,
                curve: s
                    .records
                    .iter()
                    .filter_map(|r| r.eval_loss.map(|l| (r.tokens as f64, l)))
                    .collect(),
            })
        })
        .collect();
    let report = fit_batch_law(&runs, &targets)
        .map_err(|e| anyhow::anyhow!("fitting the batch-size law: {e}"))?;
    write_index(&a.out.join(BATCH_LAW_INDEX), &report)?;

    println!("tokens to reach each target (k), and the batch that needs the fewest:");
    for size in &report.sizes {
        println!(
            "  {} ({:.2}M non-embedding parameters)",
            size.size_label,
            size.params / 1e6
        );
        for cell in &size.cells {
            let reached: Vec<String> = cell
                .reached
                .iter()
                .map(|p| format!("bs {}: {:.0}k", p.batch_tokens, p.tokens / 1e3))
                .collect();
            let verdict = match (&cell.optimum, &cell.skipped) {
                (Some(v), _) => format!(
                    "bs_opt {:.0} ({:.0}k tokens)",
                    v.batch_tokens,
                    v.tokens / 1e3
                ),
                (None, Some(why)) => format!("no optimum: {why:?}"),
                _ => "no optimum".into(),
            };
            println!(
                "    L = {}: {} -> {verdict}",
                cell.target,
                reached.join(", ")
            );
        }
    }
    let law = &report.law;
    println!(
        "bs_opt = {:.3e} / L^{:.2}  (b 95% [{:.2}, {:.2}], R^2 {:.3}, {} optima); the paper: 1.21e9 / L^6.24",
        law.a, law.b.value, law.b.low, law.b.high, law.r_squared, law.n_points
    );

    // Tokens against batch size per size (points and parabolas), and the law through the optima.
    let mut charts = Vec::new();
    for size in &report.sizes {
        let mut chart = Chart {
            title: format!("{}: tokens to reach each loss", size.size_label),
            x_label: "batch size (tokens)".into(),
            y_label: "training tokens".into(),
            log_x: true,
            log_y: true,
            series: vec![],
        };
        for (i, cell) in size.cells.iter().enumerate() {
            let pts: Vec<(f64, f64)> = cell
                .reached
                .iter()
                .map(|p| (p.batch_tokens, p.tokens))
                .collect();
            if pts.is_empty() {
                continue;
            }
            chart.series.push(Series {
                markers_only: true,
                ..Series::line(format!("L = {}", cell.target), pts, i)
            });
            if let Some(p) = &cell.parabola {
                let (lo, hi) = p.batch_range;
                let curve = (0..=40)
                    .map(|k| lo * (hi / lo).powf(k as f64 / 40.0))
                    .map(|bs| (bs, p.predict(bs)))
                    .collect();
                chart
                    .series
                    .push(Series::line(format!("fit L = {}", cell.target), curve, i));
            }
        }
        if !chart.series.is_empty() {
            charts.push(chart);
        }
    }
    let optima: Vec<(f64, f64)> = report
        .law_points
        .iter()
        .map(|p| (p.loss, p.bs_opt))
        .collect();
    let (lo, hi) = optima
        .iter()
        .fold((f64::INFINITY, 0f64), |(l, h), p| (l.min(p.0), h.max(p.0)));
    let line = (0..=20)
        .map(|k| lo + (hi - lo) * k as f64 / 20.0)
        .map(|l| (l, law.predict(l)))
        .collect();
    charts.push(Chart {
        title: format!("bs_opt = {:.2e} / L^{:.2}", law.a, law.b.value),
        x_label: "held-out loss".into(),
        y_label: "optimal batch size (tokens)".into(),
        log_x: true,
        log_y: true,
        series: vec![
            Series {
                markers_only: true,
                ..Series::line("optima", optima, 0)
            },
            Series::line("fit", line, 3),
        ],
    });
    for f in plot::render_panels(&charts, 2, &a.out.join("batch-law"))? {
        println!("{}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn micro_batches_divide_the_batch() {
        assert_eq!(super::micro_batch(256, 128), Some(2));
        assert_eq!(super::micro_batch(4096, 128), Some(16));
        assert_eq!(super::micro_batch(1536, 128), Some(12));
        assert_eq!(super::micro_batch(100, 128), None);
    }

    #[test]
    fn the_paper_cosine_is_the_configs_default_cosine() {
        // What a config saying only `kind = "cosine"` means, as the config parser reads it.
        let text = "[model]\nvocab_size = 16\nhidden_size = 8\nintermediate_size = 16\n\
                    num_hidden_layers = 1\nnum_attention_heads = 1\n\
                    [schedule]\nkind = \"cosine\"\nwarmup_steps = 7\n";
        let parsed = minicpm_train::RunConfig::parse(text, "t.toml", &[]).unwrap();
        assert_eq!(super::paper_cosine(7), parsed.schedule);
    }

    #[test]
    fn a_malformed_batch_law_index_is_refused_in_one_line() {
        use minicpm_lab::batch_law::BatchLawReport;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(super::BATCH_LAW_INDEX);
        std::fs::write(
            &path,
            r#"{"units": "tokens", "targets": [3.0], "sizes": []}"#,
        )
        .unwrap();
        let e = super::super::read_index::<BatchLawReport>(&path)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("batch-law.json") && e.contains("missing field"),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}
