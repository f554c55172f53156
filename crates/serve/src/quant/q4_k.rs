//! llama.cpp's Q4_K: a super-block of 256 weights in 144 bytes.
//!
//! ```text
//! f16 d | f16 dmin | 12 bytes: eight 6-bit scales and eight 6-bit minimums | 128 bytes of codes
//! ```
//!
//! Sub-block `j` (32 weights) has scale `sc_j` and minimum `m_j` (6 bits each); weight `i` of it
//! is `(d·sc_j)·q_i − (dmin·m_j)` with a 4-bit code `q_i`. The codes of sub-blocks `2p` and
//! `2p + 1` share bytes `32p .. 32p + 32`: the first in the low nibbles, the second in the high.
//! Scale and minimum bytes: bytes 0–3 hold `sc_0..sc_3` in their low 6 bits, bytes 4–7
//! `m_0..m_3`; bytes 8–11 hold the low 4 bits of `sc_4..sc_7` (low nibble) and of `m_4..m_7`
//! (high nibble), whose top 2 bits sit in the top 2 bits of bytes 0–3 and 4–7.
//!
//! Quantisation follows ggml-quants.c's `quantize_row_q4_K_ref`: each sub-block's scale and
//! minimum come from a weighted least-squares search over 21 candidate scales
//! (`make_qkx2_quants`), then both are quantised to 6 bits against the block's largest.

use half::f16;

/// Weights per super-block.
pub const SUPER_BLOCK: usize = 256;
/// Bytes per super-block.
pub const BLOCK_BYTES: usize = 4 + 12 + SUPER_BLOCK / 2;
const SUB: usize = 32;

/// The eight 6-bit scales and minimums packed in the 12 scale bytes.
pub(crate) fn scales_and_mins(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..4 {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 0x0f) | ((s[j] >> 6) << 4);
        m[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
    (sc, m)
}

/// The super-block's 256 weights, computed as ggml's `dequantize_row_q4_K` does (the products
/// `d·sc` and `dmin·m` rounded to f32 first, then one multiply and one subtract, no fused
/// multiply-add), so the values are bit for bit llama.cpp's.
pub(crate) fn dequantize_block(block: &[u8], out: &mut Vec<f32>) {
    let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
    let dmin = f16::from_le_bytes([block[2], block[3]]).to_f32();
    let (sc, m) = scales_and_mins(&block[4..16]);
    let codes = &block[16..];
    for j in 0..8 {
        let scale = d * sc[j] as f32;
        let min = dmin * m[j] as f32;
        let bytes = &codes[(j / 2) * SUB..(j / 2 + 1) * SUB];
        let shift = 4 * (j % 2);
        out.extend(
            bytes
                .iter()
                .map(|&b| scale * ((b >> shift) & 0x0f) as f32 - min),
        );
    }
}

/// ggml's `nearest_int`: round to nearest, ties to even (it adds 1.5·2^23 and reads the
/// mantissa). Out-of-range values (NaN, huge) saturate instead of wrapping; callers clamp.
fn nearest_int(v: f32) -> i32 {
    v.round_ties_even() as i32
}

/// Appends the 144 bytes of `x`'s (256 weights) super-block.
pub(crate) fn quantize_block(x: &[f32], out: &mut Vec<u8>) {
    debug_assert_eq!(x.len(), SUPER_BLOCK);
    let mut codes = [0u8; SUPER_BLOCK];
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    for (j, sub) in x.chunks_exact(SUB).enumerate() {
        // Weights favour the larger values: the sub-block's RMS plus each value's magnitude.
        let av_x = (sub.iter().map(|v| v * v).sum::<f32>() / SUB as f32).sqrt();
        let mut weights = [0f32; SUB];
        for (w, v) in weights.iter_mut().zip(sub) {
            *w = av_x + v.abs();
        }
        let (scale, min) = fit_scale_and_min(sub, &weights, &mut codes[j * SUB..(j + 1) * SUB]);
        scales[j] = scale;
        mins[j] = min;
    }
    let max_scale = scales.iter().fold(0f32, |a, &s| if s > a { s } else { a });
    let max_min = mins.iter().fold(0f32, |a, &s| if s > a { s } else { a });
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; 12];
    for j in 0..8 {
        let ls = nearest_int(inv_scale * scales[j]).clamp(0, 63) as u8;
        let lm = nearest_int(inv_min * mins[j]).clamp(0, 63) as u8;
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0x0f) | ((lm & 0x0f) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);
    // Codes again against the rounded 6-bit scales, as the decoder will see them.
    let (sc, m) = scales_and_mins(&packed);
    for j in 0..8 {
        let scale = d.to_f32() * sc[j] as f32;
        if scale == 0.0 {
            continue;
        }
        let min = dmin.to_f32() * m[j] as f32;
        for i in 0..SUB {
            let l = nearest_int((x[j * SUB + i] + min) / scale);
            codes[j * SUB + i] = l.clamp(0, 15) as u8;
        }
    }
    out.extend_from_slice(&d.to_le_bytes());
    out.extend_from_slice(&dmin.to_le_bytes());
    out.extend_from_slice(&packed);
    for pair in codes.chunks_exact(2 * SUB) {
        let (low, high) = pair.split_at(SUB);
        out.extend(low.iter().zip(high).map(|(&a, &b)| a | (b << 4)));
    }
}

/// `make_qkx2_quants(32, 15, x, weights, L, &min, Laux, -1, 0.1, 20, false)`: codes `0..=15` and
/// `(scale, -min)` minimising the weighted squared error of `scale·code + min`, `min <= 0`,
/// trying 21 scales around `15 / (max - min)`. Returns the scale and the (non-negative) minimum.
fn fit_scale_and_min(x: &[f32], weights: &[f32], codes: &mut [u8]) -> (f32, f32) {
    const NMAX: i32 = 15;
    const RMIN: f32 = -1.0;
    const RDELTA: f32 = 0.1;
    const NSTEP: i32 = 20;
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        min = if x[i] < min { x[i] } else { min };
        max = if x[i] > max { x[i] } else { max };
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        codes.fill(0);
        return (0.0, -min);
    }
    let code = |iscale: f32, v: f32, min: f32| nearest_int(iscale * (v - min)).clamp(0, NMAX);
    let iscale = NMAX as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        let l = code(iscale, x[i], min);
        codes[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    let mut trial = [0u8; 32];
    for is in 0..=NSTEP {
        let iscale = (RMIN + RDELTA * is as f32 + NMAX as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let l = code(iscale, x[i], min);
            trial[i] = l as u8;
            let (w, l) = (weights[i], l as f32);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut error = 0f32;
            for i in 0..n {
                let diff = this_scale * trial[i] as f32 + this_min - x[i];
                error += weights[i] * (diff * diff);
            }
            if error < best_error {
                codes[..n].copy_from_slice(&trial[..n]);
                best_error = error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}
