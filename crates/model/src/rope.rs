//! Rotary position embeddings in HF's "rotate_half" layout (the head dimension split in halves),
//! with the frequencies computed in f32 as transformers does, and HF's linear and dynamic-NTK
//! scaling.

use crate::config::ModelConfig;
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

/// The inverse frequencies for a context of `total_len` tokens (dynamic NTK raises the base once
/// the context exceeds `max_position_embeddings`, exactly as HF's `dynamic` rope type does).
pub fn inv_freq(cfg: &ModelConfig, total_len: usize) -> Vec<f32> {
    let dim = cfg.head_dim();
    let mut base = cfg.rope_theta;
    if let Some(rs) = &cfg.rope_scaling {
        let max_pos = cfg.max_position_embeddings;
        if rs.kind == "dynamic" && total_len > max_pos {
            let ratio = rs.factor * total_len as f64 / max_pos as f64 - (rs.factor - 1.0);
            base *= ratio.powf(dim as f64 / (dim as f64 - 2.0));
        }
    }
    let base = base as f32;
    (0..dim / 2)
        .map(|i| 1.0 / base.powf((2 * i) as f32 / dim as f32))
        .collect()
}

/// The factor on positions: `1 / factor` for linear scaling, else 1.
pub fn position_scale(cfg: &ModelConfig) -> f32 {
    match &cfg.rope_scaling {
        Some(rs) if rs.kind == "linear" => 1.0 / rs.factor as f32,
        _ => 1.0,
    }
}

/// The rotation angle of frequency `inv_freq` at `position` (f32 throughout, as HF computes it).
pub fn angle(position: usize, pos_scale: f32, inv_freq: f32) -> f32 {
    position as f32 * pos_scale * inv_freq
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
    let freqs = inv_freq(cfg, total_len);
    let pos_scale = position_scale(cfg);
    let mut cos = vec![0f32; positions.len() * dim];
    let mut sin = vec![0f32; positions.len() * dim];
    for (p, &position) in positions.iter().enumerate() {
        for (i, &f) in freqs.iter().enumerate() {
            let (s, c) = angle(position as usize, pos_scale, f).sin_cos();
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
