//! `minicpm bench generate`: the inference runtime's speed on one model file, measured as
//! llama.cpp's llama-bench measures it: prefill tokens/s over a prompt of `--prompt-tokens`
//! (pp512), decode tokens/s over `--decode-tokens` generated one at a time (tg128), plus the
//! time to the first token, batched decoding of several sequences, and peak memory.

use crate::inference;
use clap::Args;
use minicpm_serve::runtime::{InferenceModel, KvCache, Logits, Sequence};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Args)]
pub struct GenerateBenchArgs {
    /// An HF model directory, a checkpoint, a run or a GGUF file.
    #[arg(long)]
    model: PathBuf,
    /// Prompt length of the prefill test.
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    /// Tokens of the decode test.
    #[arg(long, default_value_t = 128)]
    decode_tokens: usize,
    /// Sequences decoded together in the batched test (0 skips it).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Repetitions of each test; the mean and standard deviation are reported.
    #[arg(long, default_value_t = 3)]
    repetitions: usize,
    /// Threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Also print the results as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Rate {
    mean: f64,
    std: f64,
}

fn rate(samples: &[f64]) -> Rate {
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    Rate {
        mean,
        std: var.sqrt(),
    }
}

#[derive(Serialize)]
struct Report {
    model: String,
    threads: usize,
    weight_bytes: usize,
    prompt_tokens: usize,
    decode_tokens: usize,
    prefill_tokens_per_s: Rate,
    time_to_first_token_s: f64,
    decode_tokens_per_s: Rate,
    batch: usize,
    batched_decode_tokens_per_s: Option<Rate>,
    kv_cache_bytes: usize,
    peak_rss_bytes: Option<u64>,
}

/// Token ids that are not special (ids 3.. of the vocabulary), the same on every run.
fn prompt_ids(len: usize, vocab: usize, seed: usize) -> Vec<u32> {
    (0..len)
        .map(|i| (3 + (i * 7919 + seed * 104_729) % (vocab - 3)) as u32)
        .collect()
}

/// Seconds to decode `steps` tokens one pass at a time for every slot of `cache` (each slot
/// already holds a prompt); the tokens fed are fixed ids, so every run does the same work.
fn decode(m: &InferenceModel, cache: &mut KvCache, steps: usize) -> anyhow::Result<f64> {
    let vocab = m.config.vocab_size;
    let slots = cache.slots();
    let started = Instant::now();
    for step in 0..steps {
        let tokens: Vec<[u32; 1]> = (0..slots)
            .map(|s| [prompt_ids(1, vocab, step * slots + s)[0]])
            .collect();
        let seqs: Vec<Sequence> = tokens
            .iter()
            .enumerate()
            .map(|(slot, t)| Sequence { slot, tokens: t })
            .collect();
        m.forward(cache, &seqs, Logits::Last)?;
    }
    Ok(started.elapsed().as_secs_f64())
}

