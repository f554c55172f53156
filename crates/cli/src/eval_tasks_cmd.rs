//! `minicpm data eval-tasks`: evaluation task files (docs/EVAL.md) from a demo data directory:
//! multiple-choice sets from the documents its preparation held out of training, and the Brown
//! corpus, which it does not contain, as bits-per-byte text.

use clap::Args;
use minicpm_data::eval_sets::build::{brown_texts, choice_sets};
use minicpm_data::eval_task::write_task;
use minicpm_data::fetch::FetchOptions;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct EvalTasksArgs {
    /// The demo data directory: `corpus/` (and `shards/`, to check the split against).
    #[arg(long)]
    data: PathBuf,
    /// Where the task files go (and, under `sources/`, the Brown corpus as fetched).
    #[arg(long)]
    out: PathBuf,
    /// Draws the distractors, where the right answers stand and the order of the questions.
    #[arg(long, default_value_t = 1234)]
    seed: u64,
    /// The documents per thousand `data prepare` held out (the demo's default).
    #[arg(long, default_value_t = 10)]
    valid_permille: u64,
}

pub fn run(a: EvalTasksArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&a.out).map_err(|e| anyhow::anyhow!("{}: {e}", a.out.display()))?;
    for set in choice_sets(&a.data, a.valid_permille, a.seed)? {
        let path = a.out.join(format!("{}.jsonl", set.name));
        write_task(&path, &set.docs)?;
        eprintln!(
            "{}: {} questions from {} held-out {} documents",
            path.display(),
            set.docs.len(),
            set.held_out,
            set.source
        );
    }
    let brown = brown_texts(&a.out.join("sources"), &FetchOptions::default())
        .map_err(|e| anyhow::anyhow!("brown: {e} (the multiple-choice sets are written)"))?;
    let path = a.out.join("brown.jsonl");
    write_task(&path, &brown)?;
    let bytes: usize = brown.iter().map(|d| d.text.len()).sum();
    eprintln!(
        "{}: {} Brown corpus samples, {:.1} MB of text",
        path.display(),
        brown.len(),
        bytes as f64 / 1e6
    );
    Ok(ExitCode::SUCCESS)
}
