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
use burn::module::{Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use minicpm_model::named::{visit_named, NamedVisitor};
use minicpm_model::MiniCpm;

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
    // Every parameter's local gradient, flattened, in module order (the same on every rank).
    struct Take<'g> {
        grads: &'g mut GradientsParams,
        taken: Vec<(ParamId, usize, Option<Vec<f32>>)>,
    }
    impl NamedVisitor for Take<'_> {
        fn visit<const D: usize>(&mut self, _: &str, param: &Param<Tensor<D>>) {
            let len = param.val().shape().num_elements();
            let local = self.grads.remove::<D>(param.id).map(|g| {
                g.into_data()
                    .try_into_vec::<f32>()
                    .expect("gradients are f32")
            });
            self.taken.push((param.id, len, local));
        }
    }
    let mut take = Take {
        grads: &mut grads,
        taken: vec![],
    };
    visit_named(model, &mut take);
    let taken = take.taken;

    let mut present: Vec<f32> = taken.iter().map(|t| t.2.is_some() as u8 as f32).collect();
    world.all_reduce_sum(&mut present);

    let total: usize = taken
        .iter()
        .zip(&present)
        .filter(|(_, &p)| p > 0.0)
        .map(|(t, _)| t.1)
        .sum();
    let mut flat = Vec::with_capacity(total);
    for ((_, len, local), &p) in taken.iter().zip(&present) {
        match (p > 0.0, local) {
            (false, _) => {}
            (true, Some(g)) => flat.extend_from_slice(g),
            (true, None) => flat.resize(flat.len() + len, 0.0),
        }
    }
    drop(taken);
    for bucket in flat.chunks_mut(BUCKET_FLOATS) {
        world.all_reduce_sum(bucket);
    }

    // Back into the gradient set, each parameter's slice in its own shape.
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
            grads: &mut grads,
            flat: &flat,
            present: present.iter(),
            offset: 0,
        },
    );
    grads
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
