//! Matrix products with bfloat16 operands and f32 sums, for `train.matmul = "bf16"`
//! (docs/MODEL.md section 7).
//!
//! Each operand is rounded to bfloat16 (to nearest, ties to even) as it is packed, and the
//! products are summed in f32: the arithmetic `torch.autocast(dtype=torch.bfloat16)` gives a
//! matmul, with the result kept in f32. On CPUs with AVX512_BF16 one `vdpbf16ps` does 32
//! multiply-adds where an f32 FMA does 16, so these products run at up to twice the f32 GEMM's
//! speed. Elsewhere the rounded operands go through the f32 GEMM: the same products, summed in
//! another order.
//!
//! The layout is the usual packed GEMM's. For each block of `KC_PAIRS` pairs of `b`'s rows,
//! `b` is packed into panels of `NR` columns, each pair of rows interleaved so that one 512-bit
//! register holds 16 columns x 2 rows, and `a` into panels of `MR` rows holding each row's pair
//! of values as one 32-bit word (broadcast to every lane), a row's words one after another. The
//! micro-kernel keeps an `MR x NR` tile of the output in 24 registers; the pool's tasks are
//! blocks of `MC` rows by `NC` columns, which keep a task's packed operands in the core's own
//! caches.

use super::strided_gemm::{self, Dst, Product, View};
use super::MatmulPrecision;
use rayon::prelude::*;

/// Output rows per micro-kernel tile.
const MR: usize = 6;
/// Output columns per tile: four registers of 16.
const NR: usize = 64;
/// Pairs of `b`'s rows per packed block (512 values of the inner dimension).
const KC_PAIRS: usize = 256;
/// Output rows per task: 16 tiles, whose packed rows of `a` (96 KiB at most) stay in L2.
const MC: usize = 16 * MR;
/// Output columns per task: 4 panels of `b` (256 KiB at most).
const NC: usize = 4 * NR;

