//! Decay diagnostics (docs/MODEL.md section 7): the paper explains WSD's sharp loss drop by what
//! the optimizer does in the decay: the gradient norm, the cosine similarity of consecutive
//! gradients (negative while the weights bounce across a valley), and the largest per-element
//! update. They are taken on logged updates only, from host copies, so that the step itself is
//! untouched: [`Diagnostics`] decides what to copy when.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use minicpm_model::MiniCpm;

/// What a logged update's record shows of the optimizer, gathered around each update.
#[derive(Debug, Default)]
pub struct Diagnostics {
    enabled: bool,
    /// The previous update's gradient, kept only when the next update logs its cosine.
    previous: Option<(u64, Vec<f32>)>,
    weights_before: Option<Vec<f32>>,
}

impl Diagnostics {
    pub fn new(enabled: bool) -> Self {
        Diagnostics {
            enabled,
            ..Default::default()
        }
    }

    /// Before update `s` is applied, given whether `s` and `s + 1` log records; `gradients` and
    /// `weights` flatten the update's gradient and the current weights when called. Returns the
    /// cosine of this update's gradient with the previous one's, when `s` logs and the previous
    /// gradient was kept.
    pub fn before_update(
        &mut self,
        s: u64,
        logs: bool,
        next_logs: bool,
        gradients: impl FnOnce() -> Vec<f32>,
        weights: impl FnOnce() -> Vec<f32>,
    ) -> Option<f64> {
        if !self.enabled {
            return None;
        }
        self.weights_before = logs.then(weights);
        if !(logs || next_logs) {
            return None;
        }
        let g = gradients();
        let cos = match &self.previous {
            Some((prev_step, prev)) if logs && prev_step + 1 == s => cosine(prev, &g),
            _ => None,
        };
        self.previous = Some((s, g));
        cos
    }

    /// After the update: the largest change of any weight, when the update logs. `weights`
    /// flattens the updated weights when called.
    pub fn after_update(&mut self, weights: impl FnOnce() -> Vec<f32>) -> Option<f64> {
        let before = self.weights_before.take()?;
        max_abs_change(&before, &weights())
    }
}

/// Every gradient, flattened into one host vector in module order.
pub fn flat_gradients(model: &MiniCpm, grads: &GradientsParams) -> Vec<f32> {
    struct Collect<'a> {
        grads: &'a GradientsParams,
        out: Vec<f32>,
    }
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                self.out.extend(host(g));
            }
        }
    }
    let mut c = Collect {
        grads,
        out: Vec::new(),
    };
    model.visit(&mut c);
    c.out
}

/// Every weight, flattened into one host vector in module order.
pub fn flat_weights(model: &MiniCpm) -> Vec<f32> {
    struct Collect {
        out: Vec<f32>,
    }
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.out.extend(host(param.val()));
        }
    }
    let mut c = Collect { out: Vec::new() };
    model.visit(&mut c);
    c.out
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.to_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data")
}

/// Cosine similarity of two equally long vectors (None when either is zero or lengths differ).
pub fn cosine(a: &[f32], b: &[f32]) -> Option<f64> {
    if a.len() != b.len() {
        return None;
    }
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    (aa > 0.0 && bb > 0.0).then(|| ab / (aa.sqrt() * bb.sqrt()))
}

/// The largest absolute element-wise difference (None when lengths differ).
pub fn max_abs_change(before: &[f32], after: &[f32]) -> Option<f64> {
    (before.len() == after.len()).then(|| {
        before
            .iter()
            .zip(after)
            .map(|(&a, &b)| (b as f64 - a as f64).abs())
            .fold(0.0, f64::max)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Updates 0..6 where 0, 2, 3 and 6 log: a cosine needs the previous update's gradient, so
    /// update 1's gradient is kept for 2 (and 2's for 3), while 5's is kept for 6.
    #[test]
    fn the_gradient_cosine_and_the_update_size_come_from_the_right_updates() {
        let logs = |s: u64| [0, 2, 3, 6].contains(&s);
        let grad = |s: u64| vec![1.0, s as f32];
        let mut d = Diagnostics::new(true);
        let mut weights = vec![0.0f32, 0.0];
        let mut seen = vec![];
        let mut gradients_taken = vec![];
        for s in 0..7u64 {
            let cos = d.before_update(
                s,
                logs(s),
                logs(s + 1),
                || {
                    gradients_taken.push(s);
                    grad(s)
                },
                || weights.clone(),
            );
            weights[1] += s as f32;
            let change = d.after_update(|| weights.clone());
            seen.push((s, cos.is_some(), change));
            if let Some(c) = cos {
                assert!((c - cosine(&grad(s - 1), &grad(s)).unwrap()).abs() < 1e-12);
            }
        }
        assert_eq!(gradients_taken, [0, 1, 2, 3, 5, 6]);
        assert_eq!(
            seen,
            [
                (0, false, Some(0.0)),
                (1, false, None),
                (2, true, Some(2.0)),
                (3, true, Some(3.0)),
                (4, false, None),
                (5, false, None),
                (6, true, Some(6.0)),
            ]
        );
        let mut off = Diagnostics::new(false);
        let never = || -> Vec<f32> { unreachable!("diagnostics are off") };
        assert_eq!(off.before_update(0, true, true, never, never), None);
        assert_eq!(off.after_update(never), None);
    }

    #[test]
    fn cosine_and_change_by_hand() {
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 2.0]), Some(0.0));
        assert!((cosine(&[1.0, 1.0], &[-2.0, -2.0]).unwrap() + 1.0).abs() < 1e-12);
        assert!((cosine(&[3.0, 4.0], &[4.0, 3.0]).unwrap() - 24.0 / 25.0).abs() < 1e-12);
        assert_eq!(cosine(&[0.0], &[1.0]), None);
        assert_eq!(
            max_abs_change(&[1.0, -2.0, 0.5], &[1.5, -2.25, 0.5]),
            Some(0.5)
        );
    }
}
