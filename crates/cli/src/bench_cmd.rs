//! `minicpm bench train`: training throughput, model FLOP/s, MFU, peak memory and the time per
//! phase of a run config's model on synthetic tokens (`bench generate`, `bench matmul` and
//! `bench random-model` are in bench_generate.rs, bench_matmul.rs and bench_model.rs).

use crate::fma_peak::{self, FmaPeak};
use crate::gemm_peak;
use burn::tensor::Device;
use clap::{Args, Subcommand};
use minicpm_model::kernels::MatmulPrecision;
use minicpm_train::bench::{self, BenchResult};
use minicpm_train::flops;
use minicpm_train::{Collective, RunConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Time training steps of a config's model on random tokens (no dataset needed).
    Train(TrainBenchArgs),
    /// Inference speed of a model file: prefill, decode, batched decode, memory.
    Generate(crate::bench_generate::GenerateBenchArgs),
    /// Write a GGUF file of a config's shapes with random weights, to time against llama.cpp.
    RandomModel(crate::bench_model::RandomModelArgs),
    /// Time the inference runtime's matmul for every weight type at MiniCPM-1.2B's shapes, at
    /// decode (n = 1, 8: weight GB/s) and prefill (n = 512: GFLOP/s), and the tokens/s of the
    /// model's products (at prefill with the output head run once per prompt).
    Matmul(crate::bench_matmul::MatmulBenchArgs),
    /// Load-test an OpenAI-compatible server on loopback: concurrent streamed completions,
    /// tokens/s, latency and time-to-first-token percentiles, server memory.
    Serve(crate::bench_serve::ServeBenchArgs),
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
    /// Across ranks: each keeps the AdamW state of its share of the tensors (as `train`'s).
    #[arg(long)]
    shard_optimizer: bool,
}

pub fn run(c: BenchCommand, world: Option<Rc<dyn Collective>>) -> anyhow::Result<ExitCode> {
    match c {
        BenchCommand::Train(a) => train(a, world.as_deref()),
        BenchCommand::Generate(a) => crate::bench_generate::run(a),
        BenchCommand::RandomModel(a) => crate::bench_model::run(a),
        BenchCommand::Matmul(a) => crate::bench_matmul::run(a),
        BenchCommand::Serve(a) => crate::bench_serve::run(a),
    }
}

/// Peak resident memory of this process in bytes (Linux's VmHWM), if the platform reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `bench train`, alone or on every rank of `world` (`mpirun -np N minicpm bench train`), where
/// rank 0 reports the launch's throughput and its own memory and phase times, the all-reduce
/// among them; the one-process peaks (GEMM, FMA) and MFU are left out.
fn train(a: TrainBenchArgs, world: Option<&dyn Collective>) -> anyhow::Result<ExitCode> {
    let cfg = RunConfig::load(&a.config, &a.set);
    let cfg = match world {
        Some(w) => minicpm_train::collective::agree(w, cfg)?,
        None => cfg?,
    };
    let device = bench_device(&a.device)?;
    let m = &cfg.model;
    let t = &cfg.train;
    let speaks = minicpm_train::collective::leads(world);
    let ranks = world.map_or(String::new(), |w| format!(" on each of {} ranks", w.size()));
    let lanes = match t.lanes {
        1 => String::new(),
        n => format!(" in {n} lanes"),
    };
    let matmul = match t.matmul {
        MatmulPrecision::F32 => "",
        MatmulPrecision::Bf16 => ", bf16 products",
    };
    if speaks {
        eprintln!(
        "bench: d{} L{} heads {} d_ff {} vocab {}, {} x {} tokens per micro-batch, {} per update, {} warm-up + {} timed updates, {} threads{lanes}{matmul}{ranks}",
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
    }
    let result = bench::run(&cfg, a.steps, a.warmup, &device, world, a.shard_optimizer)?;
    if !speaks {
        return Ok(ExitCode::SUCCESS);
    }
    // The GEMM peak at the MLP's shape (tokens x hidden x d_ff), the step's commonest product.
    let gemm = world.is_none().then(|| {
        gemm_peak::measure(
            &device.clone().inner(),
            t.micro_batch * t.seq_len,
            m.hidden_size,
            m.intermediate_size,
            Duration::from_secs(2),
        )
    });
    // The CPU's FMA peak, so that MFU is also quoted against what no library can beat (a GPU's
    // peak is the card's datasheet figure: docs/PERFORMANCE.md).
    let fma =
        (a.device == "cpu" && world.is_none()).then(|| fma_peak::measure(Duration::from_secs(1)));
    let report = Report::new(&cfg, &result, gemm, fma, peak_rss_bytes());
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
    /// `None` across ranks, where one process's peak is not the launch's.
    gemm_flops: Option<f64>,
    fma: Option<FmaPeak>,
    peak_rss: Option<u64>,
    /// The products' precision, which the GEMM peak is measured in too.
    matmul: MatmulPrecision,
}

impl<'a> Report<'a> {
    fn new(
        cfg: &RunConfig,
        result: &'a BenchResult,
        gemm_flops: Option<f64>,
        fma: Option<FmaPeak>,
        peak_rss: Option<u64>,
    ) -> Self {
        Report {
            result,
            flops_per_token: flops::train_flops_per_token(&cfg.model, cfg.train.seq_len),
            gemm_flops,
            fma,
            peak_rss,
            matmul: cfg.train.matmul,
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
        if let Some(gemm) = self.gemm_flops {
            let precision = match self.matmul {
                MatmulPrecision::F32 => "",
                MatmulPrecision::Bf16 => " in bf16",
            };
            s += &format!(
                "GEMM peak      {:.1} GFLOP/s (the linear layer's product{precision}, measured now)\n",
                gemm / 1e9
            );
        }
        let mfu_gemm = self.gemm_flops.map(|g| 100.0 * self.achieved_flops() / g);
        match (&self.fma, mfu_gemm) {
            (Some(fma), Some(mfu_gemm)) => {
                s += &format!(
                    "FMA peak       {:.1} GFLOP/s (f32 FMA loop, {} x {} threads, measured now)\n",
                    fma.flops / 1e9,
                    fma.isa,
                    fma.threads
                );
                s += &format!(
                    "MFU            {mfu_gemm:.1}% of the GEMM peak, {:.1}% of the FMA peak\n",
                    100.0 * self.achieved_flops() / fma.flops
                );
            }
            (None, Some(mfu_gemm)) => {
                s += &format!("MFU            {mfu_gemm:.1}% of the GEMM peak\n")
            }
            _ => {}
        }
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
        if !p.reduce.is_zero() {
            s += &format!("  all-reduce   {}\n", share(p.reduce));
        }
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
            "mfu": self.gemm_flops.map(|g| self.achieved_flops() / g),
            "fma_peak_flops": self.fma.as_ref().map(|f| f.flops),
            "fma_isa": self.fma.as_ref().map(|f| f.isa),
            "mfu_fma": self.fma.as_ref().map(|f| self.achieved_flops() / f.flops),
            "peak_rss_bytes": self.peak_rss,
            "phase_ms": {
                "data": ms(r.phases.data),
                "forward": ms(r.phases.forward),
                "backward": ms(r.phases.backward),
                "optimizer": ms(r.phases.optimizer),
                "reduce": ms(r.phases.reduce),
            },
            "last_loss": r.last_loss,
        })
    }
}
