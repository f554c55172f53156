//! Optimizer-state sharding, ZeRO's stage 1 (docs/MODEL.md section 14): across N ranks, each
//! tensor's AdamW moments live on one rank, its owner, which alone updates that tensor and then
//! sends its new values to the others. Every rank still holds the whole model and the whole
//! summed gradient (the global norm and clipping need it), so the updates are exactly those of
//! the unsharded optimizer, and a checkpoint gathers the moments back into the one file an
//! unsharded run writes.

use crate::collective::Collective;
use crate::optimizer::{AdamW, Moments};
use burn::module::Param;
use burn::tensor::{Tensor, TensorData};
use minicpm_model::named::{map_named, visit_named, NamedMapper, NamedVisitor};
use minicpm_model::MiniCpm;
use std::collections::HashMap;

/// Which rank owns each tensor's optimizer state.
#[derive(Debug, Clone)]
pub struct Shard {
    owners: HashMap<String, usize>,
    rank: usize,
}

impl Shard {
    /// The tensors in module order, cut into `size` contiguous runs of about equal element
    /// counts; `rank` is this process's.
    pub fn of(model: &MiniCpm, rank: usize, size: usize) -> Shard {
        struct Sizes(Vec<(String, usize)>);
        impl NamedVisitor for Sizes {
            fn visit<const D: usize>(&mut self, name: &str, param: &Param<Tensor<D>>) {
                self.0
                    .push((name.to_string(), param.lazy_shape().num_elements()));
            }
        }
        let mut sizes = Sizes(vec![]);
        visit_named(model, &mut sizes);
        let total: usize = sizes.0.iter().map(|s| s.1).sum();
        let mut start = 0;
        let owners = sizes
            .0
            .into_iter()
            .map(|(name, len)| {
                // The rank whose slice of the element range holds the tensor's first element.
                let owner = (start * size / total.max(1)).min(size - 1);
                start += len;
                (name, owner)
            })
            .collect();
        Shard { owners, rank }
    }

    /// The rank that owns `name`'s state.
    pub fn owner(&self, name: &str) -> usize {
        self.owners[name]
    }

    /// Whether this rank owns `name`'s state.
    pub fn owns(&self, name: &str) -> bool {
        self.owner(name) == self.rank
    }
}

/// After a sharded update, where each rank updated only the tensors it owns: every tensor's new
/// values, sent by its owner to every rank.
pub fn share_updated(model: MiniCpm, shard: &Shard, world: &dyn Collective) -> MiniCpm {
    struct Share<'a> {
        shard: &'a Shard,
        world: &'a dyn Collective,
    }
    impl NamedMapper for Share<'_> {
        fn map<const D: usize>(&mut self, name: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let owner = self.shard.owner(name);
            let (id, value, mapper) = param.consume();
            let require_grad = value.is_require_grad();
            let inner = value.inner();
            let shape = inner.shape();
            let mut values = match owner == self.world.rank() {
                true => inner.to_data().try_to_vec::<f32>().expect("f32 weights"),
                false => vec![0.0; shape.num_elements()],
            };
            self.world.broadcast(&mut values, owner);
            let inner = match owner == self.world.rank() {
                true => inner,
                false => Tensor::from_data(TensorData::new(values, shape), &inner.device()),
            };
            let mut value = Tensor::from_inner(inner);
            if require_grad {
                value = value.require_grad();
            }
            Param::from_mapped_value(id, value, mapper)
        }
    }
    map_named(model, &mut Share { shard, world })
}

