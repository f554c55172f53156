//! Rotary position embeddings in HF's "rotate_half" layout (the head dimension split in halves),
//! with the frequencies computed in f32 as transformers does, and HF's linear, dynamic-NTK and
//! YaRN scaling.

use crate::config::{ModelConfig, RopeScaling};
use burn::tensor::{Device, Tensor, TensorData};

/// cos and sin tables for positions `start..start+len`, shaped `[1, 1, len, head_dim]`, or for
/// rows that pack several sequences, per row: `[rows, 1, len, head_dim]`.
pub struct RopeTables {
    pub cos: Tensor<4>,
    pub sin: Tensor<4>,
    /// For packed rows, `[rows * len]`: the first position each query may attend to (where its
    /// own sequence starts). `None`: every query sees the whole row before it.
    pub first_key: Option<Vec<u32>>,
}

/// What a RoPE scaling makes of the plain rotation for one context length: the angle of
/// dimension pair `i` at position `p` is `p * inv_freq[i]`, and cos and sin are multiplied by
/// `attention_factor` (YaRN's temperature; 1 for the other types).
#[derive(Debug, Clone, PartialEq)]
pub struct Frequencies {
    pub inv_freq: Vec<f32>,
    pub attention_factor: f32,
}

impl Frequencies {
    /// The frequencies for a context of `total_len` tokens, computed in f32 step by step as
    /// transformers' `modeling_rope_utils` does for the same type (docs/MODEL.md section 13), so
    /// that long positions rotate by the same angles: linear divides every frequency by the
    /// factor; dynamic NTK raises the base once the context exceeds `max_position_embeddings`;
    /// YaRN blends plain and divided frequencies along a ramp over the dimensions.
    pub fn new(cfg: &ModelConfig, total_len: usize) -> Frequencies {
        let plain = |base: f32| -> Vec<f32> { plain_inv_freq(base, cfg.head_dim()) };
        let theta = cfg.rope_theta as f32;
        let Some(rs) = &cfg.rope_scaling else {
            return Frequencies::unscaled(plain(theta));
        };
        match rs.kind.as_str() {
            "linear" => {
                let factor = rs.factor as f32;
                Frequencies::unscaled(plain(theta).iter().map(|f| f / factor).collect())
            }
            "dynamic" => Frequencies::unscaled(plain(dynamic_base(cfg, rs, total_len))),
            "yarn" => yarn(cfg, rs),
            other => unreachable!("rope_scaling type {other:?} passed validation"),
        }
    }

    fn unscaled(inv_freq: Vec<f32>) -> Frequencies {
        Frequencies {
            inv_freq,
            attention_factor: 1.0,
        }
    }

    /// cos and sin of every frequency at `position`, times the attention factor.
    pub fn cos_sin(&self, position: usize) -> impl Iterator<Item = (f32, f32)> + '_ {
        let a = self.attention_factor;
        self.inv_freq.iter().map(move |&f| {
            let (s, c) = (position as f32 * f).sin_cos();
            match a == 1.0 {
                true => (c, s),
                false => (c * a, s * a),
            }
        })
    }
}

/// Whether the frequencies depend on the context's length (dynamic NTK scaling).
pub fn depends_on_length(cfg: &ModelConfig) -> bool {
    cfg.rope_scaling
        .as_ref()
        .is_some_and(|r| r.kind == "dynamic")
}

/// Whether contexts of `a` and `b` tokens rotate with the same frequencies.
pub fn same_frequencies(cfg: &ModelConfig, a: usize, b: usize) -> bool {
    let max = cfg.max_position_embeddings;
    !depends_on_length(cfg) || a.max(max) == b.max(max)
}

/// `1 / base^(2i / dim)` for `i < dim / 2`, the exponent and power in f32.
fn plain_inv_freq(base: f32, dim: usize) -> Vec<f32> {
    (0..dim / 2)
        .map(|i| 1.0 / base.powf((2 * i) as f32 / dim as f32))
        .collect()
}

/// Dynamic NTK's base for a context of `total_len` tokens: `theta * (factor * len / max -
/// (factor - 1))^(dim / (dim - 2))` past `max_position_embeddings`, `theta` before it, rounded
/// as transformers computes it from the length tensor.
fn dynamic_base(cfg: &ModelConfig, rs: &RopeScaling, total_len: usize) -> f32 {
    let (theta, max_pos) = (cfg.rope_theta as f32, cfg.max_position_embeddings);
    if total_len <= max_pos {
        return theta;
    }
    let dim = cfg.head_dim() as f64;
    let factor = rs.factor as f32;
    let ratio = factor * total_len as f32 / max_pos as f32 - (rs.factor - 1.0) as f32;
    // torch raises an f32 tensor to a scalar power in f64 and rounds the result to f32.
    theta * (ratio as f64).powf(dim / (dim - 2.0)) as f32
}

