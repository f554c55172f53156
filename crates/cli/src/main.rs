//! `minicpm`: train, inspect and run MiniCPM models.

mod allocator;
mod bench_cmd;
mod bench_generate;
mod bench_matmul;
mod bench_model;
mod bench_serve;
mod chat_cmd;
mod conversations_cmd;
mod data_cmd;
mod decay_cmd;
mod demo;
mod eval_cmd;
mod eval_passkey_cmd;
mod eval_tasks_cmd;
mod export_cmd;
mod extend_cmd;
mod finetune_cmd;
mod fma_peak;
mod gemm_peak;
mod generate_cmd;
mod inference;
mod info;
mod launch;
#[cfg(feature = "mpi")]
mod mpi_world;
mod pairs_cmd;
mod passkey_docs_cmd;
mod perplexity_cmd;
mod plot_cmd;
mod quantize_cmd;
mod runs_cmd;
mod scaling_cmd;
mod serve_cmd;
mod sweep_runner;
mod upcycle_cmd;
mod util;
mod windtunnel;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "minicpm",
    version,
    about = "Train, study and serve MiniCPM-style small language models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model from a TOML config, or continue a run with --resume.
    Train(TrainArgs),
    /// Decay a stable checkpoint in a branch of its own (runs/<run>/branches/<name>).
    Decay(decay_cmd::DecayArgs),
    /// Make a dense checkpoint a mixture of experts (each MLP copied into every expert), then
    /// continue its run.
    Upcycle(upcycle_cmd::UpcycleArgs),
    /// Extend a checkpoint's context: a new run on longer rows with RoPE changed (ABF, NTK,
    /// linear, YaRN or none), optionally an untied head and long documents mixed in.
    Extend(extend_cmd::ExtendArgs),
    /// Supervised fine-tuning on conversations: the loss on the assistant's turns only.
    Sft(finetune_cmd::SftArgs),
    /// Direct preference optimisation (or IPO) on preference pairs, from an SFT model.
    Dpo(finetune_cmd::DpoArgs),
    /// A table of the runs and decay branches under a directory.
    Runs {
        #[arg(default_value = "runs")]
        dir: PathBuf,
    },
    /// Plot loss or learning-rate curves of runs and their branches (PNG and SVG).
    #[command(subcommand)]
    Plot(plot_cmd::PlotCommand),
    /// Generate text from an HF model directory, a checkpoint, a run or a GGUF file.
    Generate(generate_cmd::GenerateArgs),
    /// Talk to a chat model (multi-turn, streamed, with its chat template).
    Chat(chat_cmd::ChatArgs),
    /// Serve a model over HTTP with OpenAI's API (completions, chat, streaming) and continuous batching.
    Serve(serve_cmd::ServeArgs),
    /// Quantise a model to a GGUF file (q8_0, q4_0, q4_k) that this binary and llama.cpp both run.
    Quantize(quantize_cmd::QuantizeArgs),
    /// Held-out loss, perplexity and bits per byte of a model file on token shards.
    Perplexity(perplexity_cmd::PerplexityArgs),
    /// Score a model on multiple-choice and bits-per-byte tasks, as lm-evaluation-harness does.
    Eval(eval_cmd::EvalArgs),
    /// Print shapes, parameter counts, muP multipliers and per-group learning rates.
    Info {
        /// A run config (.toml), an HF config.json, a model directory or a GGUF file.
        path: PathBuf,
    },
    /// Train a tokenizer.
    #[command(subcommand)]
    Tokenizer(data_cmd::TokenizerCommand),
    /// Prepare training data.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// Scaling laws from measured (N, D, loss) points.
    #[command(subcommand, name = "scaling-law")]
    ScalingLaw(scaling_cmd::ScalingCommand),
    /// The main job on built-in defaults: build a corpus from local text, train a tokenizer,
    /// train the demo model with WSD, print samples.
    Demo(demo::DemoArgs),
    /// Measure training and inference speed.
    #[command(subcommand)]
    Bench(bench_cmd::BenchCommand),
    /// The model wind tunnel: LR sweeps over widths, the coordinate check, the batch-size law, and
    /// a hyperparameter search on a proxy.
    #[command(subcommand)]
    Windtunnel(windtunnel::WindtunnelCommand),
    /// Write a model in another program's format (GGUF for llama.cpp).
    #[command(subcommand)]
    Export(export_cmd::ExportCommand),
}

