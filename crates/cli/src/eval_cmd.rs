//! `minicpm eval`: a model on evaluation tasks (docs/EVAL.md), scored on the inference runtime
//! as lm-evaluation-harness scores them. Prints a table of each task's metrics next to what a
//! uniform guess would score, and writes every number, per document too, as JSON.

use crate::inference;
use crate::perplexity_cmd::score_shards;
use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use minicpm_data::atomic_file::write_atomic;
use minicpm_data::eval_task::{read_task, Task};
use minicpm_data::shards::INDEX_FILE;
use minicpm_serve::eval::report::{EvalReport, TaskReport, TaskResult, TextReport};
use minicpm_serve::eval::{evaluate, EvalOptions};
use minicpm_serve::runtime::InferenceModel;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub test: Option<EvalTest>,
    /// An HF model directory, a checkpoint, a run or a GGUF file.
    #[arg(long, required = true)]
    model: Option<PathBuf>,
    /// A task: a .jsonl file of multiple-choice or text documents, a .txt text, or a token-shard
    /// directory (bits per byte as `perplexity` measures it). Repeatable.
    #[arg(long = "task", required = true, value_name = "FILE")]
    tasks: Vec<PathBuf>,
    /// Score the first N documents of each task (of a shard directory: N windows).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Write the results, every document's log-likelihoods included, to this JSON file.
    #[arg(long, value_name = "OUT")]
    json: Option<PathBuf>,
    /// Threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// No BOS before multiple-choice contexts (lm-eval's add_bos_token=False).
    #[arg(long)]
    no_bos: bool,
    /// Tokens per forward pass: requests times the longest of them.
    #[arg(long, default_value_t = 2048)]
    batch_tokens: usize,
}

/// Tests of their own, beside the task files.
#[derive(clap::Subcommand)]
pub enum EvalTest {
    /// Passkey retrieval: a number hidden at a depth in filler text, asked for at the end,
    /// at each length and depth (accuracy table and heat map), with held-out bits per byte at
    /// each length.
    Passkey(crate::eval_passkey_cmd::PasskeyArgs),
}

/// What one `--task` names.
enum TaskSource {
    File(Task),
    Shards(PathBuf),
}

/// Reads every task before the model loads, so a bad file fails at once.
fn read_tasks(paths: &[PathBuf], limit: Option<usize>) -> anyhow::Result<Vec<TaskSource>> {
    paths
        .iter()
        .map(|p| {
            if p.is_dir() {
                anyhow::ensure!(
                    p.join(INDEX_FILE).is_file(),
                    "{}: a directory task must be token shards (no {INDEX_FILE})",
                    p.display()
                );
                return Ok(TaskSource::Shards(p.clone()));
            }
            let mut task = read_task(p)?;
            if let Some(n) = limit {
                task.docs.truncate(n);
            }
            Ok(TaskSource::File(task))
        })
        .collect()
}

/// "sotu/valid" for `.../shards/sotu/valid`: the split's name alone says little.
fn shard_task_name(dir: &Path) -> String {
    let name = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
    };
    match (name(dir.parent()), name(Some(dir))) {
        (Some(parent), Some(leaf)) => format!("{parent}/{leaf}"),
        (_, leaf) => leaf.unwrap_or_else(|| dir.display().to_string()),
    }
}

/// Bits per byte of a shard directory in windows of the model's context, the bytes from the
/// index's average per token.
fn score_shard_task(
    model: &InferenceModel,
    dir: &Path,
    limit: Option<usize>,
    batch_tokens: usize,
) -> anyhow::Result<TaskReport> {
    let seq_len = model.config.max_position_embeddings;
    let max_tokens = limit.map_or(0, |n| n * seq_len);
    let batch = (batch_tokens / seq_len).max(1);
    let s = score_shards(model, &[dir.to_path_buf()], seq_len, max_tokens, batch)?;
    let bpt = s.bytes_per_token.with_context(|| {
        format!(
            "{}: the index records no byte counts, so bits per byte cannot be given",
            dir.display()
        )
    })?;
    let tokens = s.nll.tokens as u64;
    Ok(TaskReport {
        task: shard_task_name(dir),
        result: TaskResult::BitsPerByte(TextReport::new(
            s.nll.sum,
            tokens,
            (tokens as f64 * bpt).round() as u64,
        )),
    })
}

