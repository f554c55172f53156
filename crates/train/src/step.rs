//! One optimizer update (docs/MODEL.md section 5), the single implementation that training, the
//! benchmark and the coordinate check share: the update's micro-batches each run forward and
//! backward, their gradients accumulate into one, each parameter's complete gradient passes a
//! hook, and AdamW applies it with global-norm clipping.
//!
//! The objective is a parameter: the language-model loss today, a masked SFT loss or the DPO
//! loss next. Each micro-batch's loss is the mean over its own loss tokens, weighted by its share
//! of the update's loss tokens, so the update minimises the mean over every loss token of the
//! update whatever the micro-batches count (a masked loss counts different numbers).

use crate::collective::{self, Collective};
use crate::data_parallel::{all_reduce_gradients, gather_losses};
use crate::error::InvalidSetting;
use crate::lanes;
use crate::optimizer::{AdamW, StepStats};
use crate::optimizer_shard::share_updated;
use burn::module::{Module, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor};
use minicpm_model::kernels::{self, MatmulPrecision};
use minicpm_model::named::{visit_named, NamedVisitor};
use minicpm_model::MiniCpm;
use std::time::{Duration, Instant};

/// What an update minimises.
///
/// Objectives and batches are shared by the lanes that run micro-batches side by side.
pub trait Objective: Sync {
    /// What one micro-batch holds: token rows, or DPO's pairs with their reference
    /// log-probabilities.
    type Batch: Sync;

    /// How many units (tokens, or pairs) of `batch` the loss counts.
    fn loss_tokens(&self, batch: &Self::Batch) -> usize;

    /// The mean loss over `batch`'s loss units, a scalar that keeps its graph. The objective
    /// runs the forward pass itself, so it may read any side output of it (an MoE layer's
    /// auxiliary loss).
    fn loss(&self, model: &MiniCpm, batch: &Self::Batch, device: &Device) -> Tensor<1>;
}

/// Sees each parameter's gradient for the whole update, flattened, once it is complete (after
/// the last micro-batch's backward pass; burn's backward yields all gradients together), and
/// returns the gradient to apply: data parallelism all-reduces here.
pub trait GradientHook {
    fn on_gradient(&mut self, name: &str, grad: Tensor<1>) -> Tensor<1>;
}

/// Wall time spent in each phase of the measured updates.
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
    /// Summing the gradients and gathering the losses over the ranks (data parallelism only).
    pub reduce: Duration,
}

impl PhaseTimes {
    pub fn total(&self) -> Duration {
        self.data + self.forward + self.backward + self.optimizer + self.reduce
    }
}

/// An update's accumulated gradient and its loss.
pub struct Gradients {
    pub grads: GradientsParams,
    /// Mean loss over the update's loss tokens.
    pub loss: f64,
    /// Loss tokens of the update.
    pub loss_tokens: usize,
}

/// The step's settings: what to minimise, where, and optional timing, gradient hook and ranks.
pub struct Step<'a, O> {
    pub objective: &'a O,
    pub device: &'a Device,
    /// When set, the device is synchronised at every phase boundary and the phases timed.
    pub timer: Option<&'a mut PhaseTimes>,
    pub hook: Option<&'a mut dyn GradientHook>,
    /// The ranks that share the update's micro-batches; `None` computes all of them here.
    pub world: Option<&'a dyn Collective>,
    /// Micro-batches computed side by side on the CPU (lanes.rs); 1: one after another.
    pub lanes: usize,
}

impl<'a, O: Objective> Step<'a, O> {
    pub fn new(objective: &'a O, device: &'a Device) -> Self {
        Step {
            objective,
            device,
            timer: None,
            hook: None,
            world: None,
            lanes: 1,
        }
    }

