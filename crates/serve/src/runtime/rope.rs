//! RoPE on one token's heads, in place, in either layout of the head dimensions
//! ([`RopeLayout`]). The frequencies and angles are the training forward's
//! (`minicpm_model::rope`), so both rotate by the same f32 values.

use super::source::RopeLayout;
use minicpm_model::rope::Frequencies;

/// cos and sin of every frequency for one position.
pub struct Rotation {
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Rotation {
    /// The rotation at `position` with `freqs`, those of the length the sequence will have
    /// after this forward pass (dynamic NTK chooses its base from that length, as HF does).
    pub fn new(freqs: &Frequencies, position: usize) -> Rotation {
        let (cos, sin) = freqs.cos_sin(position).unzip();
        Rotation { cos, sin }
    }

    /// Rotates each `head_dim` chunk of `x`.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, layout: RopeLayout) {
        let half = head_dim / 2;
        for head in x.chunks_exact_mut(head_dim) {
            for i in 0..half {
                let (a, b) = match layout {
                    RopeLayout::Halves => (i, i + half),
                    RopeLayout::Interleaved => (2 * i, 2 * i + 1),
                };
                let (x1, x2) = (head[a], head[b]);
                head[a] = x1 * self.cos[i] - x2 * self.sin[i];
                head[b] = x2 * self.cos[i] + x1 * self.sin[i];
            }
        }
    }
}
