//! `minicpm serve`: the OpenAI-compatible HTTP server (docs/SERVING.md) on a model directory, run
//! or GGUF file, loopback only unless `--host` says otherwise.

use crate::chat_cmd::{choose_template, TemplateArg};
use crate::inference;
use clap::Args;
use minicpm_serve::api::request::Limits;
use minicpm_serve::api::{self, AppState, StateParts};
use minicpm_serve::engine::{Engine, EngineConfig};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

/// The environment variable an API key may come from instead of `--api-key`.
const API_KEY_ENV: &str = "MINICPM_API_KEY";

#[derive(Args)]
pub struct ServeArgs {
    /// An HF model directory, a checkpoint, a run (its latest checkpoint) or a GGUF file.
    #[arg(long)]
    model: PathBuf,
    /// Address to bind: loopback by default; any other address exposes the server to the network.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port (0 picks a free one and prints it).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// The model id clients name [default: the model's directory or file name].
    #[arg(long)]
    served_model_name: Option<String>,
    /// Require `Authorization: Bearer KEY` on every route but /health [env: MINICPM_API_KEY].
    #[arg(long)]
    api_key: Option<String>,
    /// Sequences decoded together (continuous batching slots).
    #[arg(long, default_value_t = 8)]
    slots: usize,
    /// Tokens each slot holds, prompt and reply [default: the model's context, at most 4096].
    #[arg(long)]
    context: Option<usize>,
    /// Requests that may wait for a slot; beyond it requests get 429.
    #[arg(long, default_value_t = 256)]
    queue: usize,
    /// Prompt tokens fed per step over all prompts being filled, so decoding never waits for a
    /// whole long prompt.
    #[arg(long, default_value_t = 256)]
    prefill_chunk: usize,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    max_body_bytes: usize,
    /// Most streaming responses open at once.
    #[arg(long, default_value_t = 128)]
    max_streams: usize,
    /// Largest `n` (choices per prompt).
    #[arg(long, default_value_t = 8)]
    max_n: usize,
    /// The chat template [default: the model's tokenizer_config.json template, else minicpm].
    #[arg(long, value_enum)]
    template: Option<TemplateArg>,
    /// Threads for the model (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

pub fn run(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let api_key = a
        .api_key
        .clone()
        .or_else(|| std::env::var(API_KEY_ENV).ok());
    let path = inference::model_path(&a.model)?;
    let loaded = inference::load(&path, a.threads)?;
    let files = loaded.files;
    let config = files.model.config.clone();
    let limit = files.model.context_limit();
    let context = match a.context {
        Some(c) => {
            anyhow::ensure!(
                c >= 1 && c <= limit,
                "--context {c} is outside 1..={limit}, the model's context"
            );
            c
        }
        None => config.max_position_embeddings.min(4096),
    };
    anyhow::ensure!(a.slots >= 1, "--slots must be at least 1");
    anyhow::ensure!(a.max_n >= 1, "--max-n must be at least 1");
    let kv_mib = (a.slots
        * config.num_hidden_layers
        * context
        * 2
        * config.num_kv_heads()
        * config.head_dim()
        * 4) as f64
        / (1u64 << 20) as f64;
    let name = a.served_model_name.clone().unwrap_or_else(|| {
        let named = if a.model.is_file() {
            a.model.file_stem()
        } else {
            a.model.file_name()
        };
        named.map_or("model".into(), |n| n.to_string_lossy().into_owned())
    });
    let engine = Engine::start(
        files.model,
        EngineConfig {
            slots: a.slots,
            context,
            queue: a.queue,
            prefill_chunk: a.prefill_chunk,
        },
    )
    .map_err(|e| anyhow::anyhow!("--slots {} x --context {context}: {e}", a.slots))?;
    let state = AppState::new(StateParts {
        engine,
        tokenizer: loaded.tokenizer,
        model_name: name.clone(),
        template: choose_template(a.template, files.chat_template.as_deref()),
        bos: config.bos_token_id,
        defaults: files.sampling,
        default_max_tokens: files.max_new_tokens,
        limits: Limits {
            max_n: a.max_n,
            ..Limits::default()
        },
        api_key: api_key.clone(),
        max_streams: a.max_streams,
    });
    if !a.host.is_loopback() {
        eprintln!(
            "warning: binding {}: the server is reachable from other machines{}",
            a.host,
            if api_key.is_none() {
                " and needs no API key"
            } else {
                ""
            }
        );
    }
    let addr = SocketAddr::new(a.host, a.port);
    api::serve(state, addr, a.max_body_bytes, |bound| {
        eprintln!(
            "serving {} as `{name}`: {} slots x {context} tokens (KV cache up to {kv_mib:.0} MiB), API key {}",
            path.display(),
            a.slots,
            if api_key.is_some() { "required" } else { "not required" },
        );
        // The one line on stdout: scripts read the address (and port) from it.
        println!("listening on http://{bound}");
    })
    .map_err(|e| anyhow::anyhow!("serving on {addr}: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
