//! Pieces shared by the subcommands: devices, running training with Ctrl-C handling, finding and
//! loading models, streaming generated text.

use anyhow::Context;
use burn::tensor::Device;
use minicpm_data::TextTokenizer;
use minicpm_model::{hf, MiniCpm};
use minicpm_serve::SamplingParams;
use minicpm_train::checkpoint;
use minicpm_train::{TrainOptions, TrainOutcome};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

pub fn inference_device() -> Device {
    Device::flex()
}

/// The CPU backend, or the first CUDA GPU when built with the `cuda` feature and
/// MINICPM_DEVICE=cuda is set.
pub fn training_device() -> Device {
    #[cfg(feature = "cuda")]
    if std::env::var("MINICPM_DEVICE").is_ok_and(|d| d == "cuda") {
        return Device::cuda(0).autodiff();
    }
    Device::flex().autodiff()
}

/// One process-wide flag, set by Ctrl-C: the trainer saves a checkpoint and stops.
pub(crate) fn stop_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let installed = ctrlc::set_handler(move || {
            if f.swap(true, Ordering::SeqCst) {
                // A second Ctrl-C: the user wants out now.
                std::process::exit(130);
            }
            eprintln!(
                "\ninterrupt: saving a checkpoint after this update (Ctrl-C again to quit now)"
            );
        });
        if let Err(e) = installed {
            tracing::warn!("Ctrl-C handler not installed: {e}");
        }
        flag
    })
    .clone()
}

pub fn run_training(
    run_dir: PathBuf,
    config: minicpm_train::RunConfig,
    resume: bool,
    progress: bool,
) -> anyhow::Result<TrainOutcome> {
    let opts = TrainOptions {
        run_dir,
        config: Some(config),
        resume,
        stop: stop_flag(),
        progress,
        device: training_device(),
    };
    Ok(minicpm_train::train(opts)?)
}

pub fn report(o: &TrainOutcome) {
    if o.interrupted {
        eprintln!("stopped after update {}", o.steps_done);
    }
    let show = |what: &str, e: &minicpm_train::loss::EvalResult| {
        let bpb = e
            .bits_per_byte
            .map_or(String::new(), |b| format!(", {b:.4} bits/byte"));
        eprintln!("held-out loss {what}: {:.4}{bpb}", e.loss);
    };
    if let Some(e) = &o.initial_eval {
        show("at initialisation", e);
    }
    if let Some(e) = &o.final_eval {
        show("after training", e);
    }
    if let Some(c) = &o.last_checkpoint {
        eprintln!("checkpoint: {}", c.display());
    }
}

/// A model directory from an HF directory, a checkpoint directory or a run directory.
pub fn resolve_model_dir(path: &Path) -> anyhow::Result<PathBuf> {
    if path.join(hf::CONFIG_FILE).exists() {
        return Ok(path.to_path_buf());
    }
    if let Some((_, dir)) = checkpoint::latest(path) {
        return Ok(dir);
    }
    anyhow::bail!(
        "{}: no config.json here and no checkpoints (is it a model or run directory?)",
        path.display()
    )
}

pub fn load_for_inference(dir: &Path) -> anyhow::Result<(MiniCpm, TextTokenizer)> {
    let model = hf::load(dir, &inference_device())?;
    let tok_path = dir.join("tokenizer.json");
    let tok = TextTokenizer::load(&tok_path)
        .with_context(|| "generation needs the model's tokenizer.json")?;
    Ok((model, tok))
}

/// Prints the prompt, then the continuation as it is generated.
pub fn stream_generation(
    model: &MiniCpm,
    tok: &TextTokenizer,
    prompt: &str,
    max_new_tokens: usize,
    params: SamplingParams,
) -> anyhow::Result<String> {
    let prompt_ids = tok.encode(prompt)?;
    let mut ids = vec![model.config.bos_token_id];
    ids.extend(&prompt_ids);
    let mut out = std::io::stdout();
    write!(out, "{prompt}")?;
    // Decode prompt and continuation together: decoders treat the start of a text specially
    // (SentencePiece drops its leading space), and multi-byte characters split across tokens
    // must print whole. Print what the decoded text gained since the last token.
    let mut all = prompt_ids;
    let mut printed = tok.decode(&all)?;
    let start = printed.len();
    minicpm_serve::generate(model, &ids, max_new_tokens, params, |id| {
        all.push(id);
        if let Ok(text) = tok.decode(&all) {
            if text.len() > printed.len()
                && text.starts_with(printed.as_str())
                && !text.ends_with('\u{fffd}')
            {
                let _ = write!(out, "{}", &text[printed.len()..]);
                let _ = out.flush();
                printed = text;
            }
        }
        true
    });
    let printed = printed[start..].to_string();
    writeln!(out)?;
    Ok(printed)
}
