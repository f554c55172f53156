//! Data parallelism's part of an update (docs/MODEL.md section 14): each rank
//! has computed the gradient of its share of the update's micro-batches; here the partial
//! gradients are summed over the ranks, in buckets of one flat buffer, and the micro-batches'
//! losses are gathered, so that every rank ends the update with the gradient and the loss one
//! process computing every micro-batch would have.
//!
//! One process adds its micro-batches' gradients in order, `(g1 + g2) + g3 ...`. Two ranks add
//! two partial gradients, which is the same sum bit for bit (`a + b == b + a` in IEEE
//! arithmetic). With more ranks the engine chooses the order in which it adds the partial sums,
//! so the result agrees to rounding, not bit for bit.

use crate::collective::Collective;
use burn::module::Param;
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use minicpm_model::kernels::{self, HostTensor};
use minicpm_model::named::{visit_named, NamedVisitor};
use minicpm_model::MiniCpm;
use std::time::{Duration, Instant};

/// Floats summed by one collective call: 16 MiB, large enough that the engine runs at its
/// bandwidth, small enough that its scratch copy stays small.
pub const BUCKET_FLOATS: usize = 4 << 20;

/// Sums `grads` over the ranks of `world`. A parameter without a gradient on some rank (an
/// expert no token of its share was routed to) counts as zeros there; one without a gradient on
/// any rank stays without one, as in one process.
pub fn all_reduce_gradients(
    model: &MiniCpm,
    mut grads: GradientsParams,
    world: &dyn Collective,
) -> GradientsParams {
    // Every parameter's local gradient, in module order (the same on every rank).
    struct Take<'g> {
        grads: &'g mut GradientsParams,
        taken: Vec<(usize, Option<Tensor<1>>)>,
    }
    impl NamedVisitor for Take<'_> {
        fn visit<const D: usize>(&mut self, _: &str, param: &Param<Tensor<D>>) {
            let len = param.val().shape().num_elements();
            let local = self.grads.remove::<D>(param.id).map(|g| g.reshape([-1]));
            self.taken.push((len, local));
        }
    }
    let start = Instant::now();
    let mut take = Take {
        grads: &mut grads,
        taken: vec![],
    };
    visit_named(model, &mut take);
    let taken = take.taken;

    let mut present: Vec<f32> = taken.iter().map(|t| t.1.is_some() as u8 as f32).collect();
    let taken_at = start.elapsed();
    // The first collective of the update: it also waits for the slowest rank's backward pass.
    world.all_reduce_sum(&mut present);
    let waited = start.elapsed() - taken_at;

    FLAT.with_borrow_mut(|flat| {
        flat.clear();
        for ((len, local), &p) in taken.into_iter().zip(&present) {
            match (p > 0.0, local) {
                (false, _) => {}
                (true, Some(g)) => append(flat, g),
                (true, None) => flat.resize(flat.len() + len, 0.0),
            }
        }
        let flattened = start.elapsed() - waited;
        for bucket in flat.chunks_mut(BUCKET_FLOATS) {
            world.all_reduce_sum(bucket);
        }
        let reduced = start.elapsed() - waited;
        put_back(model, &mut grads, flat, &present);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        tracing::debug!(
            "gradient all-reduce of {} floats: {:.1} ms waiting for the other ranks, {:.1} ms to \
             flatten, {:.1} ms in the collective, {:.1} ms to put back",
            flat.len(),
            ms(waited),
            ms(flattened),
            ms(reduced - flattened),
            ms(start.elapsed() - waited - reduced)
        );
    });
    grads
}

thread_local! {
    /// The flat gradient buffer, kept from update to update: a fresh one of this size would take
    /// its page faults again at every update (a third of the all-reduce's time at d512).
    static FLAT: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Appends the elements of `g` to `flat`: straight from its storage on the CPU.
fn append(flat: &mut Vec<f32>, g: Tensor<1>) {
    if kernels::available(&g.device()) {
        let host = HostTensor::new(g).expect("a CPU tensor");
        flat.extend_from_slice(&host.values());
    } else {
        let data = g.into_data();
        flat.extend_from_slice(data.as_slice::<f32>().expect("gradients are f32"));
    }
}

/// Registers each globally present parameter's slice of `flat` as its gradient.
fn put_back(model: &MiniCpm, grads: &mut GradientsParams, flat: &[f32], present: &[f32]) {
    struct Put<'g> {
        grads: &'g mut GradientsParams,
        flat: &'g [f32],
        present: std::slice::Iter<'g, f32>,
        offset: usize,
    }
    impl NamedVisitor for Put<'_> {
        fn visit<const D: usize>(&mut self, _: &str, param: &Param<Tensor<D>>) {
            if *self.present.next().expect("one entry per parameter") == 0.0 {
                return;
            }
            let value = param.val();
            let shape = value.shape();
            let len = shape.num_elements();
            let part = self.flat[self.offset..self.offset + len].to_vec();
            self.offset += len;
            let device = value.inner().device();
            let g = Tensor::<D>::from_data(TensorData::new(part, shape), &device);
            self.grads.register::<D>(param.id, g);
        }
    }
    visit_named(
        model,
        &mut Put {
            grads,
            flat,
            present: present.iter(),
            offset: 0,
        },
    );
}

/// Every rank's (mean loss, loss units) of its share of micro-batches, in rank order, which is
/// micro-batch order: all of the update's. Each rank gives one entry per micro-batch of its share
/// (units 0 for one it skipped), so the shares have one length.
pub fn gather_losses(world: &dyn Collective, mine: &[(f64, usize)]) -> Vec<(f64, usize)> {
    let bytes: Vec<u8> = mine
        .iter()
        .flat_map(|&(loss, n)| {
            let mut b = loss.to_le_bytes().to_vec();
            b.extend_from_slice(&(n as u64).to_le_bytes());
            b
        })
        .collect();
    world
        .all_gather(&bytes)
        .iter()
        .flat_map(|b| {
            b.chunks_exact(16).map(|e| {
                (
                    f64::from_le_bytes(e[..8].try_into().unwrap()),
                    u64::from_le_bytes(e[8..].try_into().unwrap()) as usize,
                )
            })
        })
        .collect()
}
