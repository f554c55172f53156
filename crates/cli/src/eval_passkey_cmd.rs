//! `minicpm eval passkey`: passkey retrieval at each length and depth (docs/EVAL.md, "Passkey
//! retrieval"), printed as a table, drawn as a heat map, and written as JSON; with `--data`,
//! held-out bits per byte at each length too.

use crate::inference;
use crate::perplexity_cmd::score_shards;
use anyhow::Context;
use clap::Args;
use minicpm_data::atomic_file::write_atomic;
use minicpm_lab::heatmap::{render_heatmaps, Heatmap};
use minicpm_serve::eval::passkey::{self, PasskeyCell, PasskeyOptions};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct PasskeyArgs {
    /// An HF model directory, a checkpoint, a run or a GGUF file.
    #[arg(long)]
    model: PathBuf,
    /// Prompt lengths in tokens, comma-separated; `k` multiplies by 1024 (512,1k,2k,4k).
    #[arg(long, default_value = "512,1k,2k,4k", value_parser = parse_lengths)]
    lengths: Lengths,
    /// Depths at which the key is hidden, spread evenly from the start (0%) to the end (100%).
    #[arg(long, default_value_t = 10)]
    depths: usize,
    /// Prompts per length and depth.
    #[arg(long, default_value_t = 5)]
    trials: usize,
    /// Digits of each key.
    #[arg(long, default_value_t = 5)]
    digits: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Held-out token shards (repeatable): bits per byte at each length, in windows of it.
    #[arg(long = "data", value_name = "DIR")]
    data: Vec<PathBuf>,
    /// Tokens of held-out data scored at each length.
    #[arg(long, default_value_t = 65_536)]
    data_tokens: usize,
    /// Write passkey.json and the heat map (passkey.png, passkey.svg) into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Prompt tokens prefilled together.
    #[arg(long, default_value_t = 8192)]
    batch_tokens: usize,
    /// Threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

#[derive(Clone, Debug)]
pub struct Lengths(Vec<usize>);

fn parse_lengths(s: &str) -> Result<Lengths, String> {
    let one = |part: &str| -> Result<usize, String> {
        let part = part.trim();
        let (digits, unit) = match part.strip_suffix(['k', 'K']) {
            Some(d) => (d, 1024),
            None => (part, 1),
        };
        match digits.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n * unit),
            _ => Err(format!(
                "{part:?} is not a positive length (e.g. 512 or 4k)"
            )),
        }
    };
    s.split(',').map(one).collect::<Result<_, _>>().map(Lengths)
}

/// "4K" for 4096, "1.5K" for 1536, "500" for 500.
fn length_label(n: usize) -> String {
    match n % 512 == 0 && n >= 1024 {
        true if n % 1024 == 0 => format!("{}K", n / 1024),
        true => format!("{:.1}K", n as f64 / 1024.0),
        false => n.to_string(),
    }
}

#[derive(Serialize)]
struct Report<'a> {
    model: String,
    trials: usize,
    digits: usize,
    seed: u64,
    cells: Vec<CellReport<'a>>,
    /// Held-out bits per byte at each length (None: no --data, or beyond the context).
    bits_per_byte: Vec<(usize, Option<f64>)>,
}

#[derive(Serialize)]
struct CellReport<'a> {
    #[serde(flatten)]
    cell: &'a PasskeyCell,
    accuracy: Option<f64>,
}