    /// Forward and backward over the update's micro-batches (this rank's share of them),
    /// accumulated into one gradient (summed over the ranks).
    pub fn gradients(&mut self, model: &MiniCpm, batches: &[O::Batch]) -> Gradients {
        let counts: Vec<usize> = batches
            .iter()
            .map(|b| self.objective.loss_tokens(b))
            .collect();
        let total: usize = counts.iter().sum();
        let world = self.world;
        let mine = match world {
            None => 0..batches.len(),
            Some(w) => {
                assert!(
                    batches.len() % w.size() == 0,
                    "{} ranks cannot share {} micro-batches",
                    w.size(),
                    batches.len()
                );
                collective::share(batches.len(), w.rank(), w.size())
            }
        };
        let mut acc = GradientsAccumulator::<MiniCpm>::new();
        let mut losses = Vec::with_capacity(mine.len());
        let mine: Vec<usize> = mine.collect();
        for round in mine.chunks(self.lanes.max(1)) {
            // A micro-batch without loss tokens adds nothing to the loss or the gradient.
            let work: Vec<usize> = round.iter().copied().filter(|&i| counts[i] > 0).collect();
            let passes = self.passes(model, batches, &counts, total, &work);
            let start = Instant::now();
            let mut passes = passes.into_iter();
            for &i in round {
                match counts[i] {
                    0 => losses.push((0.0, 0)),
                    count => {
                        let pass = passes.next().expect("a pass per micro-batch with loss");
                        acc.accumulate(model, pass.grads);
                        losses.push((pass.loss, count));
                    }
                }
            }
            if let Some(t) = self.timer.as_deref_mut() {
                t.backward += start.elapsed();
            }
        }
        let mut grads = acc.grads();
        if let Some(w) = world {
            (grads, losses) = self.timed(Phase::Reduce, |_| {
                (
                    all_reduce_gradients(model, grads, w),
                    gather_losses(w, &losses),
                )
            });
        }
        losses.retain(|l| l.1 > 0);
        if let Some(hook) = self.hook.as_deref_mut() {
            grads = pass_hook(model, grads, hook);
        }
        Gradients {
            grads,
            loss: update_mean(&losses),
            loss_tokens: total,
        }
    }

    /// Forward and backward of the micro-batches `work` (indices into `batches`), one after
    /// another, or side by side in lanes (lanes.rs) when `self.lanes` allows; the passes come
    /// back in `work`'s order.
    fn passes(
        &mut self,
        model: &MiniCpm,
        batches: &[O::Batch],
        counts: &[usize],
        total: usize,
        work: &[usize],
    ) -> Vec<Pass> {
        let (objective, device, timing) = (self.objective, self.device, self.timer.is_some());
        let pass = |model: &MiniCpm, i: usize| {
            forward_backward(
                objective,
                model,
                &batches[i],
                counts[i],
                total,
                device,
                timing,
            )
        };
        let start = Instant::now();
        let passes: Vec<Pass> = match lanes::pools(self.lanes, work.len()) {
            None => work.iter().map(|&i| pass(model, i)).collect(),
            Some(pools) => lanes::run_each(&pools, work, |lane, &i| match lane {
                0 => pass(model, i),
                // A fork has the same parameters under new autodiff nodes: a graph of its own.
                _ => pass(&model.clone().fork(device), i),
            }),
        };
        if let Some(t) = self.timer.as_deref_mut() {
            // Side by side, the passes' phases overlap: the wall time is shared out in the
            // proportion of their forward and backward times.
            let (f, b) = passes.iter().fold((0.0, 0.0), |(f, b), p| {
                (f + p.forward.as_secs_f64(), b + p.backward.as_secs_f64())
            });
            let wall = start.elapsed();
            let forward = wall.mul_f64(f / (f + b).max(f64::MIN_POSITIVE));
            t.forward += forward;
            t.backward += wall.saturating_sub(forward);
        }
        passes
    }

    /// Clipping and the AdamW update at base learning rate `lr`; with sharded optimizer state,
    /// each rank updates its tensors and sends them to the others.
    pub fn update(
        &mut self,
        model: MiniCpm,
        opt: &mut AdamW,
        grads: GradientsParams,
        lr: f64,
    ) -> (MiniCpm, StepStats) {
        let (model, stats) = self.timed(Phase::Optimizer, |_| opt.step(model, grads, lr));
        match (self.world, opt.shard()) {
            (Some(w), Some(shard)) => {
                let model = self.timed(Phase::Reduce, |_| share_updated(model, shard, w));
                (model, stats)
            }
            _ => (model, stats),
        }
    }

    /// [`Self::gradients`] then [`Self::update`].
    pub fn run(
        &mut self,
        model: MiniCpm,
        opt: &mut AdamW,
        batches: &[O::Batch],
        lr: f64,
    ) -> (MiniCpm, StepStats, f64) {
        let g = self.gradients(&model, batches);
        let (model, stats) = self.update(model, opt, g.grads, lr);
        (model, stats, g.loss)
    }

