//! `minicpm bench train`: training throughput, model FLOP/s, MFU, peak memory and the time per
//! phase of a run config's model on synthetic tokens. `minicpm bench matmul`: the inference
//! runtime's matrix products at MiniCPM-1.2B's shapes.

use crate::gemm_peak;
use burn::tensor::Device;
use clap::{Args, Subcommand};
use minicpm_train::bench::{self, BenchResult};
use minicpm_train::flops;
use minicpm_train::RunConfig;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Time training steps of a config's model on random tokens (no dataset needed).
    Train(TrainBenchArgs),
    /// Time the inference runtime's matmul for every weight type at MiniCPM-1.2B's shapes, at
    /// decode (n = 1, 8: weight GB/s) and prefill (n = 512: GFLOP/s), and the tokens/s of the
    /// model's products (at prefill with the output head run once per prompt).
    Matmul(MatmulBenchArgs),
}

#[derive(Args)]
pub struct MatmulBenchArgs {
    /// Threads in the pool.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Weight types (f32, f16, bf16, q8_0, q4_0, q4_k), comma-separated.
    #[arg(
        long,
        default_value = "f32,f16,bf16,q8_0,q4_0,q4_k",
        value_delimiter = ','
    )]
    types: Vec<String>,
    /// Activation rows per product, comma-separated.
    #[arg(long, default_value = "1,8,512", value_delimiter = ',')]
    n: Vec<usize>,
    /// Least time spent on each measurement, in seconds (after one untimed product).
    #[arg(long, default_value_t = 0.5)]
    seconds: f64,
}