fn progress_bar(task: &str) -> anyhow::Result<ProgressBar> {
    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template(&format!(
        "{task} {{bar:30}} {{pos}}/{{len}} requests [{{eta_precise}}]"
    ))?);
    Ok(bar)
}

/// The table: per task and metric, the value, its standard error and a uniform guess's score
/// (for texts: every token equally likely, log2(vocab) bits per token).
fn table(report: &EvalReport, vocab: usize) -> String {
    let mut out = format!(
        "{:<28} {:<18} {:>10} {:>10} {:>10}\n",
        "task", "metric", "value", "stderr", "baseline"
    );
    let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    for t in &report.tasks {
        let rows: Vec<(&str, f64, Option<f64>, Option<f64>)> = match &t.result {
            TaskResult::MultipleChoice(r) => vec![
                ("acc", r.acc, r.acc_stderr, Some(r.random_baseline)),
                (
                    "acc_norm",
                    r.acc_norm,
                    r.acc_norm_stderr,
                    Some(r.random_baseline),
                ),
            ],
            TaskResult::BitsPerByte(r) => {
                let uniform = r.tokens as f64 * (vocab as f64).log2() / r.bytes as f64;
                vec![
                    ("bits_per_byte", r.bits_per_byte, None, Some(uniform)),
                    (
                        "token_perplexity",
                        r.token_perplexity,
                        None,
                        Some(vocab as f64),
                    ),
                ]
            }
        };
        for (metric, value, stderr, baseline) in rows {
            out += &format!(
                "{:<28} {metric:<18} {:>10} {:>10} {:>10}\n",
                t.task,
                num(Some(value)),
                num(stderr),
                num(baseline)
            );
        }
    }
    out
}

pub fn run(a: EvalArgs) -> anyhow::Result<ExitCode> {
    if let Some(EvalTest::Passkey(p)) = a.test {
        return crate::eval_passkey_cmd::run(p);
    }
    let model_path = a.model.clone().context("--model is required")?;
    anyhow::ensure!(a.limit != Some(0), "--limit must be positive");
    // A long evaluation must not end in an unwritable report.
    if let Some(dir) = a.json.as_ref().and_then(|p| p.parent()) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        anyhow::ensure!(
            dir.is_dir(),
            "{}: no such directory for --json",
            dir.display()
        );
    }
    let tasks = read_tasks(&a.tasks, a.limit)?;
    let loaded = inference::load(&model_path, a.threads)?;
    let model = &loaded.files.model;
    let opts = EvalOptions {
        add_bos: !a.no_bos,
        batch_tokens: a.batch_tokens,
    };
    let mut report = EvalReport {
        model: model_path.display().to_string(),
        tasks: Vec::new(),
    };
    for (source, path) in tasks.iter().zip(&a.tasks) {
        let started = std::time::Instant::now();
        let scored = match source {
            TaskSource::Shards(dir) => score_shard_task(model, dir, a.limit, a.batch_tokens)?,
            TaskSource::File(task) => {
                let bar = progress_bar(&task.name)?;
                let mut progress = |done: usize, total: usize| {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                };
                let r = evaluate(model, &loaded.tokenizer, task, opts, &mut progress)
                    .with_context(|| path.display().to_string())?;
                bar.finish_and_clear();
                r
            }
        };
        eprintln!(
            "{}: scored in {:.1} s",
            scored.task,
            started.elapsed().as_secs_f64()
        );
        report.tasks.push(scored);
    }
    print!("{}", table(&report, model.config.vocab_size));
    if let Some(out) = &a.json {
        let mut json = serde_json::to_vec_pretty(&report)?;
        json.push(b'\n');
        write_atomic(out, &json).with_context(|| out.display().to_string())?;
        eprintln!("wrote {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}