    /// Runs `f`, timing it into `phase` when a timer is set.
    pub(crate) fn timed<T>(&mut self, phase: Phase, f: impl FnOnce(&mut Self) -> T) -> T {
        if self.timer.is_none() {
            return f(self);
        }
        let start = Instant::now();
        let out = f(self);
        // A failed sync surfaces at the next read of a tensor; the timing is what matters here.
        let _ = self.device.sync();
        if let Some(t) = self.timer.as_deref_mut() {
            *match phase {
                Phase::Data => &mut t.data,
                Phase::Optimizer => &mut t.optimizer,
                Phase::Reduce => &mut t.reduce,
            } += start.elapsed();
        }
        out
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Phase {
    Data,
    Optimizer,
    Reduce,
}

/// One micro-batch's gradient and mean loss, with the time its two phases took.
struct Pass {
    grads: GradientsParams,
    loss: f64,
    forward: Duration,
    backward: Duration,
}

/// The loss of `batch` (`count` of the update's `total` loss tokens) and its gradient, weighted
/// by the micro-batch's share of the update. With `timing`, the device is synchronised after
/// each phase so that the times are the phases'.
fn forward_backward<O: Objective>(
    objective: &O,
    model: &MiniCpm,
    batch: &O::Batch,
    count: usize,
    total: usize,
    device: &Device,
    timing: bool,
) -> Pass {
    let sync = || {
        if timing {
            // A failed sync surfaces at the next read of a tensor; the timing is what matters.
            let _ = device.sync();
        }
    };
    let start = Instant::now();
    let loss = objective.loss(model, batch, device);
    sync();
    let forward = start.elapsed();
    // The micro-batch's share of the update: count / total. Dividing by total / count (exactly
    // the number of micro-batches when they count alike) keeps the plain mean's rounding.
    let scaled = match count == total {
        true => loss.clone(),
        false => loss.clone().div_scalar(total as f64 / count as f64),
    };
    let grads = GradientsParams::from_grads(scaled.backward(), model);
    sync();
    Pass {
        grads,
        loss: loss.into_scalar::<f32>() as f64,
        forward,
        backward: start.elapsed() - forward,
    }
}

/// The mean loss over all loss tokens of an update from its micro-batches' (mean, count)
/// (when the counts are equal, the plain mean of the means, with its rounding).
fn update_mean(losses: &[(f64, usize)]) -> f64 {
    if losses.windows(2).all(|w| w[0].1 == w[1].1) {
        return losses.iter().map(|l| l.0).sum::<f64>() / losses.len().max(1) as f64;
    }
    let total: usize = losses.iter().map(|l| l.1).sum();
    let weighted: f64 = losses.iter().map(|&(l, n)| l * n as f64).sum();
    weighted / total as f64
}

/// Gives `hook` every parameter's gradient in module order and keeps what it returns.
fn pass_hook(
    model: &MiniCpm,
    mut grads: GradientsParams,
    hook: &mut dyn GradientHook,
) -> GradientsParams {
    struct Pass<'g> {
        grads: &'g mut GradientsParams,
        hook: &'g mut dyn GradientHook,
    }
    impl NamedVisitor for Pass<'_> {
        fn visit<const D: usize>(&mut self, name: &str, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                let dims = g.dims();
                let flat = self.hook.on_gradient(name, g.reshape([-1]));
                self.grads.register::<D>(param.id, flat.reshape(dims));
            }
        }
    }
    visit_named(
        model,
        &mut Pass {
            grads: &mut grads,
            hook,
        },
    );
    grads
}

