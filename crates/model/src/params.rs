//! Names, shapes and counts of a config's tensors, read off the modules' one description (a
//! model built from [`Weights::describe`], whose parameters hold no values).

use crate::config::ModelConfig;
use crate::model::MiniCpm;
use crate::mup::TensorRole;
use crate::named::named_shapes;
use crate::weights::Weights;

/// Every tensor of a model for `cfg` as (HF name, shape), in module order.
pub fn tensor_shapes(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    match MiniCpm::new(&mut Weights::describe(), cfg) {
        Ok(model) => named_shapes(&model),
        Err(never) => match never {},
    }
}

/// Parameter counts by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParamCounts {
    /// The token embedding table.
    pub embedding: u64,
    /// The untied LM head (0 when tied to the embedding).
    pub lm_head: u64,
    /// The hidden weight matrices of every layer.
    pub matrices: u64,
    /// The norm weights.
    pub norms: u64,
}

impl ParamCounts {
    pub fn of(cfg: &ModelConfig) -> ParamCounts {
        let mut c = ParamCounts::default();
        for (name, shape) in tensor_shapes(cfg) {
            let n: u64 = shape.iter().map(|&d| d as u64).product();
            *match TensorRole::of(&name) {
                TensorRole::Embedding => &mut c.embedding,
                TensorRole::LmHead => &mut c.lm_head,
                TensorRole::Matrix => &mut c.matrices,
                TensorRole::Norm => &mut c.norms,
            } += n;
        }
        c
    }

    /// Parameters outside the embedding and the LM head (the paper's N).
    pub fn non_embedding(&self) -> u64 {
        self.matrices + self.norms
    }

    /// The embedding, plus the LM head when it is untied.
    pub fn embedding_and_head(&self) -> u64 {
        self.embedding + self.lm_head
    }

    pub fn total(&self) -> u64 {
        self.non_embedding() + self.embedding_and_head()
    }
}