#[derive(Args)]
struct TrainArgs {
    /// Run config (TOML); required for a new run.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config value, e.g. --set optim.lr=0.02 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Directory of the new run.
    #[arg(long, conflicts_with = "resume")]
    out: Option<PathBuf>,
    /// Continue the run in this directory from its latest checkpoint.
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Across ranks (mpirun, srun): each rank keeps the AdamW moments of its share of the
    /// tensors only, and updates those (ZeRO stage 1); the same numbers as without.
    #[arg(long)]
    shard_optimizer: bool,
}

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    // The ranks of a launch other than rank 0 log warnings only: rank 0 speaks for the run.
    let level = match launch::is_other_rank() {
        true => "warn",
        false => "info",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()),
        )
        .with_target(false)
        .without_time()
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        // `minicpm` or `minicpm plot` alone: the full help, which is what was asked for.
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            e.exit()
        }
        Err(e) => {
            // Usage errors too are one line naming the culprit (clap adds usage and a hint).
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("error: bad arguments");
            eprintln!("{first} (see --help)");
            return ExitCode::from(2);
        }
    };
    let name = std::env::args().nth(1).unwrap_or_default();
    let across_ranks = matches!(
        cli.command,
        Command::Train(_) | Command::Bench(bench_cmd::BenchCommand::Train(_))
    );
    let launch = match launch::Launch::join(&name, across_ranks) {
        Ok(launch) => launch,
        Err(code) => return code,
    };
    let result = match cli.command {
        Command::Train(a) => train(a, &launch),
        Command::Decay(a) => decay_cmd::run(a),
        Command::Upcycle(a) => upcycle_cmd::run(a),
        Command::Extend(a) => extend_cmd::run(a),
        Command::Sft(a) => finetune_cmd::sft(a),
        Command::Dpo(a) => finetune_cmd::dpo(a),
        Command::Runs { dir } => runs_cmd::run(&dir),
        Command::Plot(c) => plot_cmd::run(c),
        Command::Generate(a) => generate_cmd::run(a),
        Command::Chat(a) => chat_cmd::run(a),
        Command::Serve(a) => serve_cmd::run(a),
        Command::Perplexity(a) => perplexity_cmd::run(a),
        Command::Eval(a) => eval_cmd::run(a),
        Command::Quantize(a) => quantize_cmd::run(a),
        Command::Info { path } => info::run(&path),
        Command::Demo(a) => demo::run(a),
        Command::Bench(c) => bench_cmd::run(c, launch.world()),
        Command::ScalingLaw(c) => scaling_cmd::run(c),
        Command::Windtunnel(c) => windtunnel::run(c),
        Command::Export(c) => export_cmd::run(c),
        Command::Tokenizer(data_cmd::TokenizerCommand::Train(a)) => data_cmd::train_tokenizer(a),
        Command::Data(data_cmd::DataCommand::Prepare(a)) => data_cmd::prepare_shards(a),
        Command::Data(data_cmd::DataCommand::FetchDemo { out, force }) => {
            data_cmd::fetch_demo(&out, force)
        }
        Command::Data(data_cmd::DataCommand::EvalTasks(a)) => eval_tasks_cmd::run(a),
        Command::Data(data_cmd::DataCommand::Conversations(a)) => conversations_cmd::run(a),
        Command::Data(data_cmd::DataCommand::Pairs(a)) => pairs_cmd::run(a),
        Command::Data(data_cmd::DataCommand::Passkey(a)) => passkey_docs_cmd::run(a),
    };
    match result {
        Ok(code) => code,
        // One line, naming the culprit; bad input exits 2.
        Err(e) => launch.fail(&e, &minicpm_model::strict::one_line(&error_chain(&e))),
    }
}

/// The error and its causes on one line, skipping causes that the message already quotes.
fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg = format!("{msg}: {c}");
        }
    }
    msg
}

fn train(a: TrainArgs, launch: &launch::Launch) -> anyhow::Result<ExitCode> {
    let args = train_args(&a);
    // Across ranks, bad arguments are one error agreed by every rank, said once by rank 0.
    let (run_dir, config, resume) = match launch.world() {
        Some(w) => {
            minicpm_train::collective::agree(w.as_ref(), args.map_err(|e| format!("{e:#}")))?
        }
        None => args?,
    };
    let ranks = launch.world().map(|world| util::Ranks {
        world,
        shard_optimizer: a.shard_optimizer,
    });
    util::train_and_report(run_dir, config, resume, !a.quiet, ranks)
}

/// The run directory, config and whether it resumes, from `train`'s arguments.
fn train_args(a: &TrainArgs) -> anyhow::Result<(PathBuf, minicpm_train::RunConfig, bool)> {
    Ok(match (&a.out, &a.resume) {
        (Some(out), None) => {
            let path = a
                .config
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("a new run needs --config"))?;
            (
                out.clone(),
                minicpm_train::RunConfig::load(path, &a.set)?,
                false,
            )
        }
        (None, Some(run)) => {
            let path = a
                .config
                .clone()
                .unwrap_or_else(|| run.join(minicpm_train::trainer::RUN_CONFIG_FILE));
            (
                run.clone(),
                minicpm_train::RunConfig::load(&path, &a.set)?,
                true,
            )
        }
        _ => anyhow::bail!("give --out for a new run or --resume RUN_DIR to continue one"),
    })
}
