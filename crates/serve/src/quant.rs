//! Weight-only quantisation in llama.cpp's block layouts, so that the same bytes serve this
//! runtime and llama.cpp (GGUF tensor types Q8_0 and Q4_0). A row is cut into blocks of 32
//! weights; each block stores one f16 scale `d` and 32 codes:
//!
//! - Q8_0 (34 bytes): `d = max|x| / 127`, code `round(x / d)` (half away from zero) as i8;
//!   the weight is `code * d`.
//! - Q4_0 (18 bytes): `d = m / -8` with `m` the block's value of largest magnitude (its sign
//!   kept), code `min(15, trunc(x / d + 8.5))`, two codes per byte (weight `j` in the low nibble
//!   of byte `j`, weight `j + 16` in the high nibble); the weight is `(code - 8) * d`.
//!
//! The scale's reciprocal is taken in f32 before `d` is rounded to f16, as ggml-quants.c does;
//! tests compare the bytes with the `gguf` package's quantizer (scripts/reference).
//!
//! Q4_K (GGUF type 12, 144 bytes per super-block of 256 weights) is llama.cpp's k-quant: eight
//! sub-blocks of 32 with 6-bit scales and minimums under two f16 super-scales; see [`q4_k`].

pub(crate) mod q4_k;

use half::f16;

/// Weights per block in Q8_0 and Q4_0.
pub const BLOCK: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantType {
    Q8_0,
    Q4_0,
    Q4K,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantError {
    #[error("{ty}: a row of {len} weights is not a whole number of {block}-weight blocks")]
    RowLength {
        ty: &'static str,
        len: usize,
        block: usize,
    },
    #[error("{ty}: {bytes} bytes are not a whole number of {block_bytes}-byte blocks")]
    ByteLength {
        ty: &'static str,
        bytes: usize,
        block_bytes: usize,
    },
}

impl QuantType {
    pub fn name(self) -> &'static str {
        match self {
            QuantType::Q8_0 => "q8_0",
            QuantType::Q4_0 => "q4_0",
            QuantType::Q4K => "q4_k",
        }
    }

    /// Weights per block: [`BLOCK`] (32), or 256 for Q4_K's super-blocks.
    pub fn block_len(self) -> usize {
        match self {
            QuantType::Q8_0 | QuantType::Q4_0 => BLOCK,
            QuantType::Q4K => q4_k::SUPER_BLOCK,
        }
    }

    /// Bytes of one block of [`QuantType::block_len`] weights.
    pub fn block_bytes(self) -> usize {
        match self {
            QuantType::Q8_0 => 2 + BLOCK,
            QuantType::Q4_0 => 2 + BLOCK / 2,
            QuantType::Q4K => q4_k::BLOCK_BYTES,
        }
    }

    /// The blocks of `row`, whose length must be a multiple of [`QuantType::block_len`].
    pub fn quantize(self, row: &[f32]) -> Result<Vec<u8>, QuantError> {
        let block = self.block_len();
        if !row.len().is_multiple_of(block) {
            return Err(QuantError::RowLength {
                ty: self.name(),
                len: row.len(),
                block,
            });
        }
        let mut out = Vec::with_capacity(row.len() / block * self.block_bytes());
        for x in row.chunks_exact(block) {
            match self {
                QuantType::Q8_0 => q8_0_block(x, &mut out),
                QuantType::Q4_0 => q4_0_block(x, &mut out),
                QuantType::Q4K => q4_k::quantize_block(x, &mut out),
            }
        }
        Ok(out)
    }

    /// The weights that `bytes` (whole blocks) stand for.
    pub fn dequantize(self, bytes: &[u8]) -> Result<Vec<f32>, QuantError> {
        let block_bytes = self.block_bytes();
        if !bytes.len().is_multiple_of(block_bytes) {
            return Err(QuantError::ByteLength {
                ty: self.name(),
                bytes: bytes.len(),
                block_bytes,
            });
        }
        let mut out = Vec::with_capacity(bytes.len() / block_bytes * self.block_len());
        for block in bytes.chunks_exact(block_bytes) {
            let d = || f16::from_le_bytes([block[0], block[1]]).to_f32();
            let codes = &block[2..];
            match self {
                QuantType::Q8_0 => {
                    let d = d();
                    out.extend(codes.iter().map(|&q| q as i8 as f32 * d))
                }
                QuantType::Q4_0 => {
                    let d = d();
                    let nibble = |j: usize| match j < BLOCK / 2 {
                        true => codes[j] & 0x0f,
                        false => codes[j - BLOCK / 2] >> 4,
                    };
                    out.extend((0..BLOCK).map(|j| (nibble(j) as i32 - 8) as f32 * d));
                }
                QuantType::Q4K => q4_k::dequantize_block(block, &mut out),
            }
        }
        Ok(out)
    }
}

fn reciprocal(d: f32) -> f32 {
    if d == 0.0 {
        0.0
    } else {
        1.0 / d
    }
}

fn q8_0_block(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = reciprocal(d);
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    out.extend(x.iter().map(|&v| (v * id).round() as i8 as u8));
}