/// Sets the products' precision for the run (`train.matmul`, docs/MODEL.md section 7). bf16
/// products are the CPU's; on another device they are refused rather than run in f32 unasked.
pub fn set_matmul_precision(
    precision: MatmulPrecision,
    device: &Device,
) -> Result<(), InvalidSetting> {
    if precision == MatmulPrecision::Bf16 && !kernels::available(device) {
        let msg = "train.matmul = \"bf16\" runs on the CPU only; use \"f32\" on this device";
        return Err(InvalidSetting::new("train.matmul", msg));
    }
    kernels::set_matmul_precision(precision);
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use burn::tensor::activation::log_softmax;
    use burn::tensor::{Int, TensorData};
    use minicpm_data::Batch;
    use minicpm_model::{init, ModelConfig, Parametrization};

    /// Next-token cross-entropy over the positions whose target is not [`IGNORE`] (HF's -100).
    pub(crate) struct Masked;
    const IGNORE: u32 = u32::MAX;

    impl Objective for Masked {
        type Batch = Batch;

        fn loss_tokens(&self, batch: &Batch) -> usize {
            batch.targets.iter().filter(|&&t| t != IGNORE).count()
        }

        fn loss(&self, model: &MiniCpm, batch: &Batch, device: &Device) -> Tensor<1> {
            let ids: Vec<i64> = batch.inputs.iter().map(|&x| x as i64).collect();
            let ids = Tensor::<2, Int>::from_data(
                TensorData::new(ids, [batch.rows, batch.seq_len]),
                device,
            );
            let logits = model.forward(ids, None);
            let [b, t, v] = logits.dims();
            let n = b * t;
            let (targets, mask): (Vec<i64>, Vec<f32>) = batch
                .targets
                .iter()
                .map(|&x| match x {
                    IGNORE => (0, 0.0),
                    x => (x as i64, 1.0),
                })
                .unzip();
            let targets = Tensor::<2, Int>::from_data(TensorData::new(targets, [n, 1]), device);
            let mask = Tensor::<2>::from_data(TensorData::new(mask, [n, 1]), device);
            let picked = log_softmax(logits.reshape([n, v]), 1).gather(1, targets);
            (picked * mask)
                .sum()
                .neg()
                .div_scalar(self.loss_tokens(batch) as f64)
        }
    }

    /// A two-layer model of width 16 (muP).
    pub(crate) fn tiny_config() -> ModelConfig {
        serde_json::from_value(serde_json::json!({
            "vocab_size": 40, "hidden_size": 16, "intermediate_size": 24,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
            "scale_emb": 4.0, "scale_depth": 1.4, "dim_model_base": 8.0
        }))
        .unwrap()
    }

    pub(crate) fn model(device: &Device) -> MiniCpm {
        init::init_model(&tiny_config(), Parametrization::Mup, 3, device)
    }

    /// Eight rows of six tokens; with `masked`, row r ignores its first `r` targets, so the
    /// rows count 6, 5, ..., 0 loss tokens (and micro-batches of two count 11, 7, 3, 0...).
    pub(crate) fn batch(masked: bool) -> Batch {
        let (rows, len) = (8, 6);
        let mut x = 7u32;
        let mut next = || {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) % 40
        };
        let inputs: Vec<u32> = (0..rows * len).map(|_| next()).collect();
        let targets = (0..rows * len)
            .map(|i| match masked && i % len < (i / len).min(len) {
                true => IGNORE,
                false => next(),
            })
            .collect();
        Batch {
            inputs,
            targets,
            rows,
            seq_len: len,
            positions: None,
        }
    }

    pub(crate) fn split(b: &Batch, parts: usize) -> Vec<Batch> {
        let rows = b.rows / parts;
        let n = rows * b.seq_len;
        (0..parts)
            .map(|p| Batch {
                inputs: b.inputs[p * n..(p + 1) * n].to_vec(),
                targets: b.targets[p * n..(p + 1) * n].to_vec(),
                rows,
                seq_len: b.seq_len,
                positions: None,
            })
            .collect()
    }

    /// Every parameter's gradient, flattened, by tensor name.
    pub(crate) fn grads_by_name(model: &MiniCpm, g: &GradientsParams) -> Vec<(String, Vec<f32>)> {
        struct Collect<'a>(&'a GradientsParams, Vec<(String, Vec<f32>)>);
        impl NamedVisitor for Collect<'_> {
            fn visit<const D: usize>(&mut self, name: &str, p: &Param<Tensor<D>>) {
                let v = self
                    .0
                    .get::<D>(p.id)
                    .expect("a gradient for every parameter");
                self.1
                    .push((name.into(), v.into_data().try_to_vec::<f32>().unwrap()));
            }
        }
        let mut c = Collect(g, vec![]);
        visit_named(model, &mut c);
        c.1
    }

    #[test]
    fn four_micro_batches_of_two_make_the_gradient_of_one_batch_of_eight() {
        let device = Device::flex().autodiff();
        let model = model(&device);
        for masked in [false, true] {
            let whole = batch(masked);
            let parts = split(&whole, 4);
            let one = Step::new(&Masked, &device).gradients(&model, std::slice::from_ref(&whole));
            let four = Step::new(&Masked, &device).gradients(&model, &parts);
            assert_eq!(one.loss_tokens, four.loss_tokens);
            assert!(
                (one.loss - four.loss).abs() < 1e-5,
                "masked {masked}: loss {} vs {}",
                one.loss,
                four.loss
            );
            for ((name, a), (_, b)) in grads_by_name(&model, &one.grads)
                .into_iter()
                .zip(grads_by_name(&model, &four.grads))
            {
                let scale = a.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
                let diff = a
                    .iter()
                    .zip(&b)
                    .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(
                    diff / scale < 1e-4,
                    "masked {masked}: {name} differs by {diff} (largest {scale})"
                );
            }
            if masked {
                // The plain mean of the micro-batches' means weighs a token of the last
                // micro-batch (3 tokens) far above one of the first (11): not the same loss.
                let counts: Vec<usize> = parts.iter().map(|p| Masked.loss_tokens(p)).collect();
                assert_eq!(counts, [11, 7, 3, 0]);
                let naive: f64 = parts
                    .iter()
                    .filter(|p| Masked.loss_tokens(p) > 0)
                    .map(|p| Masked.loss(&model, p, &device).into_scalar::<f32>() as f64)
                    .sum::<f64>()
                    / 3.0;
                assert!((naive - one.loss).abs() > 1e-3, "{naive} vs {}", one.loss);
            }
        }
    }

    /// Ranks that each compute one of the update's micro-batches end with the gradient and the
    /// loss of one process computing all of them: bit for bit, since these ranks add their
    /// partial sums in rank order, as one process adds its micro-batches (also when a rank's
    /// micro-batch has no loss token).
    #[test]
    fn ranks_sharing_the_micro_batches_make_the_gradient_of_one_process() {
        use crate::collective::tests::on_ranks;
        let device = Device::flex().autodiff();
        let model = model(&device);
        for masked in [false, true] {
            for size in [2, 4] {
                let parts = split(&batch(masked), size);
                let one = Step::new(&Masked, &device).gradients(&model, &parts);
                let reference = grads_by_name(&model, &one.grads);
                let ranks = on_ranks(size, |w| {
                    let mut step = Step::new(&Masked, &device);
                    step.world = Some(w);
                    let g = step.gradients(&model, &parts);
                    (g.loss, g.loss_tokens, grads_by_name(&model, &g.grads))
                });
                for (rank, (loss, tokens, grads)) in ranks.into_iter().enumerate() {
                    let at = format!("masked {masked}, rank {rank} of {size}");
                    assert_eq!((loss, tokens), (one.loss, one.loss_tokens), "{at}");
                    assert_eq!(grads, reference, "{at}");
                }
            }
        }
    }

    /// Micro-batches run side by side in lanes make the update's gradient and loss of one after
    /// another, bit for bit (the lanes' gradients are added in micro-batch order), also when a
    /// round holds a micro-batch without loss tokens or the lanes outnumber its micro-batches.
    #[test]
    fn lanes_make_the_gradient_of_the_micro_batches_one_after_another() {
        let device = Device::flex().autodiff();
        let model = model(&device);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        for masked in [false, true] {
            let parts = split(&batch(masked), 4);
            let one = Step::new(&Masked, &device).gradients(&model, &parts);
            let reference = grads_by_name(&model, &one.grads);
            for lanes in [2, 3, 4] {
                let g = pool.install(|| {
                    let mut step = Step::new(&Masked, &device);
                    step.lanes = lanes;
                    step.gradients(&model, &parts)
                });
                let at = format!("masked {masked}, {lanes} lanes");
                assert_eq!((g.loss, g.loss_tokens), (one.loss, one.loss_tokens), "{at}");
                assert_eq!(grads_by_name(&model, &g.grads), reference, "{at}");
            }
        }
    }

    /// The hook sees every parameter's finished gradient once, by HF name, and what it returns
    /// is what the optimizer gets.
    #[test]
    fn the_gradient_hook_sees_each_parameter_once_and_its_result_is_kept() {
        struct Double(Vec<String>);
        impl GradientHook for Double {
            fn on_gradient(&mut self, name: &str, grad: Tensor<1>) -> Tensor<1> {
                self.0.push(name.to_string());
                grad.mul_scalar(2.0)
            }
        }
        let device = Device::flex().autodiff();
        let model = model(&device);
        let parts = split(&batch(false), 2);
        let plain = Step::new(&Masked, &device).gradients(&model, &parts);
        let mut hook = Double(vec![]);
        let mut step = Step::new(&Masked, &device);
        step.hook = Some(&mut hook);
        let doubled = step.gradients(&model, &parts);
        let names: Vec<String> = grads_by_name(&model, &plain.grads)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(hook.0, names);
        assert_eq!(names.len(), 1 + 2 * 9 + 1);
        for ((_, a), (_, b)) in grads_by_name(&model, &plain.grads)
            .into_iter()
            .zip(grads_by_name(&model, &doubled.grads))
        {
            assert!(a.iter().zip(&b).all(|(x, y)| 2.0 * x == *y));
        }
    }
}
