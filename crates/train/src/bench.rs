//! Timed training steps on synthetic tokens: the measurement behind `minicpm bench train`.
//!
//! Each step is the trainer's own [`Step`] (forward, backward, AdamW with the run's parameter
//! groups, micro-batches accumulated as configured) on uniformly random token ids, so no dataset
//! is needed and the cost is the model's alone. The device is synchronised at every phase
//! boundary, so the phase times also hold on asynchronous backends.

use crate::collective::Collective;
use crate::config::RunConfig;
use crate::error::{InvalidSetting, TrainError};
use crate::loss::LanguageModel;
use crate::open_run;
use crate::optimizer_shard::Shard;
use crate::step::{Phase, Step};
use burn::tensor::Device;
use minicpm_data::Batch;
use std::time::{Duration, Instant};

pub use crate::step::PhaseTimes;

#[derive(Debug, Clone)]
pub struct BenchResult {
    /// Measured steps (after warm-up).
    pub steps: u64,
    /// Tokens per optimizer update.
    pub tokens_per_step: u64,
    /// Wall time of the measured steps.
    pub elapsed: Duration,
    pub phases: PhaseTimes,
    /// Mean loss of the last update (a sanity check: near ln(vocab) for random tokens).
    pub last_loss: f64,
}

impl BenchResult {
    pub fn tokens_per_second(&self) -> f64 {
        (self.steps * self.tokens_per_step) as f64 / self.elapsed.as_secs_f64().max(1e-12)
    }
}

/// A small deterministic generator for the synthetic tokens (splitmix64).
pub(crate) struct TokenSource(pub(crate) u64);

impl TokenSource {
    fn next_below(&mut self, n: u32) -> u32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (((z >> 32) * n as u64) >> 32) as u32
    }

    /// `rows` windows of `seq_len + 1` random tokens, as inputs and shifted targets.
    pub(crate) fn batch(&mut self, rows: usize, seq_len: usize, vocab: u32) -> Batch {
        let mut inputs = Vec::with_capacity(rows * seq_len);
        let mut targets = Vec::with_capacity(rows * seq_len);
        for _ in 0..rows {
            let window: Vec<u32> = (0..=seq_len).map(|_| self.next_below(vocab)).collect();
            inputs.extend_from_slice(&window[..seq_len]);
            targets.extend_from_slice(&window[1..]);
        }
        Batch {
            inputs,
            targets,
            rows,
            seq_len,
            positions: None,
        }
    }
}

/// The vocabulary size as the bound of random token ids.
pub(crate) fn token_bound(vocab_size: usize) -> Result<u32, TrainError> {
    u32::try_from(vocab_size).map_err(|_| {
        InvalidSetting::new(
            "model.vocab_size",
            "model.vocab_size does not fit token ids",
        )
        .into()
    })
}

/// Runs `warmup` untimed and then `steps` timed training updates of `cfg`'s model on `device`
/// (an autodiff device), on this process or shared by the ranks of `world` (every rank draws the
/// same tokens and computes its share of the micro-batches, as in training; with
/// `shard_optimizer`, each keeps its share of the AdamW state).
pub fn run(
    cfg: &RunConfig,
    steps: u64,
    warmup: u64,
    device: &Device,
    world: Option<&dyn Collective>,
    shard_optimizer: bool,
) -> Result<BenchResult, TrainError> {
    if steps == 0 {
        return Err(InvalidSetting::new("--steps", "--steps must be positive").into());
    }
    if let Some(w) = world {
        crate::collective::can_share(w, cfg.accumulation())?;
    }
    let t = &cfg.train;
    crate::step::set_matmul_precision(t.matmul, device)?;
    let vocab = token_bound(cfg.model.vocab_size)?;
    let (mut model, mut opt) = open_run::fresh(cfg, device);
    if let Some(w) = world.filter(|_| shard_optimizer) {
        opt.keep_shard(Shard::of(&model, w.rank(), w.size()));
    }
    let mut tokens = TokenSource(cfg.seed);
    let objective = LanguageModel;
    let mut phases = PhaseTimes::default();
    let mut last_loss = f64::NAN;
    let mut measured_start = Instant::now();
    for i in 0..warmup + steps {
        if i == warmup {
            phases = PhaseTimes::default();
            measured_start = Instant::now();
        }
        let mut step = Step::new(&objective, device);
        step.timer = Some(&mut phases);
        step.world = world;
        step.lanes = t.lanes;
        let batches: Vec<Batch> = step.timed(Phase::Data, |_| {
            (0..cfg.accumulation())
                .map(|_| tokens.batch(t.micro_batch, t.seq_len, vocab))
                .collect()
        });
        let (updated, _, loss) = step.run(model, &mut opt, &batches, cfg.optim.lr);
        model = updated;
        last_loss = loss;
    }
    Ok(BenchResult {
        steps,
        tokens_per_step: t.batch_tokens,
        elapsed: measured_start.elapsed(),
        phases,
        last_loss,
    })
}