/// YaRN (Peng et al. 2023): frequencies that turn fewer than `beta_slow` times over the trained
/// context are divided by the factor, those that turn more than `beta_fast` times are kept, and
/// a linear ramp over the dimensions blends the two in between.
fn yarn(cfg: &ModelConfig, rs: &RopeScaling) -> Frequencies {
    let dim = cfg.head_dim();
    let base = cfg.rope_theta;
    let original = rs
        .original_max_position_embeddings
        .unwrap_or(cfg.max_position_embeddings) as f64;
    let (fast, slow) = (rs.beta_fast.unwrap_or(32.0), rs.beta_slow.unwrap_or(1.0));
    // The dimension at which a frequency turns `rotations` times over the trained context.
    let dimension_of = |rotations: f64| {
        dim as f64 * (original / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * base.ln())
    };
    let (mut low, mut high) = (dimension_of(fast), dimension_of(slow));
    if rs.truncate.unwrap_or(true) {
        (low, high) = (low.floor(), high.ceil());
    }
    let (low, mut high) = (low.max(0.0), high.min(dim as f64 - 1.0));
    if low == high {
        high += 0.001;
    }
    let factor = rs.factor as f32;
    let inv_freq = (0..dim / 2)
        .map(|i| {
            let pos_freq = (base as f32).powf((2 * i) as f32 / dim as f32);
            let (extrapolated, interpolated) = (1.0 / pos_freq, 1.0 / (factor * pos_freq));
            let ramp = ((i as f32 - low as f32) / (high - low) as f32).clamp(0.0, 1.0);
            let keep = 1.0 - ramp;
            interpolated * (1.0 - keep) + extrapolated * keep
        })
        .collect();
    let mscale = |scale: f64, m: f64| match scale <= 1.0 {
        true => 1.0,
        false => 0.1 * m * scale.ln() + 1.0,
    };
    let attention_factor = match (rs.attention_factor, rs.mscale, rs.mscale_all_dim) {
        (Some(a), _, _) => a,
        (None, Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
            mscale(rs.factor, m) / mscale(rs.factor, all)
        }
        _ => mscale(rs.factor, 1.0),
    };
    Frequencies {
        inv_freq,
        attention_factor: attention_factor as f32,
    }
}

pub fn tables(cfg: &ModelConfig, start: usize, len: usize, device: &Device) -> RopeTables {
    let positions: Vec<u32> = (start..start + len).map(|p| p as u32).collect();
    let (cos, sin) = cos_sin(cfg, &positions, start + len);
    RopeTables {
        cos: Tensor::from_data(TensorData::new(cos, [1, 1, len, cfg.head_dim()]), device),
        sin: Tensor::from_data(TensorData::new(sin, [1, 1, len, cfg.head_dim()]), device),
        first_key: None,
    }
}

/// Tables for packed rows, `positions [rows, len]`: each sequence's positions count from 0, and
/// a query at position `p` attends to the `p` keys before it and itself.
pub fn packed_tables(
    cfg: &ModelConfig,
    positions: &[u32],
    rows: usize,
    device: &Device,
) -> RopeTables {
    let len = positions.len() / rows;
    let longest = positions.iter().max().map_or(0, |&p| p as usize + 1);
    let (cos, sin) = cos_sin(cfg, positions, longest);
    let first_key = positions
        .iter()
        .enumerate()
        .map(|(i, &p)| (i % len) as u32 - p)
        .collect();
    let shape = [rows, 1, len, cfg.head_dim()];
    RopeTables {
        cos: Tensor::from_data(TensorData::new(cos, shape), device),
        sin: Tensor::from_data(TensorData::new(sin, shape), device),
        first_key: Some(first_key),
    }
}

/// cos and sin rows `[positions.len(), head_dim]` for a context of `total_len` tokens.
fn cos_sin(cfg: &ModelConfig, positions: &[u32], total_len: usize) -> (Vec<f32>, Vec<f32>) {
    let dim = cfg.head_dim();
    let half = dim / 2;
    let freqs = Frequencies::new(cfg, total_len);
    let mut cos = vec![0f32; positions.len() * dim];
    let mut sin = vec![0f32; positions.len() * dim];
    for (p, &position) in positions.iter().enumerate() {
        for (i, (c, s)) in freqs.cos_sin(position as usize).enumerate() {
            cos[p * dim + i] = c;
            cos[p * dim + i + half] = c;
            sin[p * dim + i] = s;
            sin[p * dim + i + half] = s;
        }
    }
    (cos, sin)
}

/// `x * cos + rotate_half(x) * sin` for `x` shaped `[batch, heads, len, head_dim]`.
pub fn apply(x: Tensor<4>, t: &RopeTables) -> Tensor<4> {
    let d = x.dims()[3];
    let x1 = x.clone().narrow(3, 0, d / 2);
    let x2 = x.clone().narrow(3, d / 2, d / 2);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * t.cos.clone() + rotated * t.sin.clone()
}
