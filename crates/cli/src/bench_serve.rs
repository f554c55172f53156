//! `minicpm bench serve`: a bounded load test of an OpenAI-compatible server (ours or
//! llama.cpp's) on loopback: concurrent clients each send streamed completions one after the
//! other, and the run reports aggregate tokens/s, latency and time to first token percentiles,
//! and the server's resident memory over the run.

use anyhow::Context;
use clap::Args;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ServeBenchArgs {
    /// The server's base URL; loopback only, as a load test must not leave the machine.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    url: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Requests in all, shared by the clients.
    #[arg(long, default_value_t = 300)]
    requests: usize,
    /// Prompt length in tokens (random ids, the same for every server given the same seed).
    #[arg(long, default_value_t = 32)]
    prompt_tokens: usize,
    /// Tokens each request generates.
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Token ids are drawn below this (the model's vocabulary or less).
    #[arg(long, default_value_t = 1000)]
    vocab: u32,
    /// The model id to send.
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    api_key: Option<String>,
    /// Stop after this many seconds, whatever is left.
    #[arg(long, default_value_t = 600)]
    time_limit: u64,
    /// The server's process id: its resident memory is sampled through the run.
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One finished request.
#[derive(Clone, Copy)]
struct Sample {
    latency: f64,
    first_token: f64,
    tokens: usize,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Resident memory of `pid` in MiB, from /proc.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// One streamed completion: time to the first generated token's chunk, to the end of the
/// stream, and the tokens generated (the usage chunk's count where the server sends it, else
/// one per chunk).
fn one_request(agent: &ureq::Agent, a: &ServeBenchArgs, prompt: &[u32]) -> anyhow::Result<Sample> {
    let mut body = json!({"prompt": prompt, "max_tokens": a.max_tokens, "temperature": 0,
                          "stream": true, "stream_options": {"include_usage": true}});
    if let Some(m) = &a.model {
        body["model"] = json!(m);
    }
    let mut req = agent.post(format!("{}/v1/completions", a.url));
    if let Some(k) = &a.api_key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    let started = Instant::now();
    let resp = req.send_json(&body)?;
    anyhow::ensure!(resp.status() == 200, "HTTP {}", resp.status());
    let mut first_token = None;
    let (mut chunks, mut usage, mut finished) = (0usize, None, false);
    for line in BufReader::new(resp.into_body().into_reader()).lines() {
        let line = line?;
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let v: Value = serde_json::from_str(data).context("a chunk that is not JSON")?;
        anyhow::ensure!(v.get("error").is_none(), "error event: {}", v["error"]);
        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
            usage = Some(n as usize);
        }
        // A chunk per generated token (its text may be empty while a character is incomplete).
        if let Some(choice) = v["choices"].get(0) {
            chunks += 1;
            first_token.get_or_insert(started.elapsed().as_secs_f64());
            finished |= !choice["finish_reason"].is_null();
        }
        // Not every server ends a completion stream with [DONE] (llama.cpp's does not): the
        // request is over once it has finished and reported its usage.
        if finished && usage.is_some() {
            break;
        }
    }
    let latency = started.elapsed().as_secs_f64();
    Ok(Sample {
        latency,
        first_token: first_token.unwrap_or(latency),
        tokens: usage.unwrap_or(chunks),
    })
}

pub fn run(a: ServeBenchArgs) -> anyhow::Result<ExitCode> {
    let host = a
        .url
        .strip_prefix("http://")
        .and_then(|r| r.split([':', '/']).next())
        .unwrap_or("");
    anyhow::ensure!(
        ["127.0.0.1", "localhost", "[::1]"].contains(&host),
        "--url {}: a load test sends traffic to loopback only",
        a.url
    );
    anyhow::ensure!(
        a.clients >= 1 && a.requests >= 1,
        "--clients and --requests must be at least 1"
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(a.time_limit)))
        .build()
        .into();
    let a = Arc::new(a);
    let next = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let memory = Arc::new(Mutex::new(Vec::<(f64, f64)>::new()));
    let started = Instant::now();
    let sampler = a.server_pid.map(|pid| {
        let (memory, stop) = (memory.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(m) = rss_mib(pid) {
                    memory
                        .lock()
                        .unwrap()
                        .push((started.elapsed().as_secs_f64(), m));
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    });
    let clients: Vec<_> = (0..a.clients)
        .map(|_| {
            let (a, agent, next) = (a.clone(), agent.clone(), next.clone());
            let (samples, errors) = (samples.clone(), errors.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= a.requests || started.elapsed().as_secs() >= a.time_limit {
                    return;
                }
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed.wrapping_add(i as u64));
                let prompt: Vec<u32> = (0..a.prompt_tokens)
                    .map(|_| rng.random_range(1..a.vocab))
                    .collect();
                match one_request(&agent, &a, &prompt) {
                    Ok(s) => samples.lock().unwrap().push(s),
                    Err(e) => errors.lock().unwrap().push(format!("request {i}: {e:#}")),
                }
            })
        })
        .collect();
    for c in clients {
        let _ = c.join();
    }
    let wall = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    if let Some(s) = sampler {
        let _ = s.join();
    }
    let samples = samples.lock().unwrap().clone();
    let errors = errors.lock().unwrap().clone();
    let tokens: usize = samples.iter().map(|s| s.tokens).sum();
    let sorted = |f: fn(&Sample) -> f64| {
        let mut v: Vec<f64> = samples.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let latency = sorted(|s| s.latency);
    let ttft = sorted(|s| s.first_token);
    let memory = memory.lock().unwrap().clone();
    // Memory after warm-up: the first fifth of the run excluded.
    let after_warmup: Vec<f64> = memory
        .iter()
        .filter(|m| m.0 >= wall * 0.2)
        .map(|m| m.1)
        .collect();
    let (mem_lo, mem_hi) = after_warmup
        .iter()
        .fold((f64::INFINITY, 0f64), |(lo, hi), &m| (lo.min(m), hi.max(m)));
    println!(
        "{} clients, {} requests done, {} failed, {:.1} s: {:.1} generated tokens/s, {:.2} requests/s",
        a.clients,
        samples.len(),
        errors.len(),
        wall,
        tokens as f64 / wall,
        samples.len() as f64 / wall
    );
    println!(
        "latency p50 {:.3} s, p99 {:.3} s; time to first token p50 {:.3} s, p99 {:.3} s",
        percentile(&latency, 50.0),
        percentile(&latency, 99.0),
        percentile(&ttft, 50.0),
        percentile(&ttft, 99.0)
    );
    if !after_warmup.is_empty() {
        println!("server memory after warm-up: {mem_lo:.0}-{mem_hi:.0} MiB (RSS)");
    }
    for e in errors.iter().take(5) {
        eprintln!("error: {e}");
    }
    if let Some(path) = &a.json {
        let v = json!({
            "url": a.url, "clients": a.clients, "requests_done": samples.len(),
            "requests_failed": errors.len(), "wall_s": wall, "generated_tokens": tokens,
            "tokens_per_s": tokens as f64 / wall,
            "latency_p50_s": percentile(&latency, 50.0), "latency_p99_s": percentile(&latency, 99.0),
            "ttft_p50_s": percentile(&ttft, 50.0), "ttft_p99_s": percentile(&ttft, 99.0),
            "prompt_tokens": a.prompt_tokens, "max_tokens": a.max_tokens,
            "rss_mib": memory,
        });
        std::fs::write(path, serde_json::to_string_pretty(&v)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(match errors.is_empty() {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    })
}
