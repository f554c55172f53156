//! Timed training steps on synthetic tokens: the measurement behind `minicpm bench train`.
//!
//! Each step is the trainer's update (forward, backward, AdamW with the run's parameter groups,
//! micro-batches accumulated as configured) on uniformly random token ids, so no dataset is
//! needed and the cost is the model's alone. The device is synchronised at every phase boundary,
//! so the phase times also hold on asynchronous backends.

use crate::config::RunConfig;
use crate::loss::{batch_loss, input_tensor};
use crate::optimizer::AdamW;
use crate::trainer::TrainError;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Device;
use minicpm_data::Batch;
use minicpm_model::{init, mup, MiniCpm};
use std::time::{Duration, Instant};

/// Wall time spent in each phase of the measured steps.
#[derive(Debug, Clone, Copy, Default)]
pub struct PhaseTimes {
    /// Making the token batch and moving it to the device.
    pub data: Duration,
    /// Logits and loss.
    pub forward: Duration,
    /// Gradients of every parameter.
    pub backward: Duration,
    /// Gradient norm, clipping and the AdamW update.
    pub optimizer: Duration,
}

impl PhaseTimes {
    pub fn total(&self) -> Duration {
        self.data + self.forward + self.backward + self.optimizer
    }
}

#[derive(Debug, Clone)]
pub struct BenchResult {
    /// Measured steps (after warm-up).
    pub steps: u64,
    /// Tokens per optimizer update.
    pub tokens_per_step: u64,
    /// Wall time of the measured steps.
    pub elapsed: Duration,
    pub phases: PhaseTimes,
    /// Loss of the last micro-batch (a sanity check: near ln(vocab) for random tokens).
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
        ((z >> 32) * n as u64 >> 32) as u32
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
        }
    }
}

fn timed<T>(device: &Device, total: &mut Duration, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    // A failed sync surfaces at the next read of a tensor; the timing is what matters here.
    let _ = device.sync();
    *total += start.elapsed();
    out
}

/// Runs `warmup` untimed and then `steps` timed training updates of `cfg`'s model on `device`
/// (an autodiff device).
pub fn run(
    cfg: &RunConfig,
    steps: u64,
    warmup: u64,
    device: &Device,
) -> Result<BenchResult, TrainError> {
    if steps == 0 {
        return Err(TrainError::Usage("--steps must be positive".into()));
    }
    let model_cfg = mup::resolve(&cfg.model, cfg.parametrization);
    let t = &cfg.train;
    let vocab = u32::try_from(model_cfg.vocab_size)
        .map_err(|_| TrainError::Usage("model.vocab_size does not fit token ids".into()))?;
    let accum = cfg.accumulation();
    let mut model = init::init_model(&model_cfg, cfg.parametrization, cfg.seed, device);
    let mut opt = AdamW::new(cfg.optim.clone(), &model_cfg, cfg.parametrization);
    let mut tokens = TokenSource(cfg.seed);
    let mut phases = PhaseTimes::default();
    let mut last_loss = f64::NAN;
    let mut measured_start = Instant::now();
    for step in 0..warmup + steps {
        if step == warmup {
            phases = PhaseTimes::default();
            measured_start = Instant::now();
        }
        let mut acc = GradientsAccumulator::<MiniCpm>::new();
        for _ in 0..accum {
            let (batch, inputs) = timed(device, &mut phases.data, || {
                let batch = tokens.batch(t.micro_batch, t.seq_len, vocab);
                let inputs = input_tensor(&batch, device);
                (batch, inputs)
            });
            let loss = timed(device, &mut phases.forward, || {
                let loss = batch_loss(&model, inputs, &batch.targets);
                if accum > 1 {
                    loss.div_scalar(accum as f64)
                } else {
                    loss
                }
            });
            last_loss = loss.clone().into_scalar::<f32>() as f64 * accum as f64;
            timed(device, &mut phases.backward, || {
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                acc.accumulate(&model, grads);
            });
        }
        model = timed(device, &mut phases.optimizer, || {
            opt.step(model, acc.grads(), cfg.optim.lr).0
        });
    }
    Ok(BenchResult {
        steps,
        tokens_per_step: t.batch_tokens,
        elapsed: measured_start.elapsed(),
        phases,
        last_loss,
    })
}
