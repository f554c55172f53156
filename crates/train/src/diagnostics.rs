//! Decay diagnostics (MINICPM.md section 4): the paper explains WSD's sharp loss drop by what
//! the optimizer does in the decay: the gradient norm, the cosine similarity of consecutive
//! gradients (negative while the weights bounce across a valley), and the largest per-element
//! update. They are taken on logged updates only, from host copies, so that the step itself is
//! untouched.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use minicpm_model::MiniCpm;

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