fn q4_0_block(x: &[f32], out: &mut Vec<u8>) {
    // The first value of largest magnitude, sign kept: the scale is negative when it is.
    let max = x
        .iter()
        .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let d = max / -8.0;
    let id = reciprocal(d);
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    let code = |v: f32| ((v * id + 8.5).trunc() as u8).min(15);
    let (low, high) = x.split_at(BLOCK / 2);
    out.extend(
        low.iter()
            .zip(high)
            .map(|(&a, &b)| code(a) | (code(b) << 4)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> Vec<u8> {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/quant")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn floats(bytes: &[u8]) -> Vec<f32> {
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    /// Byte for byte what gguf-py (bit-exact with ggml-quants.c) writes, and the same weights
    /// back, over blocks from 1e-6 to 1e4, a zero block, negative maxima and exact ties.
    #[test]
    fn blocks_equal_the_gguf_reference_byte_for_byte() {
        let x = floats(&fixture("input.f32"));
        for ty in [QuantType::Q8_0, QuantType::Q4_0] {
            let want = fixture(&format!("{}.bin", ty.name()));
            let got = ty.quantize(&x).unwrap();
            assert_eq!(got.len(), x.len() / BLOCK * ty.block_bytes());
            let bytes = ty.block_bytes();
            for (i, (g, w)) in got.chunks(bytes).zip(want.chunks(bytes)).enumerate() {
                assert_eq!(
                    g,
                    w,
                    "{}: block {i} of {:?}",
                    ty.name(),
                    &x[i * 32..i * 32 + 4]
                );
            }
            let back = ty.dequantize(&got).unwrap();
            let want_back = floats(&fixture(&format!("{}.f32", ty.name())));
            assert!(
                back.iter()
                    .zip(&want_back)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{}: dequantized weights differ",
                ty.name()
            );
        }
    }

    /// Half a step at most: |x - x'| <= d / 2 for Q8_0 (d = max/127), and at most d for Q4_0,
    /// whose codes run from -8 to 7 (the largest magnitude maps to -8 exactly).
    #[test]
    fn the_error_is_within_the_format_step() {
        let x = floats(&fixture("input.f32"));
        for (ty, steps) in [(QuantType::Q8_0, 0.5 / 127.0), (QuantType::Q4_0, 1.0 / 8.0)] {
            let back = ty.dequantize(&ty.quantize(&x).unwrap()).unwrap();
            for (block, got) in x.chunks(BLOCK).zip(back.chunks(BLOCK)) {
                let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                // Rounding the scale to f16 moves each weight by |code| * |d - d16|: at most
                // max|x| * 2^-11 (relative rounding 2^-11 of d), or, for the subnormal scales of
                // the 1e-6 blocks, 127 codes times half the smallest f16 step (2^-25).
                let bound = amax * (steps * 1.000_01 + 2f32.powi(-11)) + 127.0 * 2f32.powi(-25);
                for (a, b) in block.iter().zip(got) {
                    assert!((a - b).abs() <= bound, "{}: {a} -> {b}", ty.name());
                }
            }
        }
    }

    /// Q4_K decodes bit for bit as gguf-py (and so ggml) does, scale bits and all.
    #[test]
    fn q4_k_blocks_decode_as_the_gguf_reference_does() {
        let bytes = fixture("q4_k.bin");
        let want = floats(&fixture("q4_k.f32"));
        let got = QuantType::Q4K.dequantize(&bytes).unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "weight {i}: {a} vs {b}");
        }
    }

    /// Q4_K's error stays within one code step of the super-block: its codes run 0..=15 over
    /// `[min, max]` of each sub-block, and the 6-bit scales are quantised against the block's
    /// largest, so no weight moves by more than (the largest sub-block range) / 15 plus the
    /// scale's rounding. The bound is loose on purpose; the RMS error checks the search did
    /// better than plain rounding (about range / 15 / sqrt(12) for uniform weights).
    #[test]
    fn q4_k_error_is_within_a_code_step() {
        let mut x = floats(&fixture("input.f32"));
        let mut s = 7u32;
        x.extend((0..8 * 256).map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        }));
        let back = QuantType::Q4K
            .dequantize(&QuantType::Q4K.quantize(&x).unwrap())
            .unwrap();
        for (i, (block, got)) in x.chunks(256).zip(back.chunks(256)).enumerate() {
            let range = block
                .chunks(32)
                .map(|s| {
                    let max = s.iter().fold(0f32, |m, &v| m.max(v));
                    let min = s.iter().fold(0f32, |m, &v| m.min(v));
                    max - min
                })
                .fold(0f32, f32::max);
            let step = range / 15.0;
            let mut sq = 0f64;
            for (a, b) in block.iter().zip(got) {
                assert!(
                    (a - b).abs() <= step * 1.01,
                    "block {i}: {a} -> {b}, step {step}"
                );
                sq += ((a - b) as f64).powi(2);
            }
            let rms = (sq / 256.0).sqrt();
            assert!(
                rms <= step as f64 * 0.4,
                "block {i}: rms {rms}, step {step}"
            );
        }
    }

    #[test]
    fn rows_and_buffers_of_partial_blocks_are_refused() {
        let e = QuantType::Q4K.quantize(&[0.0; 300]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "q4_k: a row of 300 weights is not a whole number of 256-weight blocks"
        );
        let e = QuantType::Q4_0.quantize(&[0.0; 40]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "q4_0: a row of 40 weights is not a whole number of 32-weight blocks"
        );
        let e = QuantType::Q8_0.dequantize(&[0; 35]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "q8_0: 35 bytes are not a whole number of 34-byte blocks"
        );
    }
}