pub fn run(a: GenerateBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.prompt_tokens > 0, "--prompt-tokens must be positive");
    anyhow::ensure!(a.repetitions > 0, "--repetitions must be positive");
    let started = Instant::now();
    let loaded = inference::load(&a.model, a.threads)?;
    let m = &loaded.files.model;
    let vocab = m.config.vocab_size;
    let limit = m.context_limit();
    anyhow::ensure!(
        a.prompt_tokens <= limit && a.decode_tokens < limit,
        "the tests need {} tokens of context; the model has {limit}",
        a.prompt_tokens.max(a.decode_tokens) + 1
    );
    eprintln!(
        "bench: {} ({:.2} GB of weights), {} threads, loaded in {:.1} s",
        a.model.display(),
        m.weights.bytes() as f64 / 1e9,
        m.threads(),
        started.elapsed().as_secs_f64()
    );
    // One untimed pass of each kind first: page in the weights, warm the thread pool.
    let mut warm = m.new_cache(1, 8);
    m.forward(
        &mut warm,
        &[Sequence {
            slot: 0,
            tokens: &prompt_ids(4, vocab, 0),
        }],
        Logits::Last,
    )?;

    let mut prefill = vec![];
    let mut first_token = vec![];
    for r in 0..a.repetitions {
        let mut cache = m.new_cache(1, a.prompt_tokens);
        let prompt = prompt_ids(a.prompt_tokens, vocab, r);
        let t = Instant::now();
        let logits = m.forward(
            &mut cache,
            &[Sequence {
                slot: 0,
                tokens: &prompt,
            }],
            Logits::Last,
        )?;
        minicpm_serve::sampling::argmax(&logits);
        let s = t.elapsed().as_secs_f64();
        first_token.push(s);
        prefill.push(a.prompt_tokens as f64 / s);
    }
    // Decoding from a one-token context, as llama-bench's tg test does.
    let mut decode_rates = vec![];
    let mut cache_bytes = 0;
    for _ in 0..a.repetitions {
        let mut cache = m.new_cache(1, a.decode_tokens + 1);
        cache_bytes = cache.bytes();
        let bos = [m.config.bos_token_id];
        m.forward(
            &mut cache,
            &[Sequence {
                slot: 0,
                tokens: &bos,
            }],
            Logits::Last,
        )?;
        decode_rates.push(a.decode_tokens as f64 / decode(m, &mut cache, a.decode_tokens)?);
    }
    let batched = match a.batch {
        0 => None,
        b => {
            let mut rates = vec![];
            for _ in 0..a.repetitions {
                let mut cache = m.new_cache(b, a.decode_tokens + 1);
                cache_bytes = cache_bytes.max(cache.bytes());
                let bos = [m.config.bos_token_id];
                let seqs: Vec<Sequence> =
                    (0..b).map(|slot| Sequence { slot, tokens: &bos }).collect();
                m.forward(&mut cache, &seqs, Logits::Last)?;
                rates.push((b * a.decode_tokens) as f64 / decode(m, &mut cache, a.decode_tokens)?);
            }
            Some(rate(&rates))
        }
    };
    let report = Report {
        model: a.model.display().to_string(),
        threads: m.threads(),
        weight_bytes: m.weights.bytes(),
        prompt_tokens: a.prompt_tokens,
        decode_tokens: a.decode_tokens,
        prefill_tokens_per_s: rate(&prefill),
        time_to_first_token_s: first_token.iter().sum::<f64>() / first_token.len() as f64,
        decode_tokens_per_s: rate(&decode_rates),
        batch: a.batch,
        batched_decode_tokens_per_s: batched,
        kv_cache_bytes: cache_bytes,
        peak_rss_bytes: crate::bench_cmd::peak_rss_bytes(),
    };
    let r = &report;
    eprintln!(
        "prefill pp{}: {:.1} ± {:.1} tok/s (time to first token {:.2} s)",
        r.prompt_tokens,
        r.prefill_tokens_per_s.mean,
        r.prefill_tokens_per_s.std,
        r.time_to_first_token_s
    );
    eprintln!(
        "decode tg{}: {:.1} ± {:.1} tok/s",
        r.decode_tokens, r.decode_tokens_per_s.mean, r.decode_tokens_per_s.std
    );
    if let Some(b) = &r.batched_decode_tokens_per_s {
        eprintln!(
            "decode, {} sequences together: {:.1} ± {:.1} tok/s ({:.2}x one sequence)",
            r.batch,
            b.mean,
            b.std,
            b.mean / r.decode_tokens_per_s.mean
        );
    }
    if let Some(p) = r.peak_rss_bytes {
        eprintln!(
            "peak memory {:.0} MiB: weights {:.0} MiB + KV cache {:.0} MiB + {:.0} MiB",
            p as f64 / 1048576.0,
            r.weight_bytes as f64 / 1048576.0,
            r.kv_cache_bytes as f64 / 1048576.0,
            (p as f64 - r.weight_bytes as f64 - r.kv_cache_bytes as f64) / 1048576.0
        );
    }
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(ExitCode::SUCCESS)
}