pub fn run(a: PasskeyArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.depths > 0, "--depths must be positive");
    anyhow::ensure!(a.trials > 0, "--trials must be positive");
    anyhow::ensure!((1..=18).contains(&a.digits), "--digits must be 1..18");
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    }
    let loaded = inference::load(&a.model, a.threads)?;
    let model = &loaded.files.model;
    let lengths = &a.lengths.0;
    let opts = PasskeyOptions {
        trials: a.trials,
        digits: a.digits,
        seed: a.seed,
        batch_tokens: a.batch_tokens,
    };
    let cells = passkey::run(model, &loaded.tokenizer, lengths, a.depths, opts)?;
    let mut bits_per_byte = Vec::new();
    for &n in lengths {
        let bpb = match a.data.is_empty() || n > model.context_limit() {
            true => None,
            false => {
                let score = score_shards(model, &a.data, n, a.data_tokens, 1)?;
                let bpt = score.bytes_per_token;
                bpt.map(|b| score.nll.mean() / std::f64::consts::LN_2 / b)
            }
        };
        bits_per_byte.push((n, bpb));
    }
    print_table(&cells, lengths, a.depths, &bits_per_byte, &a);
    if let Some(out) = &a.out {
        let report = Report {
            model: a.model.display().to_string(),
            trials: a.trials,
            digits: a.digits,
            seed: a.seed,
            cells: cells
                .iter()
                .map(|cell| CellReport {
                    cell,
                    accuracy: cell.accuracy(),
                })
                .collect(),
            bits_per_byte,
        };
        let json = out.join("passkey.json");
        write_atomic(&json, serde_json::to_string_pretty(&report)?.as_bytes())?;
        let map = heat_map(&cells, lengths, a.depths, &short_name(&a.model));
        let files = render_heatmaps(&[map], &out.join("passkey"))?;
        eprintln!(
            "wrote {} and {}",
            json.display(),
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn percent(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{:.0}%", 100.0 * x))
}

fn print_table(
    cells: &[PasskeyCell],
    lengths: &[usize],
    depths: usize,
    bpb: &[(usize, Option<f64>)],
    a: &PasskeyArgs,
) {
    println!(
        "passkey retrieval, {} ({} prompts per cell, {}-digit keys; '-': beyond the context)",
        a.model.display(),
        a.trials,
        a.digits
    );
    print!("{:>10}", "depth");
    for &n in lengths {
        print!("{:>8}", length_label(n));
    }
    println!();
    for d in 0..depths {
        print!("{:>9.0}%", 100.0 * minicpm_data::passkey::spread(d, depths));
        for l in 0..lengths.len() {
            print!("{:>8}", percent(cells[l * depths + d].accuracy()));
        }
        println!();
    }
    print!("{:>10}", "mean");
    for l in 0..lengths.len() {
        let column: Option<Vec<f64>> = cells[l * depths..(l + 1) * depths]
            .iter()
            .map(PasskeyCell::accuracy)
            .collect();
        let mean = column.map(|c| c.iter().sum::<f64>() / c.len() as f64);
        print!("{:>8}", percent(mean));
    }
    println!();
    if bpb.iter().any(|(_, b)| b.is_some()) {
        print!("{:>10}", "bits/byte");
        for (_, b) in bpb {
            print!("{:>8}", b.map_or("-".into(), |x| format!("{x:.3}")));
        }
        println!();
    }
}

/// The last two components of a model's path ("run/step-0001000"), for a title.
fn short_name(path: &std::path::Path) -> String {
    let parts: Vec<_> = path.iter().map(|p| p.to_string_lossy()).collect();
    parts[parts.len().saturating_sub(2)..].join("/")
}

/// Accuracy by depth (rows, the start at the top) and length (columns).
fn heat_map(cells: &[PasskeyCell], lengths: &[usize], depths: usize, model: &str) -> Heatmap {
    Heatmap {
        title: format!("passkey retrieval: {model}"),
        x_label: "prompt length (tokens)".into(),
        y_label: "depth of the key".into(),
        x_ticks: lengths.iter().map(|&n| length_label(n)).collect(),
        // Rows run bottom to top: the last depth first, so 0% is the top row.
        y_ticks: (0..depths)
            .rev()
            .map(|d| format!("{:.0}%", 100.0 * minicpm_data::passkey::spread(d, depths)))
            .collect(),
        values: (0..depths)
            .rev()
            .map(|d| {
                (0..lengths.len())
                    .map(|l| cells[l * depths + d].accuracy())
                    .collect()
            })
            .collect(),
        marked: Vec::new(),
        span: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_parse_with_k_and_refuse_nonsense() {
        assert_eq!(
            parse_lengths("512,1k, 2K").unwrap().0,
            vec![512, 1024, 2048]
        );
        assert!(parse_lengths("0").is_err());
        assert!(parse_lengths("4m").unwrap_err().contains("\"4m\""));
        assert_eq!(length_label(4096), "4K");
        assert_eq!(length_label(1536), "1.5K");
        assert_eq!(length_label(300), "300");
    }
}