/// The whole optimizer state of a sharded `opt`, for a checkpoint: every tensor's moments sent
/// by its owner; rank 0 keeps them all (the others keep none), so that it writes the file an
/// unsharded run writes.
pub fn gathered(opt: &AdamW, model: &MiniCpm, world: &dyn Collective) -> AdamW {
    let Some(shard) = opt.shard() else {
        return opt.with_moments(opt.moments().clone());
    };
    struct Gather<'a> {
        opt: &'a AdamW,
        shard: &'a Shard,
        world: &'a dyn Collective,
        kept: HashMap<String, Moments>,
    }
    impl NamedVisitor for Gather<'_> {
        fn visit<const D: usize>(&mut self, name: &str, param: &Param<Tensor<D>>) {
            let owner = self.shard.owner(name);
            let len = param.lazy_shape().num_elements();
            let mine = self.opt.moments().get(name);
            let device = param.val().inner().device();
            let mut both = Vec::with_capacity(2);
            for part in [mine.map(|m| &m.m), mine.map(|m| &m.v)] {
                let mut values = match (owner == self.world.rank(), part) {
                    (true, Some(t)) => t.to_data().try_to_vec::<f32>().expect("f32 moments"),
                    // An owner without state for the tensor (no update yet) sends zeros, as
                    // the moments start.
                    _ => vec![0.0; len],
                };
                self.world.broadcast(&mut values, owner);
                both.push(Tensor::<1>::from_data(
                    TensorData::new(values, [len]),
                    &device,
                ));
            }
            let has_state = {
                let mut flag = [(mine.is_some() && owner == self.world.rank()) as u8 as f32];
                self.world.broadcast(&mut flag, owner);
                flag[0] > 0.0
            };
            if self.world.rank() == 0 && has_state {
                let v = both.pop().expect("two moments");
                let m = both.pop().expect("two moments");
                self.kept.insert(name.to_string(), Moments { m, v });
            }
        }
    }
    let mut g = Gather {
        opt,
        shard,
        world,
        kept: HashMap::new(),
    };
    visit_named(model, &mut g);
    opt.with_moments(g.kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collective::tests::on_ranks;
    use crate::diagnostics::flat_weights;
    use crate::optimizer::OptimConfig;
    use crate::step::tests::{batch, model, split, tiny_config, Masked};
    use crate::step::Step;
    use burn::tensor::Device;
    use minicpm_model::mup::{self, Parametrization};

    fn optimizer() -> AdamW {
        let cfg = mup::resolve(&tiny_config(), Parametrization::Mup);
        AdamW::new(OptimConfig::default(), &cfg, Parametrization::Mup)
    }

    /// Every tensor's moments, flattened, by name.
    fn moments(opt: &AdamW) -> Vec<(String, Vec<f32>, Vec<f32>)> {
        let mut all: Vec<_> = opt
            .moments()
            .iter()
            .map(|(name, s)| {
                let host = |t: &Tensor<1>| t.to_data().try_to_vec::<f32>().unwrap();
                (name.clone(), host(&s.m), host(&s.v))
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Three updates with the state sharded over two ranks give the weights of three unsharded
    /// updates bit for bit on both ranks, each rank keeps only its own tensors' state, and the
    /// gathered state is the unsharded optimizer's.
    #[test]
    fn sharded_state_updates_the_weights_the_whole_state_updates() {
        let device = Device::flex().autodiff();
        let parts = split(&batch(false), 2);
        let (mut alone, mut whole) = (model(&device), optimizer());
        for _ in 0..3 {
            (alone, _, _) = Step::new(&Masked, &device).run(alone, &mut whole, &parts, 0.01);
        }
        let ranks = on_ranks(2, |w| {
            let mut m = model(&device);
            let mut opt = optimizer();
            opt.keep_shard(Shard::of(&m, w.rank(), w.size()));
            for _ in 0..3 {
                let mut step = Step::new(&Masked, &device);
                step.world = Some(w);
                (m, _, _) = step.run(m, &mut opt, &parts, 0.01);
            }
            let kept: Vec<String> = moments(&opt).into_iter().map(|m| m.0).collect();
            (flat_weights(&m), kept, moments(&gathered(&opt, &m, w)))
        });
        let reference = moments(&whole);
        let (kept0, kept1) = (&ranks[0].1, &ranks[1].1);
        assert!(!kept0.is_empty() && !kept1.is_empty());
        assert!(kept0.iter().all(|n| !kept1.contains(n)), "disjoint shares");
        assert_eq!(kept0.len() + kept1.len(), reference.len());
        for (rank, (weights, _, gathered)) in ranks.iter().enumerate() {
            assert_eq!(weights, &flat_weights(&alone), "rank {rank}'s weights");
            match rank {
                0 => assert_eq!(gathered, &reference, "the gathered state"),
                _ => assert!(gathered.is_empty(), "only rank 0 keeps the gathered state"),
            }
        }
    }
}