/// `x` rounded to bfloat16, to nearest with ties to even (the upper 16 bits of the f32 result),
/// subnormals flushed to zero: bit for bit what `vcvtne2ps2bf16` gives.
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        // Keep it a NaN whatever mantissa bits the rounding would drop.
        return ((bits >> 16) | 0x40) as u16;
    }
    if x.is_subnormal() {
        return ((bits >> 16) & 0x8000) as u16;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// Two values as one packed word: `lo` in the low half (the even index of the inner dimension).
fn word(lo: f32, hi: f32) -> u32 {
    u32::from(to_bf16(lo)) | (u32::from(to_bf16(hi)) << 16)
}

/// `x` rounded to bfloat16 and widened back: the value the products see.
pub fn round_to_bf16(x: f32) -> f32 {
    f32::from_bits(u32::from(to_bf16(x)) << 16)
}

/// Whether this CPU has the bfloat16 dot product (else the f32 GEMM computes the products).
pub fn native() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static NATIVE: OnceLock<bool> = OnceLock::new();
        *NATIVE.get_or_init(|| {
            std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512bf16")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `dst (+)= scale * bf16(a[m x k]) * bf16(b[k x n])`, on the thread pool when `parallel`.
///
/// # Safety
/// As [`strided_gemm::run`], which alone calls this, once it has checked that the operands lie
/// inside their slices: `dst` addresses an `m x n` matrix that aliases neither input and is
/// initialised when it accumulates.
pub(super) unsafe fn run(p: Product, dst: Dst, parallel: bool) {
    let (m, n, k, a, b, scale) = (p.m, p.n, p.k, p.a, p.b, p.scale);
    if m == 0 || n == 0 {
        return;
    }
    if !native() || k == 0 {
        // SAFETY: as this function's.
        unsafe { rounded_f32(p, dst, parallel) };
        return;
    }
    let pairs = k.div_ceil(2);
    let (row_panels, col_panels) = (m.div_ceil(MR), n.div_ceil(NR));
    let block = KC_PAIRS.min(pairs);
    let mut packed_a = vec![0u32; row_panels * block * MR];
    let mut packed_b = vec![0u32; col_panels * block * NR];
    for p0 in (0..pairs).step_by(KC_PAIRS) {
        let kp = KC_PAIRS.min(pairs - p0);
        let (pa, pb) = (
            &mut packed_a[..row_panels * kp * MR],
            &mut packed_b[..col_panels * kp * NR],
        );
        // SAFETY (both packers): `native()` holds.
        let pack_a = |(i, panel): (usize, &mut [u32])| unsafe {
            x86::pack_a(a, m, k, i * MR, p0, kp, panel)
        };
        let pack_b = |(j, panel): (usize, &mut [u32])| unsafe {
            x86::pack_b(b, n, k, j * NR, p0, kp, panel)
        };
        match parallel {
            true => {
                pa.par_chunks_mut(kp * MR).enumerate().for_each(pack_a);
                pb.par_chunks_mut(kp * NR).enumerate().for_each(pack_b);
            }
            false => {
                pa.chunks_mut(kp * MR).enumerate().for_each(pack_a);
                pb.chunks_mut(kp * NR).enumerate().for_each(pack_b);
            }
        }
        let add = dst.accumulate || p0 > 0;
        let (pa, pb) = (&*pa, &*pb);
        let (row_blocks, col_blocks) = (m.div_ceil(MC), n.div_ceil(NC));
        let task = |t: usize| {
            let (i0, j0) = ((t % row_blocks) * MC, (t / row_blocks) * NC);
            for j in (j0..n.min(j0 + NC)).step_by(NR) {
                let panel_b = &pb[(j / NR) * kp * NR..][..kp * NR];
                for i in (i0..m.min(i0 + MC)).step_by(MR) {
                    let panel_a = &pa[(i / MR) * kp * MR..][..kp * MR];
                    let (rows, cols) = (MR.min(m - i), NR.min(n - j));
                    // SAFETY: `native()` holds; the tile lies inside the output, and no other
                    // task writes it.
                    unsafe { x86::tile(kp, panel_a, panel_b, dst, i, j, rows, cols, scale, add) };
                }
            }
        };
        let tasks = row_blocks * col_blocks;
        match parallel {
            true => (0..tasks).into_par_iter().for_each(task),
            false => (0..tasks).for_each(task),
        }
    }
}

/// Element `(r, c)` of a view.
fn at(v: &View, r: usize, c: usize) -> f32 {
    v.data[v.offset + r * v.row_stride + c * v.col_stride]
}

/// Rows `i0..i0 + MR` of `a`, pairs `p0..p0 + kp` of its columns, as `[row][pair]` words;
/// rows and columns past the matrix are zeros. Any strides ([`x86::pack_a`] is the fast path).
fn pack_a_any(a: View, m: usize, k: usize, i0: usize, p0: usize, kp: usize, panel: &mut [u32]) {
    for p in 0..kp {
        let c = 2 * (p0 + p);
        for r in 0..MR {
            let i = i0 + r;
            panel[r * kp + p] = match i < m {
                true => word(at(&a, i, c), if c + 1 < k { at(&a, i, c + 1) } else { 0.0 }),
                false => 0,
            };
        }
    }
}

/// Columns `j0..j0 + NR` of `b`, pairs `p0..p0 + kp` of its rows, as `[pair][column]` words;
/// rows and columns past the matrix are zeros. Any strides ([`x86::pack_b`] is the fast path).
fn pack_b_any(b: View, n: usize, k: usize, j0: usize, p0: usize, kp: usize, panel: &mut [u32]) {
    for p in 0..kp {
        let r = 2 * (p0 + p);
        for c in 0..NR {
            let j = j0 + c;
            panel[p * NR + c] = match j < n {
                true => word(at(&b, r, j), if r + 1 < k { at(&b, r + 1, j) } else { 0.0 }),
                false => 0,
            };
        }
    }
}

/// Without the bfloat16 dot product: the operands rounded into f32 copies, then the f32 GEMM.
///
/// # Safety
/// As [`run`].
unsafe fn rounded_f32(p: Product, dst: Dst, parallel: bool) {
    let Product { m, n, k, a, b, .. } = p;
    let ra: Vec<f32> = (0..m * k)
        .map(|e| round_to_bf16(at(&a, e / k, e % k)))
        .collect();
    let rb: Vec<f32> = (0..k * n)
        .map(|e| round_to_bf16(at(&b, e / n, e % n)))
        .collect();
    let (a, b) = (View::rows(&ra, 0, k), View::rows(&rb, 0, n));
    // SAFETY: the copies are contiguous `m x k` and `k x n` matrices; the caller vouches for
    // the destination.
    unsafe { strided_gemm::run(Product { a, b, ..p }, dst, parallel, MatmulPrecision::F32) }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{pack_a_any, pack_b_any, Dst, View, MR, NR};
    use std::arch::x86_64::*;

    /// The lanes below `n` (at most 16).
    fn mask(n: usize) -> __mmask16 {
        match n {
            n if n >= 16 => 0xffff,
            n => (1u16 << n) - 1,
        }
    }

    /// The 16 x 16 matrix of 32-bit values in `rows` transposed in place: four rounds that
    /// swap the off-diagonal blocks of 8, 4, 2 and 1 within each block of twice that size.
    ///
    /// # Safety
    /// AVX512F.
    #[target_feature(enable = "avx512f")]
    fn transpose(rows: &mut [__m512i; 16]) {
        for b in [8usize, 4, 2, 1] {
            // Row i keeps its lanes with bit b clear and takes row i + b's from below them;
            // row i + b takes row i's lanes with bit b set and keeps its own.
            let low: [i32; 16] = std::array::from_fn(|l| match l & b {
                0 => l as i32,
                _ => (16 + l - b) as i32,
            });
            let high: [i32; 16] = std::array::from_fn(|l| match l & b {
                0 => (l + b) as i32,
                _ => (16 + l) as i32,
            });
            // SAFETY: 16 i32 values are read from each array.
            let (low, high) = unsafe {
                (
                    _mm512_loadu_si512(low.as_ptr() as *const __m512i),
                    _mm512_loadu_si512(high.as_ptr() as *const __m512i),
                )
            };
            for i in (0..16).filter(|i| i & b == 0) {
                let (x, y) = (rows[i], rows[i + b]);
                rows[i] = _mm512_permutex2var_epi32(x, low, y);
                rows[i + b] = _mm512_permutex2var_epi32(x, high, y);
            }
        }
    }

    /// Words `(src[2q], src[2q + 1])` for q in 0..16, from the `len` floats at `src` (zeros
    /// past them): pairs along a contiguous inner dimension.
    ///
    /// # Safety
    /// AVX512F and AVX512_BF16; `src..src + min(len, 32)` is readable.
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn words_along(src: *const f32, len: usize) -> __m512i {
        // SAFETY: only the masked-in lanes are read.
        unsafe {
            let lo = _mm512_maskz_loadu_ps(mask(len), src);
            let hi = _mm512_maskz_loadu_ps(mask(len.saturating_sub(16)), src.wrapping_add(16));
            std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo))
        }
    }

    /// Words `(even[q], odd[q])` for q in 0..16, from the `len` floats at each (zeros past
    /// them; `odd` absent: zeros): two rows of the inner dimension interleaved.
    ///
    /// # Safety
    /// AVX512F, AVX512BW and AVX512_BF16; `len` floats readable at `even` and at `odd`.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn words_across(even: *const f32, odd: Option<*const f32>, len: usize) -> __m512i {
        // SAFETY: only the masked-in lanes are read.
        unsafe {
            let e = _mm512_maskz_loadu_ps(mask(len), even);
            let o = odd.map_or(_mm512_setzero_ps(), |p| _mm512_maskz_loadu_ps(mask(len), p));
            // [e0..e15, o0..o15] as 16-bit values, then each `e` beside its `o`.
            let halves: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(o, e));
            let order = _mm512_set_epi16(
                31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5,
                20, 4, 19, 3, 18, 2, 17, 1, 16, 0,
            );
            _mm512_permutexvar_epi16(order, halves)
        }
    }

    /// [`pack_a_any`] with vector conversions where one of `a`'s strides is 1.
    ///
    /// # Safety
    /// AVX512F, AVX512BW and AVX512_BF16.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn pack_a(
        a: View,
        m: usize,
        k: usize,
        i0: usize,
        p0: usize,
        kp: usize,
        panel: &mut [u32],
    ) {
        let rows = MR.min(m.saturating_sub(i0));
        let panel = &mut panel[..kp * MR];
        if a.col_stride == 1 && a.row_stride != 1 {
            // Each row's pairs are consecutive floats, and its words consecutive in the panel.
            for r in 0..MR {
                for q0 in (0..kp).step_by(16) {
                    let words = match r < rows {
                        // SAFETY: the row's floats from column 2 (p0 + q0) lie inside `a`.
                        true => unsafe {
                            let c = 2 * (p0 + q0);
                            let src = a.data.as_ptr().add(a.offset + (i0 + r) * a.row_stride + c);
                            words_along(src, k - c)
                        },
                        false => _mm512_setzero_si512(),
                    };
                    // SAFETY: words r * kp + q0 .. + min(16, kp - q0) lie inside the panel.
                    unsafe {
                        let dst = panel.as_mut_ptr().add(r * kp + q0) as *mut i32;
                        _mm512_mask_storeu_epi32(dst, mask(kp - q0), words);
                    }
                }
            }
        } else if a.row_stride == 1 && rows > 0 {
            // Columns are contiguous: each pair of columns gives the panel's rows' words for
            // one pair; 16 pairs of them, transposed, give each row's words for 16 pairs.
            let col = |c: usize| {
                a.data
                    .as_ptr()
                    .wrapping_add(a.offset + i0 + c * a.col_stride)
            };
            for q0 in (0..kp).step_by(16) {
                let mut block = [_mm512_setzero_si512(); 16];
                for (q, lanes) in block.iter_mut().enumerate().take(kp - q0) {
                    let c = 2 * (p0 + q0 + q);
                    let odd = (c + 1 < k).then(|| col(c + 1));
                    // SAFETY: `rows` floats of each column from row i0 lie inside `a`.
                    *lanes = unsafe { words_across(col(c), odd, rows) };
                }
                transpose(&mut block);
                for (r, words) in block.iter().enumerate().take(MR) {
                    // SAFETY: words r * kp + q0 .. + min(16, kp - q0) lie inside the panel.
                    unsafe {
                        let dst = panel.as_mut_ptr().add(r * kp + q0) as *mut i32;
                        _mm512_mask_storeu_epi32(dst, mask(kp - q0), *words);
                    }
                }
            }
        } else {
            pack_a_any(a, m, k, i0, p0, kp, panel);
        }
    }

    /// [`pack_b_any`] with vector conversions where one of `b`'s strides is 1.
    ///
    /// # Safety
    /// AVX512F, AVX512BW and AVX512_BF16.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn pack_b(
        b: View,
        n: usize,
        k: usize,
        j0: usize,
        p0: usize,
        kp: usize,
        panel: &mut [u32],
    ) {
        let cols = NR.min(n.saturating_sub(j0));
        let panel = &mut panel[..kp * NR];
        if b.col_stride == 1 && b.row_stride != 1 {
            // Rows are contiguous: each pair of rows gives 16 columns' words at a time.
            let row = |r: usize| {
                b.data
                    .as_ptr()
                    .wrapping_add(b.offset + r * b.row_stride + j0)
            };
            for p in 0..kp {
                let r = 2 * (p0 + p);
                let odd = (r + 1 < k).then(|| row(r + 1));
                for c in (0..NR).step_by(16) {
                    let len = cols.saturating_sub(c);
                    // SAFETY: `len` floats of each row from column j0 + c lie inside `b`; the
                    // panel has NR words for pair p.
                    unsafe {
                        let words = match len {
                            0 => _mm512_setzero_si512(),
                            _ => words_across(row(r).add(c), odd.map(|o| o.add(c)), len),
                        };
                        let dst = panel.as_mut_ptr().add(p * NR + c) as *mut __m512i;
                        _mm512_storeu_si512(dst, words);
                    }
                }
            }
        } else if b.row_stride == 1 && cols > 0 {
            // Each column's pairs are consecutive floats: 16 columns' words for 16 pairs,
            // transposed, give each pair's words for the 16 columns.
            for q0 in (0..kp).step_by(16) {
                for c0 in (0..NR).step_by(16) {
                    let mut block = [_mm512_setzero_si512(); 16];
                    for (c, lanes) in block.iter_mut().enumerate().take(cols.saturating_sub(c0)) {
                        let r = 2 * (p0 + q0);
                        // SAFETY: the column's floats from row r lie inside `b`.
                        *lanes = unsafe {
                            let j = j0 + c0 + c;
                            words_along(b.data.as_ptr().add(b.offset + j * b.col_stride + r), k - r)
                        };
                    }
                    transpose(&mut block);
                    for (q, words) in block.iter().enumerate().take(kp - q0) {
                        // SAFETY: the panel has NR words for pair q0 + q.
                        unsafe {
                            let dst = panel.as_mut_ptr().add((q0 + q) * NR + c0) as *mut __m512i;
                            _mm512_storeu_si512(dst, *words);
                        }
                    }
                }
            }
        } else {
            pack_b_any(b, n, k, j0, p0, kp, panel);
        }
    }

    /// `out[i.., j..] (+)= scale * a_panel * b_panel` for the `rows x cols` corner of one tile.
    ///
    /// # Safety
    /// The CPU has AVX512F and AVX512_BF16; the panels hold `kp` pairs; the `rows x cols`
    /// block at `(i, j)` lies inside the output and is initialised when `add` is set.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn tile(
        kp: usize,
        a: &[u32],
        b: &[u32],
        out: Dst,
        i: usize,
        j: usize,
        rows: usize,
        cols: usize,
        scale: f32,
        add: bool,
    ) {
        assert!(
            a.len() >= kp * MR && b.len() >= kp * NR,
            "panels hold kp pairs"
        );
        let mut acc = [[_mm512_setzero_ps(); 4]; MR];
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        for p in 0..kp {
            // SAFETY: pair `p` lies inside both panels (asserted above).
            unsafe {
                let bp = pb.add(p * NR) as *const __m512i;
                let bv: [__m512bh; 4] =
                    std::array::from_fn(|c| std::mem::transmute(_mm512_loadu_si512(bp.add(c))));
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let av: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*pa.add(r * kp + p) as i32));
                    for (c, acc_rc) in acc_r.iter_mut().enumerate() {
                        *acc_rc = _mm512_dpbf16_ps(*acc_rc, av, bv[c]);
                    }
                }
            }
        }
        let s = _mm512_set1_ps(scale);
        for (r, acc_r) in acc.iter().enumerate().take(rows) {
            for (c, &v) in acc_r.iter().enumerate() {
                let col = 16 * c;
                if col >= cols {
                    break;
                }
                let lanes = mask(cols - col);
                // SAFETY: the masked lanes lie inside the tile's block of the output.
                unsafe {
                    let p = out.ptr.add((i + r) * out.row_stride + j + col);
                    let mut y = _mm512_mul_ps(v, s);
                    if add {
                        y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(lanes, p));
                    }
                    _mm512_mask_storeu_ps(p, lanes, y);
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    //! Never called: [`super::native`] is false off x86-64.
    use super::{Dst, View};

    pub unsafe fn pack_a(_: View, _: usize, _: usize, _: usize, _: usize, _: usize, _: &mut [u32]) {
        unreachable!("bf16 packing runs only where native() holds")
    }

    pub unsafe fn pack_b(_: View, _: usize, _: usize, _: usize, _: usize, _: usize, _: &mut [u32]) {
        unreachable!("bf16 packing runs only where native() holds")
    }

    #[allow(clippy::too_many_arguments)]
    pub unsafe fn tile(
        _: usize,
        _: &[u32],
        _: &[u32],
        _: Dst,
        _: usize,
        _: usize,
        _: usize,
        _: usize,
        _: f32,
        _: bool,
    ) {
        unreachable!("the bf16 micro-kernel runs only where native() holds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_nearest_with_ties_to_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        assert_eq!(to_bf16(-2.0), 0xc000);
        // 1 + 2^-8 lies halfway between 1 (even) and 1 + 2^-7 (odd): down to the even one.
        assert_eq!(to_bf16(1.0 + 2f32.powi(-8)), 0x3f80);
        // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): up.
        assert_eq!(to_bf16(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
        // Just above halfway rounds up.
        assert_eq!(to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(
            to_bf16(f32::MAX),
            0x7f80,
            "past bf16's largest value: infinity"
        );
        assert_eq!(to_bf16(f32::INFINITY), 0x7f80);
        assert!(f32::from_bits(u32::from(to_bf16(f32::NAN)) << 16).is_nan());
        let signalling = f32::from_bits(0x7f80_0001);
        assert!(f32::from_bits(u32::from(to_bf16(signalling)) << 16).is_nan());
        assert_eq!(
            to_bf16(-f32::from_bits(1)),
            0x8000,
            "subnormals flush to signed zero"
        );
        assert_eq!(round_to_bf16(3.0), 3.0);
    }

    /// `out` as a destination with row stride `row_stride`.
    fn dst(out: &mut [f32], row_stride: usize, accumulate: bool) -> Dst {
        Dst {
            ptr: out.as_mut_ptr(),
            row_stride,
            accumulate,
        }
    }

    /// Values spread over a few binades, deterministic.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
            })
            .collect()
    }

    /// One product checked against f64 sums of the rounded operands, in both layouts of each
    /// operand, with and without accumulation, on one thread and on the pool.
    fn check(m: usize, n: usize, k: usize) {
        let (av, bv) = (values(m * k, 1), values(k * n, 2));
        let ar = |i: usize, c: usize| round_to_bf16(av[i * k + c]) as f64;
        let br = |c: usize, j: usize| round_to_bf16(bv[c * n + j]) as f64;
        // The same matrices stored transposed.
        let at: Vec<f32> = (0..k * m).map(|e| av[(e % m) * k + e / m]).collect();
        let bt: Vec<f32> = (0..n * k).map(|e| bv[(e % k) * n + e / k]).collect();
        let a_views = [View::rows(&av, 0, k), View::rows(&at, 0, m).t()];
        let b_views = [View::rows(&bv, 0, n), View::rows(&bt, 0, k).t()];
        let start = values(m * n, 3);
        let scale = 0.75f32;
        for (a, b) in a_views
            .iter()
            .flat_map(|a| b_views.iter().map(move |b| (*a, *b)))
        {
            for accumulate in [false, true] {
                for parallel in [false, true] {
                    let mut out = start.clone();
                    // SAFETY: `out` is an initialised m x n matrix of its own.
                    unsafe {
                        run(
                            Product::new(m, n, k, a, b, scale),
                            dst(&mut out, n, accumulate),
                            parallel,
                        )
                    };
                    for i in 0..m {
                        for j in 0..n {
                            let (mut sum, mut size) = (0.0f64, 0.0f64);
                            for c in 0..k {
                                sum += ar(i, c) * br(c, j);
                                size += (ar(i, c) * br(c, j)).abs();
                            }
                            let base = if accumulate {
                                start[i * n + j] as f64
                            } else {
                                0.0
                            };
                            let want = base + scale as f64 * sum;
                            let got = out[i * n + j] as f64;
                            let tol = 1e-6 * (k as f64 + 4.0) * (size + base.abs());
                            assert!(
                                (got - want).abs() <= tol,
                                "{m}x{n}x{k} ({i}, {j}) accumulate {accumulate} parallel {parallel}: {got} against {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn products_match_f64_sums_of_the_rounded_operands() {
        check(1, 1, 1);
        check(7, 13, 5);
        check(13, 70, 37);
        check(6, 64, 2);
        // Past one packed block of the inner dimension, several tasks and ragged edges.
        check(100, 130, 2 * KC_PAIRS + 87);
    }

    #[test]
    fn the_pool_and_one_thread_give_the_same_bits() {
        let (m, n, k) = (2 * MC + 5, 3 * NC + 17, 300);
        let (a, b) = (values(m * k, 4), values(k * n, 5));
        let (a, b) = (View::rows(&a, 0, k), View::rows(&b, 0, n));
        let outs: Vec<Vec<f32>> = [false, true, true]
            .iter()
            .map(|&parallel| {
                let mut out = vec![f32::NAN; m * n];
                // SAFETY: `out` is an m x n matrix of its own, not read without `accumulate`.
                unsafe {
                    run(
                        Product::new(m, n, k, a, b, 1.0),
                        dst(&mut out, n, false),
                        parallel,
                    )
                };
                out
            })
            .collect();
        assert!(
            outs[0].iter().all(|x| x.is_finite()),
            "every output written"
        );
        let bits = |v: &Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&outs[0]), bits(&outs[1]));
        assert_eq!(bits(&outs[1]), bits(&outs[2]));
    }

    #[test]
    fn the_f32_route_computes_the_same_products() {
        let (m, n, k) = (37, 90, 129);
        let (a, b) = (values(m * k, 6), values(k * n, 7));
        let (a, b) = (View::rows(&a, 0, k), View::rows(&b, 0, n));
        let (mut native, mut emulated) = (vec![0.0; m * n], vec![0.0; m * n]);
        // SAFETY: each output is an m x n matrix of its own.
        unsafe {
            let p = Product::new(m, n, k, a, b, 1.0);
            run(p, dst(&mut native, n, false), true);
            rounded_f32(p, dst(&mut emulated, n, false), true);
        }
        for (x, y) in native.iter().zip(&emulated) {
            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} against {y}");
        }
    }
}
