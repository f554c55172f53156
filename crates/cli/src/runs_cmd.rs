//! `minicpm runs [dir]`: a table of the runs and decay branches under a directory.

use minicpm_lab::number_format::compact;
use minicpm_train::runs::{self, RunSummary};
use std::path::Path;
use std::process::ExitCode;

pub fn run(root: &Path) -> anyhow::Result<ExitCode> {
    if !root.is_dir() {
        anyhow::bail!("{}: no such directory", root.display());
    }
    let dirs = runs::discover(root);
    if dirs.is_empty() {
        anyhow::bail!("{}: no runs here (no run.toml found)", root.display());
    }
    let mut rows = vec![[
        "run", "parent", "params", "schedule", "updates", "tokens", "train", "eval", "bpb", "wall",
    ]
    .map(String::from)
    .to_vec()];
    for dir in dirs {
        match runs::summarize(&dir) {
            Ok(s) => rows.push(row(&s, root)),
            Err(e) => eprintln!("warning: skipping {}: {e}", dir.display()),
        }
    }
    print!("{}", table(&rows));
    Ok(ExitCode::SUCCESS)
}

fn row(s: &RunSummary, root: &Path) -> Vec<String> {
    let name = s
        .dir
        .strip_prefix(root)
        .ok()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(&s.dir)
        .display()
        .to_string();
    let f4 = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
    vec![
        name,
        s.parent.clone().unwrap_or_else(|| "-".into()),
        compact(s.params as f64),
        s.schedule.clone(),
        format!("{}/{}", s.steps_done, s.steps_total),
        compact(s.tokens as f64),
        f4(s.train_loss),
        f4(s.eval_loss),
        f4(s.eval_bpb),
        s.wall_time_s.map_or("-".into(), duration),
    ]
}

fn duration(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// Left-aligned text columns, right-aligned numbers.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows[0].len();
    let width: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, v)| {
                if c < 2 || c == 3 {
                    format!("{v:<w$}", w = width[c])
                } else {
                    format!("{v:>w$}", w = width[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
