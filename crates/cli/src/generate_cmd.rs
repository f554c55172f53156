//! `minicpm generate`: a continuation of a prompt, streamed, on the inference runtime.

use crate::inference::{self, SamplingArgs};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct GenerateArgs {
    /// An HF model directory, a checkpoint, a run (its latest checkpoint) or a GGUF file.
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value = "", conflicts_with = "prompt_ids")]
    prompt: String,
    /// The prompt as token ids, e.g. 1,5,9 (BOS is not added).
    #[arg(long, value_delimiter = ',')]
    prompt_ids: Option<Vec<u32>>,
    /// Print the generated token ids as one JSON array instead of text.
    #[arg(long)]
    print_ids: bool,
    /// [default: generation_config.json's max_new_tokens, else 64]
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Stop before this text (repeatable).
    #[arg(long = "stop", value_name = "TEXT")]
    stops: Vec<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// A smaller model with the same tokenizer that proposes tokens for this one to verify
    /// (speculative decoding; greedy, the output is the same as without it).
    #[arg(long)]
    draft: Option<PathBuf>,
    /// Tokens the draft proposes per round.
    #[arg(long, default_value_t = 4, requires = "draft")]
    draft_tokens: usize,
}

pub fn run(a: GenerateArgs) -> anyhow::Result<ExitCode> {
    let loaded = inference::load(&a.model, a.threads)?;
    let draft = match &a.draft {
        Some(path) => Some(inference::Draft {
            model: inference::load(path, a.threads)?.files.model,
            tokens: a.draft_tokens,
        }),
        None => None,
    };
    let files = &loaded.files;
    let sampling = a.sampling.resolve(files.sampling)?;
    let max_new_tokens = a.max_new_tokens.or(files.max_new_tokens).unwrap_or(64);
    let (prompt, shown) = match a.prompt_ids {
        Some(ids) => (ids, None),
        None => {
            let mut ids = vec![files.model.config.bos_token_id];
            ids.extend(loaded.tokenizer.encode(&a.prompt)?);
            (ids, Some(a.prompt))
        }
    };
    let mut out = std::io::stdout();
    if a.print_ids {
        let ids = inference::generate_ids(
            &loaded,
            prompt,
            max_new_tokens,
            sampling,
            draft.as_ref(),
            |_| true,
        )?;
        writeln!(out, "{}", serde_json::to_string(&ids)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    // The prompt as given, or the text of its ids.
    let shown = match shown {
        Some(text) => text,
        None => loaded.tokenizer.decode(&prompt)?,
    };
    write!(out, "{shown}")?;
    inference::stream_reply(
        &loaded,
        prompt,
        max_new_tokens,
        sampling,
        a.stops,
        draft.as_ref(),
        &mut out,
    )?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}