#[derive(Args)]
pub struct TrainBenchArgs {
    /// Run config (TOML): the model, optimizer and train.micro_batch / seq_len / batch_tokens.
    #[arg(long)]
    config: PathBuf,
    /// Override a config value, e.g. --set train.micro_batch=4 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Timed optimizer updates.
    #[arg(long, default_value_t = 10)]
    steps: u64,
    /// Untimed updates first (allocator and thread-pool warm-up).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Also print the results as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Where to train: `cpu` (burn's Flex backend) or `cuda` (needs the `cuda` build feature).
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(c: BenchCommand) -> anyhow::Result<ExitCode> {
    match c {
        BenchCommand::Train(a) => train(a),
        BenchCommand::Matmul(a) => matmul(a),
    }
}

fn matmul(a: MatmulBenchArgs) -> anyhow::Result<ExitCode> {
    use minicpm_serve::gguf::TensorType;
    use minicpm_serve::quant::QuantType;
    use minicpm_serve::runtime::kernels::Backend;
    use std::time::Instant;
    // [out, in] of each product and how often one token of MiniCPM-1.2B (52 layers) runs it:
    // q and o, k and v (8 KV heads of 64), gate and up, down, the tied output head.
    const SHAPES: [(usize, usize, usize); 5] = [
        (1536, 1536, 2 * 52),
        (512, 1536, 2 * 52),
        (3840, 1536, 2 * 52),
        (1536, 3840, 52),
        (HEAD, 1536, 1),
    ];
    const HEAD: usize = 73440;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build()?;
    eprintln!(
        "bench matmul: {} threads, {} kernels",
        a.threads,
        Backend::detect().name()
    );
    for name in &a.types {
        let ty = match name.as_str() {
            "f32" => TensorType::F32,
            "f16" => TensorType::F16,
            "bf16" => TensorType::Bf16,
            "q8_0" => TensorType::Quant(QuantType::Q8_0),
            "q4_0" => TensorType::Quant(QuantType::Q4_0),
            "q4_k" => TensorType::Quant(QuantType::Q4K),
            other => anyhow::bail!("--types: unknown type {other:?}"),
        };
        // Seconds per token of all the model's products, per n.
        let mut per_token = vec![0f64; a.n.len()];
        let mut per_token_busy = vec![0f64; a.n.len()];
        for &(rows, cols, uses) in &SHAPES {
            let m = pool.install(|| bench_matrix(rows, cols, ty))?;
            for (k, &n) in a.n.iter().enumerate() {
                let x: Vec<f32> = (0..n * cols)
                    .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                    .collect();
                let mut out = vec![0f32; n * rows];
                pool.install(|| m.matmul(&x, n, &mut out));
                let (mut reps, start, cpu) = (0u32, Instant::now(), cpu_seconds());
                while reps < 2 || start.elapsed().as_secs_f64() < a.seconds {
                    pool.install(|| m.matmul(&x, n, &mut out));
                    reps += 1;
                }
                let t = start.elapsed().as_secs_f64() / reps as f64;
                // The time the threads would have taken had they had their cores to themselves:
                // other work on the machine stretches the wall time, not the CPU time.
                let busy = match (cpu, cpu_seconds()) {
                    (Some(a0), Some(a1)) => (a1 - a0) / reps as f64 / a.threads as f64,
                    _ => f64::NAN,
                };
                // A prompt needs the output head at its last position only (llama.cpp's prompt
                // throughput counts it so): one row of 512, negligible, left out. A decoding
                // step needs it at every sequence.
                let uses = if rows == HEAD && n > 8 { 0 } else { uses };
                per_token[k] += uses as f64 * t / n as f64;
                per_token_busy[k] += uses as f64 * busy / n as f64;
                let rate = |t: f64| match n <= 8 {
                    true => format!("{:7.1} GB/s", m.bytes().len() as f64 / t / 1e9),
                    false => format!("{:7.1} GFLOP/s", 2.0 * (n * rows * cols) as f64 / t / 1e9),
                };
                println!(
                    "{name:5} [{cols:5} -> {rows:5}] n={n:<4} {:9.3} ms {}   (by CPU time {})",
                    t * 1e3,
                    rate(t),
                    rate(busy)
                );
            }
        }
        for (k, &n) in a.n.iter().enumerate() {
            println!(
                "{name:5} 1.2B products at n={n:<4}: {:.1} tokens/s   (by CPU time {:.1})",
                1.0 / per_token[k],
                1.0 / per_token_busy[k]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// User + system CPU time of this process so far (Linux; ticks of 1/100 s).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// A `[rows, cols]` matrix of `ty` from deterministic values in [-1, 1), quantised row by row
/// on the pool (the output head has 113 M weights).
fn bench_matrix(
    rows: usize,
    cols: usize,
    ty: minicpm_serve::gguf::TensorType,
) -> anyhow::Result<minicpm_serve::runtime::Matrix> {
    use minicpm_serve::gguf::TensorType;
    use minicpm_serve::runtime::Matrix;
    use rayon::prelude::*;
    let row = |r: usize| -> Vec<f32> {
        let mut s = (r as u32).wrapping_mul(2_654_435_761) | 1;
        (0..cols)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    };
    let values: Vec<f32> = (0..rows).into_par_iter().flat_map_iter(row).collect();
    let TensorType::Quant(q) = ty else {
        return Ok(Matrix::from_f32(rows, cols, &values, ty)?);
    };
    let bytes: Vec<Vec<u8>> = values
        .par_chunks(cols)
        .map(|v| q.quantize(v))
        .collect::<Result<_, _>>()?;
    Ok(Matrix::from_bytes(rows, cols, ty, bytes.concat())?)
}

/// Peak resident memory of this process in bytes (Linux's VmHWM), if the platform reports it.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn train(a: TrainBenchArgs) -> anyhow::Result<ExitCode> {
    let cfg = RunConfig::load(&a.config, &a.set)?;
    let device = bench_device(&a.device)?;
    let m = &cfg.model;
    let t = &cfg.train;
    eprintln!(
        "bench: d{} L{} heads {} d_ff {} vocab {}, {} x {} tokens per micro-batch, {} per update, {} warm-up + {} timed updates, {} threads",
        m.hidden_size,
        m.num_hidden_layers,
        m.num_attention_heads,
        m.intermediate_size,
        m.vocab_size,
        t.micro_batch,
        t.seq_len,
        t.batch_tokens,
        a.warmup,
        a.steps,
        rayon_threads(),
    );
    let result = bench::run(&cfg, a.steps, a.warmup, &device)?;
    // The GEMM peak at the MLP's shape (tokens x hidden x d_ff), the step's commonest product.
    let gemm = gemm_peak::measure(
        &device.clone().inner(),
        t.micro_batch * t.seq_len,
        m.hidden_size,
        m.intermediate_size,
        Duration::from_secs(2),
    );
    let report = Report::new(&cfg, &result, gemm, peak_rss_bytes());
    eprint!("{}", report.text());
    if a.json {
        println!("{}", report.json());
    }
    Ok(ExitCode::SUCCESS)
}

fn bench_device(name: &str) -> anyhow::Result<Device> {
    match name {
        "cpu" => Ok(Device::flex().autodiff()),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::cuda(0).autodiff()),
        #[cfg(not(feature = "cuda"))]
        "cuda" => anyhow::bail!("--device cuda: this minicpm was built without the `cuda` feature"),
        other => anyhow::bail!("--device {other:?}: expected cpu or cuda"),
    }
}

fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

struct Report<'a> {
    result: &'a BenchResult,
    flops_per_token: f64,
    gemm_flops: f64,
    peak_rss: Option<u64>,
}

impl<'a> Report<'a> {
    fn new(
        cfg: &RunConfig,
        result: &'a BenchResult,
        gemm_flops: f64,
        peak_rss: Option<u64>,
    ) -> Self {
        Report {
            result,
            flops_per_token: flops::train_flops_per_token(&cfg.model, cfg.train.seq_len),
            gemm_flops,
            peak_rss,
        }
    }

    fn achieved_flops(&self) -> f64 {
        self.result.tokens_per_second() * self.flops_per_token
    }

    fn text(&self) -> String {
        let r = self.result;
        let p = &r.phases;
        let total = p.total().as_secs_f64().max(1e-12);
        let share = |d: Duration| {
            format!(
                "{:8.1} ms/update {:5.1}%",
                d.as_secs_f64() * 1e3 / r.steps as f64,
                100.0 * d.as_secs_f64() / total
            )
        };
        let mut s = String::new();
        s += &format!("tokens/s       {:.0}\n", r.tokens_per_second());
        s += &format!(
            "step time      {:.1} ms/update\n",
            r.elapsed.as_secs_f64() * 1e3 / r.steps as f64
        );
        s += &format!(
            "model FLOPs    {:.3} GFLOP/token = {}\n",
            self.flops_per_token / 1e9,
            flops::FORMULA
        );
        s += &format!(
            "achieved       {:.1} GFLOP/s\n",
            self.achieved_flops() / 1e9
        );
        s += &format!(
            "GEMM peak      {:.1} GFLOP/s (backend matmul, measured now)\n",
            self.gemm_flops / 1e9
        );
        s += &format!(
            "MFU            {:.1}% of the GEMM peak\n",
            100.0 * self.achieved_flops() / self.gemm_flops
        );
        s += &format!(
            "peak memory    {}\n",
            self.peak_rss.map_or("unknown".into(), |b| format!(
                "{:.0} MiB (peak RSS)",
                b as f64 / (1 << 20) as f64
            ))
        );
        s += &format!("  data         {}\n", share(p.data));
        s += &format!("  forward      {}\n", share(p.forward));
        s += &format!("  backward     {}\n", share(p.backward));
        s += &format!("  optimizer    {}\n", share(p.optimizer));
        s += &format!("last loss      {:.4}\n", r.last_loss);
        s
    }

    fn json(&self) -> serde_json::Value {
        let r = self.result;
        let ms = |d: Duration| d.as_secs_f64() * 1e3 / r.steps as f64;
        serde_json::json!({
            "tokens_per_s": r.tokens_per_second(),
            "step_ms": ms(r.elapsed),
            "flops_per_token": self.flops_per_token,
            "achieved_flops": self.achieved_flops(),
            "gemm_peak_flops": self.gemm_flops,
            "mfu": self.achieved_flops() / self.gemm_flops,
            "peak_rss_bytes": self.peak_rss,
            "phase_ms": {
                "data": ms(r.phases.data),
                "forward": ms(r.phases.forward),
                "backward": ms(r.phases.backward),
                "optimizer": ms(r.phases.optimizer),
            },
            "last_loss": r.last_loss,
        })
    }
}
