//! What `generate`, `chat` and `bench generate` share: opening a model (HF directory, checkpoint,
//! run or GGUF file) on the inference runtime with its tokenizer, resolving sampling flags
//! against the model's generation_config.json, and streaming a reply as it is generated.

use crate::util;
use anyhow::Context;
use clap::Args;
use minicpm_data::TextTokenizer;
use minicpm_serve::model_files::{self, ModelFiles};
use minicpm_serve::runtime::speculative::generate_speculative;
use minicpm_serve::runtime::Request;
use minicpm_serve::text_stream::TextStream;
use minicpm_serve::SamplingParams;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Sampling flags; each unset one takes the model's generation_config.json value, else the
/// built-in default.
#[derive(Args, Debug, Clone, Default)]
pub struct SamplingArgs {
    /// 0 is greedy [default: 0.8].
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass [default: 0.95].
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Sample among the k most likely tokens; 0 is all [default: 0].
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Penalty on tokens already in the text (1 is none) [default: 1].
    #[arg(long)]
    pub repetition_penalty: Option<f64>,
    /// Seed of the sampler: the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SamplingArgs {
    pub fn resolve(&self, defaults: SamplingParams) -> anyhow::Result<SamplingParams> {
        let p = SamplingParams {
            temperature: self.temperature.unwrap_or(defaults.temperature),
            top_p: self.top_p.unwrap_or(defaults.top_p),
            top_k: self.top_k.unwrap_or(defaults.top_k),
            repetition_penalty: self
                .repetition_penalty
                .unwrap_or(defaults.repetition_penalty),
            seed: self.seed,
        };
        p.check().map_err(anyhow::Error::msg)?;
        Ok(p)
    }
}

pub struct Loaded {
    pub files: ModelFiles,
    pub tokenizer: TextTokenizer,
}

/// The model directory or GGUF file `path` names (a run or checkpoint directory resolves to its
/// latest checkpoint).
pub fn model_path(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    util::resolve_model_dir(path)
}

/// Opens a model on the runtime with `threads` threads (0: one per core) and its tokenizer.
pub fn load(path: &Path, threads: usize) -> anyhow::Result<Loaded> {
    let path = model_path(path)?;
    let files = model_files::open(&path, threads)?;
    let json = files.tokenizer_json.as_deref().with_context(|| {
        format!(
            "{}: no tokenizer (an HF directory needs tokenizer.json; a GGUF file needs tokenizer.huggingface.json)",
            path.display()
        )
    })?;
    let tokenizer = TextTokenizer::from_json(json, &path.display().to_string())?;
    Ok(Loaded { files, tokenizer })
}

/// A draft model for speculative decoding and how many tokens it proposes per round.
pub struct Draft {
    pub model: minicpm_serve::runtime::InferenceModel,
    pub tokens: usize,
}

/// The new tokens after `prompt` (ids, BOS included), each shown to `on_token` as it is chosen
/// (false stops). With a draft, decoding is speculative (greedy only) and its statistics go to
/// stderr.
pub fn generate_ids(
    loaded: &Loaded,
    prompt: Vec<u32>,
    max_new_tokens: usize,
    sampling: SamplingParams,
    draft: Option<&Draft>,
    mut on_token: impl FnMut(u32) -> bool,
) -> anyhow::Result<Vec<u32>> {
    let model = &loaded.files.model;
    let Some(d) = draft else {
        let request = Request {
            prompt,
            max_new_tokens,
            sampling,
        };
        return Ok(model.generate(&[request], |_, id| on_token(id))?.remove(0));
    };
    anyhow::ensure!(
        sampling.temperature == 0.0,
        "speculative decoding (--draft) is greedy: give --temperature 0"
    );
    let started = std::time::Instant::now();
    let (tokens, stats) =
        generate_speculative(model, &d.model, &prompt, max_new_tokens, d.tokens, on_token)?;
    eprintln!(
        "speculative: {} tokens in {} passes of the model, {:.0}% of {} draft tokens accepted, {:.1} tokens/s",
        tokens.len(),
        stats.target_passes,
        100.0 * stats.acceptance_rate(),
        stats.proposed,
        tokens.len() as f64 / started.elapsed().as_secs_f64()
    );
    Ok(tokens)
}

/// [`generate_ids`], printing the new text as it arrives and stopping at the first of `stops`;
/// returns the new text.
pub fn stream_reply(
    loaded: &Loaded,
    prompt: Vec<u32>,
    max_new_tokens: usize,
    sampling: SamplingParams,
    stops: Vec<String>,
    draft: Option<&Draft>,
    out: &mut impl Write,
) -> anyhow::Result<String> {
    let tok = &loaded.tokenizer;
    let mut stream = TextStream::new(|ids: &[u32]| tok.decode(ids).ok(), &prompt, stops);
    let mut text = String::new();
    let mut io_error = None;
    generate_ids(loaded, prompt, max_new_tokens, sampling, draft, |id| {
        let piece = stream.push(id);
        text.push_str(&piece.text);
        if let Err(e) = write!(out, "{}", piece.text).and_then(|_| out.flush()) {
            io_error = Some(e);
            return false;
        }
        !piece.stop
    })?;
    if let Some(e) = io_error {
        return Err(e.into());
    }
    let rest = stream.finish();
    write!(out, "{rest}")?;
    text.push_str(&rest);
    Ok(text)
}
