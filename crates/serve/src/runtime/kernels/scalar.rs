//! Portable kernels: plain loops, one output at a time. They serve CPUs without the SIMD
//! kernels and are the reference those are tested against: the float types multiply the
//! decoded row in f32, and the block formats take the same integer dot products of weight codes
//! and activation codes as the SIMD kernels, so the two differ only in the order of the f32
//! additions.

use super::acts::{QuantizedActs, QBLOCK};
use super::{Acts, Out, Weights};
use crate::gguf::TensorType;
use crate::quant::{q4_k, QuantType};
use half::{bf16, f16};
use std::ops::Range;

pub fn panel(w: &Weights, acts: &Acts, rows: Range<usize>, ts: Range<usize>, out: &Out) {
    match acts {
        Acts::F32(x) => {
            let mut row = vec![0f32; w.cols];
            for r in rows {
                decode_row(w.ty, w.row(r), &mut row);
                for t in ts.clone() {
                    let xt = &x[t * w.cols..(t + 1) * w.cols];
                    let v = row.iter().zip(xt).map(|(a, b)| a * b).sum();
                    // SAFETY: `r` is in this task's rows.
                    unsafe { out.set(t, r, v) };
                }
            }
        }
        Acts::Quantized(q) => {
            for r in rows {
                for t in ts.clone() {
                    let v = match w.ty {
                        TensorType::Quant(QuantType::Q8_0) => q8_0_dot(w.row(r), q, t),
                        TensorType::Quant(QuantType::Q4_0) => q4_0_dot(w.row(r), q, t),
                        TensorType::Quant(QuantType::Q4K) => q4_k_dot(w.row(r), q, t),
                        _ => unreachable!("quantised activations go with block formats"),
                    };
                    // SAFETY: `r` is in this task's rows.
                    unsafe { out.set(t, r, v) };
                }
            }
        }
    }
}

/// One row's bytes as f32 (any stored type).
pub fn decode_row(ty: TensorType, bytes: &[u8], out: &mut [f32]) {
    match ty {
        TensorType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        TensorType::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        TensorType::Bf16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        TensorType::Quant(q) => {
            let values = q
                .dequantize(bytes)
                .expect("whole blocks, checked at construction");
            out.copy_from_slice(&values);
        }
    }
}

fn half(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[0], b[1]]).to_f32()
}

fn int_dot(w: impl Iterator<Item = i32>, a: &[i8]) -> i32 {
    w.zip(a).map(|(w, &a)| w * a as i32).sum()
}

fn q8_0_dot(row: &[u8], q: &QuantizedActs, t: usize) -> f32 {
    let (codes, scales) = (q.row_codes(t), q.row_scales(t));
    let mut acc = 0f32;
    for (b, block) in row.chunks_exact(2 + QBLOCK).enumerate() {
        let a = &codes[b * QBLOCK..(b + 1) * QBLOCK];
        let dot = int_dot(block[2..].iter().map(|&c| c as i8 as i32), a);
        acc += half(block) * scales[b] * dot as f32;
    }
    acc
}

fn q4_0_dot(row: &[u8], q: &QuantizedActs, t: usize) -> f32 {
    let (codes, scales) = (q.row_codes(t), q.row_scales(t));
    let mut acc = 0f32;
    for (b, block) in row.chunks_exact(2 + QBLOCK / 2).enumerate() {
        let a = &codes[b * QBLOCK..(b + 1) * QBLOCK];
        let nibbles = &block[2..];
        let w = (0..QBLOCK).map(|j| match j < QBLOCK / 2 {
            true => (nibbles[j] & 0x0f) as i32 - 8,
            false => (nibbles[j - QBLOCK / 2] >> 4) as i32 - 8,
        });
        acc += half(block) * scales[b] * int_dot(w, a) as f32;
    }
    acc
}

/// Sub-block `j` of a super-block contributes `(d·sc_j)·d_a·Σ q·a − (dmin·m_j)·d_a·Σ a`: the
/// weights `(d·sc_j)·q − dmin·m_j` times the activations `d_a·a`.
fn q4_k_dot(row: &[u8], q: &QuantizedActs, t: usize) -> f32 {
    let (codes, scales, sums) = (q.row_codes(t), q.row_scales(t), q.row_sums(t));
    let mut acc = 0f32;
    for (s, block) in row.chunks_exact(q4_k::BLOCK_BYTES).enumerate() {
        let (d, dmin) = (half(&block[0..2]), half(&block[2..4]));
        let (sc, m) = q4_k::scales_and_mins(&block[4..16]);
        for j in 0..8 {
            let b = s * 8 + j;
            let bytes = &block[16 + (j / 2) * QBLOCK..16 + (j / 2 + 1) * QBLOCK];
            let shift = 4 * (j % 2);
            let w = bytes.iter().map(|&c| ((c >> shift) & 0x0f) as i32);
            let dot = int_dot(w, &codes[b * QBLOCK..(b + 1) * QBLOCK]);
            acc += (d * sc[j] as f32) * scales[b] * dot as f32 - (dmin * m[j] as f32) * sums[b];
        }
    }
    acc
}
