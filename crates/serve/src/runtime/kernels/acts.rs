//! Activation rows quantised for the integer dot products of the block formats, as llama.cpp
//! quantises them to Q8_0 before `ggml_vec_dot_q*_q8_0`: blocks of 32, each `d = max|x| / 127`
//! and codes `round(x / d)` in `-127..=127`, rounded half to even (as llama.cpp's SIMD
//! quantisers do; its scalar reference rounds half away from zero). Unlike Q8_0 the scale stays
//! f32 (no f16 rounding), and each block also keeps `d · Σ codes`, which the formats with an
//! offset (Q4_K's minimums) need. Q4_K takes these per-32 blocks too rather than llama.cpp's per-256 Q8_K: its sub-blocks
//! are 32 long, so the result is at least as accurate and one activation format serves all.

use rayon::prelude::*;

/// Values per activation block.
pub const QBLOCK: usize = 32;

pub struct QuantizedActs {
    /// Blocks per row.
    pub blocks: usize,
    /// `[rows, blocks * 32]` codes.
    pub codes: Vec<i8>,
    /// `[rows, blocks]` scales.
    pub scales: Vec<f32>,
    /// `[rows, blocks]`: `scale · Σ codes` of each block.
    pub sums: Vec<f32>,
}

impl QuantizedActs {
    /// `x` is `[n, cols]`, `cols` a multiple of 32 (every block format's rows are).
    pub fn new(x: &[f32], n: usize, cols: usize) -> QuantizedActs {
        assert_eq!(cols % QBLOCK, 0, "activation rows of whole blocks");
        assert_eq!(x.len(), n * cols, "activation rows");
        let blocks = cols / QBLOCK;
        let mut codes = vec![0i8; n * cols];
        let mut scales = vec![0f32; n * blocks];
        let mut sums = vec![0f32; n * blocks];
        codes
            .par_chunks_mut(QBLOCK)
            .zip(scales.par_iter_mut().zip(sums.par_iter_mut()))
            .zip(x.par_chunks(QBLOCK))
            .with_min_len(64)
            .for_each(|((q, (d, s)), x)| (*d, *s) = quantize_block(x, q));
        QuantizedActs {
            blocks,
            codes,
            scales,
            sums,
        }
    }

    /// The codes of row `t`.
    pub fn row_codes(&self, t: usize) -> &[i8] {
        &self.codes[t * self.blocks * QBLOCK..(t + 1) * self.blocks * QBLOCK]
    }

    pub fn row_scales(&self, t: usize) -> &[f32] {
        &self.scales[t * self.blocks..(t + 1) * self.blocks]
    }

    pub fn row_sums(&self, t: usize) -> &[f32] {
        &self.sums[t * self.blocks..(t + 1) * self.blocks]
    }

    /// Row `t` as the values its codes stand for (`code · d`): the activations every integer
    /// kernel effectively multiplies, which tests use as their exact reference.
    #[cfg(test)]
    pub fn dequantized_row(&self, t: usize) -> Vec<f32> {
        let d = self.row_scales(t);
        self.row_codes(t)
            .iter()
            .enumerate()
            .map(|(i, &q)| q as f32 * d[i / QBLOCK])
            .collect()
    }
}

/// Codes into `q`; returns the scale and `scale · Σ codes`.
fn quantize_block(x: &[f32], q: &mut [i8]) -> (f32, f32) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    let mut sum = 0i32;
    // Adding and subtracting 1.5 · 2^23 rounds any |y| < 2^22 to the nearest integer, ties to
    // even, in plain f32 arithmetic that the compiler vectorises (`f32::round` is a libm call
    // per value). |v · id| <= 127 here, or non-finite.
    const MAGIC: f32 = 12_582_912.0;
    for (q, &v) in q.iter_mut().zip(x) {
        // `as` saturates, so a non-finite input cannot produce an out-of-range code.
        *q = (((v * id + MAGIC) - MAGIC) as i32).clamp(-127, 127) as i8;
        sum += *q as i32;
    }
    (d, d * sum as f32)
}
