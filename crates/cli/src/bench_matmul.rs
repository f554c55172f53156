//! `minicpm bench matmul`: the inference runtime's matrix products at a model's shapes
//! (MiniCPM-1.2B's, or a run config's), for every weight type: weight GB/s at decode (n ≤ 8),
//! GFLOP/s for larger batches and prefill, and the tokens/s of the model's products.

use clap::Args;
use std::process::ExitCode;

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
    /// A run config (TOML) whose [model] gives the shapes, e.g. configs/bench-d512.toml
    /// (default: MiniCPM-1.2B's).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

/// `(rows, cols, uses per token)` of each product of one token, and the output head's rows.
struct Shapes {
    name: String,
    products: Vec<(usize, usize, usize)>,
    head: usize,
}

impl Shapes {
    /// q and o, k and v, gate and up, down (each once per layer), and the output head.
    fn of(name: String, cfg: &minicpm_model::ModelConfig) -> Shapes {
        let (d, layers, ff) = (
            cfg.hidden_size,
            cfg.num_hidden_layers,
            cfg.intermediate_size,
        );
        let (q, kv) = (
            cfg.num_attention_heads * cfg.head_dim(),
            cfg.num_kv_heads() * cfg.head_dim(),
        );
        let mut products = vec![(q, d, layers), (d, q, layers)];
        products.push((kv, d, 2 * layers));
        products.extend([(ff, d, 2 * layers), (d, ff, layers), (cfg.vocab_size, d, 1)]);
        Shapes {
            name,
            products,
            head: cfg.vocab_size,
        }
    }

    /// MiniCPM-1.2B (52 layers): q and o, k and v (8 KV heads of 64), gate and up, down, the
    /// tied output head.
    fn minicpm_1b() -> Shapes {
        const HEAD: usize = 73440;
        Shapes {
            name: "1.2B".into(),
            products: vec![
                (1536, 1536, 2 * 52),
                (512, 1536, 2 * 52),
                (3840, 1536, 2 * 52),
                (1536, 3840, 52),
                (HEAD, 1536, 1),
            ],
            head: HEAD,
        }
    }
}

pub fn run(a: MatmulBenchArgs) -> anyhow::Result<ExitCode> {
    use minicpm_serve::gguf::TensorType;
    use minicpm_serve::quant::QuantType;
    use minicpm_serve::runtime::kernels::Backend;
    use std::time::Instant;
    let shapes = match &a.config {
        Some(path) => {
            let cfg = minicpm_train::RunConfig::load(path, &[])?.model;
            Shapes::of(path.display().to_string(), &cfg)
        }
        None => Shapes::minicpm_1b(),
    };
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
        for &(rows, cols, uses) in &shapes.products {
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
                // step needs it at every sequence: batches up to 64 count as decoding.
                let uses = if rows == shapes.head && n > 64 {
                    0
                } else {
                    uses
                };
                per_token[k] += uses as f64 * t / n as f64;
                per_token_busy[k] += uses as f64 * busy / n as f64;
                let rate = |t: f64| match n <= 8 {
                    true => format!("{:7.1} GB/s", m.stored_bytes() as f64 / t / 1e9),
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
                "{name:5} {} products at n={n:<4}: {:.1} tokens/s   (by CPU time {:.1})",
                shapes.name,
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
    let row = |r: usize| minicpm_serve::synthetic::uniform(cols, r as u32);
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
