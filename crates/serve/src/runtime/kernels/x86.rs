//! AVX2 + FMA + F16C kernels. Each computes a register tile of `R` weight rows × `T`
//! activation rows: per step it loads each weight vector once and each activation vector once
//! and does all `R·T` multiply-adds, with one 8-lane accumulator per output, summed across
//! lanes at the end.
//!
//! - f32 / f16 / bf16: weights widened to f32 (F16C for f16, a shift for bf16), f32 FMAs.
//! - Q8_0 / Q4_0 against quantised activations: 32 codes per block, `vpmaddubsw` (unsigned ×
//!   signed bytes, with the weight's sign moved onto the activation so the weight side is
//!   `|w|`), `vpmaddwd` by ones to 8 i32 sums, converted and scaled by `d_w · d_a` in f32.
//! - Q4_K: codes 0..=15 are already unsigned, so `vpmaddubsw` takes them directly; the
//!   sub-block's scale `d·sc_j` goes into the f32 factor and the minimums `dmin·m_j` (8 per
//!   super-block, one per lane) meet the activation block sums in one FMA per tile.
//!
//! Integer sums cannot overflow: `vpmaddubsw` adds two products of at most 128·127 (or 15·127),
//! under i16's 32767, and the i32 sums of 32 of them are far from 2^31.

use super::acts::{QuantizedActs, QBLOCK};
use super::{Acts, Out, Weights};
use crate::gguf::TensorType;
use crate::quant::{q4_k, QuantType};
use std::arch::x86_64::*;
use std::ops::Range;

/// Weight rows per register tile.
const R: usize = 4;

/// Every `out[t, r]` for `r` in `rows` and `t` in `ts`.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn panel(w: &Weights, acts: &Acts, rows: Range<usize>, ts: Range<usize>, out: &Out) {
    match (w.ty, acts) {
        (TensorType::F32, Acts::F32(x)) => float_panel::<F32>(w, x, rows, ts, out),
        (TensorType::F16, Acts::F32(x)) => float_panel::<F16>(w, x, rows, ts, out),
        (TensorType::Bf16, Acts::F32(x)) => float_panel::<Bf16>(w, x, rows, ts, out),
        (TensorType::Quant(QuantType::Q8_0), Acts::Quantized(q)) => {
            quant_panel::<Q8_0>(w, q, rows, ts, out)
        }
        (TensorType::Quant(QuantType::Q4_0), Acts::Quantized(q)) => {
            quant_panel::<Q4_0>(w, q, rows, ts, out)
        }
        (TensorType::Quant(QuantType::Q4K), Acts::Quantized(q)) => {
            quant_panel::<Q4K>(w, q, rows, ts, out)
        }
        _ => unreachable!("the driver quantises activations exactly for the block formats"),
    }
}

/// The `R` weight rows from `r0` (the last repeated where fewer remain; their results are
/// dropped) and how many are real.
fn tile_rows(w: &Weights, r0: usize, end: usize) -> ([*const u8; R], usize) {
    let rn = (end - r0).min(R);
    let mut ptrs = [std::ptr::null(); R];
    for (i, p) in ptrs.iter_mut().enumerate() {
        *p = w.row(r0 + i.min(rn - 1)).as_ptr();
    }
    (ptrs, rn)
}

/// Stores the first `rn` rows of a tile computed for activation rows `t0..t0 + T`.
///
/// # Safety
/// Rows `r0..r0 + rn` belong to the calling task.
unsafe fn store<const T: usize>(res: [[f32; T]; R], rn: usize, r0: usize, t0: usize, out: &Out) {
    for (i, row) in res.iter().enumerate().take(rn) {
        for (t, &v) in row.iter().enumerate() {
            out.set(t0 + t, r0 + i, v);
        }
    }
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    let bits = (p as *const u16).read_unaligned();
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

// ---- f32, f16, bf16 ----

/// How a float type's weights widen to f32.
trait Load {
    const SIZE: usize;
    /// Eight weights from `p`.
    unsafe fn eight(p: *const u8) -> __m256;
    /// One weight at `p`.
    unsafe fn one(p: *const u8) -> f32;
}

struct F32;
struct F16;
struct Bf16;

impl Load for F32 {
    const SIZE: usize = 4;
    #[inline(always)]
    unsafe fn eight(p: *const u8) -> __m256 {
        _mm256_loadu_ps(p as *const f32)
    }
    #[inline(always)]
    unsafe fn one(p: *const u8) -> f32 {
        (p as *const f32).read_unaligned()
    }
}

impl Load for F16 {
    const SIZE: usize = 2;
    #[inline(always)]
    unsafe fn eight(p: *const u8) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
    #[inline(always)]
    unsafe fn one(p: *const u8) -> f32 {
        f16_at(p)
    }
}

impl Load for Bf16 {
    const SIZE: usize = 2;
    #[inline(always)]
    unsafe fn eight(p: *const u8) -> __m256 {
        let wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
        _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16))
    }
    #[inline(always)]
    unsafe fn one(p: *const u8) -> f32 {
        f32::from_bits(((p as *const u16).read_unaligned() as u32) << 16)
    }
}

/// Activation rows per float tile: 4 × 3 accumulators plus the operands fit the 16 registers.
const T_FLOAT: usize = 3;

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn float_panel<L: Load>(
    w: &Weights,
    x: &[f32],
    rows: Range<usize>,
    ts: Range<usize>,
    out: &Out,
) {
    let mut r0 = rows.start;
    while r0 < rows.end {
        let (wp, rn) = tile_rows(w, r0, rows.end);
        let mut t0 = ts.start;
        while t0 < ts.end {
            let tn = (ts.end - t0).min(T_FLOAT);
            let xp = |t: usize| x[(t0 + t.min(tn - 1)) * w.cols..].as_ptr();
            match tn {
                1 => store(float_tile::<L, 1>(wp, [xp(0)], w.cols), rn, r0, t0, out),
                2 => store(
                    float_tile::<L, 2>(wp, [xp(0), xp(1)], w.cols),
                    rn,
                    r0,
                    t0,
                    out,
                ),
                _ => store(
                    float_tile::<L, 3>(wp, [xp(0), xp(1), xp(2)], w.cols),
                    rn,
                    r0,
                    t0,
                    out,
                ),
            }
            t0 += tn;
        }
        r0 += rn;
    }
}

/// Dot products of `R` weight rows with `T` activation rows of `cols` values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn float_tile<L: Load, const T: usize>(
    w: [*const u8; R],
    x: [*const f32; T],
    cols: usize,
) -> [[f32; T]; R] {
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    let mut c = 0;
    while c + 8 <= cols {
        let mut wv = [_mm256_setzero_ps(); R];
        for i in 0..R {
            wv[i] = L::eight(w[i].add(c * L::SIZE));
        }
        for t in 0..T {
            let xv = _mm256_loadu_ps(x[t].add(c));
            for i in 0..R {
                acc[i][t] = _mm256_fmadd_ps(wv[i], xv, acc[i][t]);
            }
        }
        c += 8;
    }
    let mut res = [[0f32; T]; R];
    for i in 0..R {
        for t in 0..T {
            let mut v = hsum(acc[i][t]);
            for k in c..cols {
                v += L::one(w[i].add(k * L::SIZE)) * *x[t].add(k);
            }
            res[i][t] = v;
        }
    }
    res
}

// ---- Q8_0, Q4_0, Q4_K ----

/// A block format's dot products with quantised activations.
trait QuantTile {
    /// Weights per weight block.
    const LEN: usize;
    const BYTES: usize;
    /// Adds block `b` of each weight row (`w[i]` points at it) times the activation rows'
    /// matching blocks into `acc`.
    unsafe fn block<const T: usize>(
        w: &[*const u8; R],
        a: &[ActRow; T],
        b: usize,
        acc: &mut [[__m256; T]; R],
    );
}

/// One activation row's codes, scales and block sums.
#[derive(Clone, Copy)]
struct ActRow {
    codes: *const i8,
    scales: *const f32,
    sums: *const f32,
}

impl ActRow {
    fn new(q: &QuantizedActs, t: usize) -> ActRow {
        ActRow {
            codes: q.row_codes(t).as_ptr(),
            scales: q.row_scales(t).as_ptr(),
            sums: q.row_sums(t).as_ptr(),
        }
    }

    /// The 32 codes of activation block `b`.
    #[inline(always)]
    unsafe fn codes(&self, b: usize) -> __m256i {
        _mm256_loadu_si256(self.codes.add(b * QBLOCK) as *const __m256i)
    }
}

/// Activation rows per quantised tile: 4 × 2 accumulators leave room for the block's operands.
const T_QUANT: usize = 2;

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quant_panel<Q: QuantTile>(
    w: &Weights,
    q: &QuantizedActs,
    rows: Range<usize>,
    ts: Range<usize>,
    out: &Out,
) {
    let blocks = w.cols / Q::LEN;
    let mut r0 = rows.start;
    while r0 < rows.end {
        let (wp, rn) = tile_rows(w, r0, rows.end);
        let mut t0 = ts.start;
        while t0 < ts.end {
            let tn = (ts.end - t0).min(T_QUANT);
            let a = |t: usize| ActRow::new(q, t0 + t.min(tn - 1));
            match tn {
                1 => store(quant_tile::<Q, 1>(wp, [a(0)], blocks), rn, r0, t0, out),
                _ => store(
                    quant_tile::<Q, 2>(wp, [a(0), a(1)], blocks),
                    rn,
                    r0,
                    t0,
                    out,
                ),
            }
            t0 += tn;
        }
        r0 += rn;
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quant_tile<Q: QuantTile, const T: usize>(
    w: [*const u8; R],
    a: [ActRow; T],
    blocks: usize,
) -> [[f32; T]; R] {
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    for b in 0..blocks {
        let mut wb = w;
        for p in wb.iter_mut() {
            *p = p.add(b * Q::BYTES);
        }
        Q::block(&wb, &a, b, &mut acc);
    }
    let mut res = [[0f32; T]; R];
    for i in 0..R {
        for t in 0..T {
            res[i][t] = hsum(acc[i][t]);
        }
    }
    res
}

/// `Σ w·a` of 32 signed weight codes and 32 activation codes, as 8 i32 lanes in f32.
#[inline(always)]
unsafe fn signed_dot(wq: __m256i, aq: __m256i) -> __m256 {
    let prods = _mm256_maddubs_epi16(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(aq, wq));
    _mm256_cvtepi32_ps(_mm256_madd_epi16(prods, _mm256_set1_epi16(1)))
}

/// `Σ q·a` of 32 unsigned weight codes (below 128) and 32 activation codes.
#[inline(always)]
unsafe fn unsigned_dot(wq: __m256i, aq: __m256i) -> __m256 {
    let prods = _mm256_maddubs_epi16(wq, aq);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(prods, _mm256_set1_epi16(1)))
}

/// Adds `d_w · d_a · Σ w·a` for signed 32-code blocks.
#[inline(always)]
unsafe fn signed_block<const T: usize>(
    wq: [__m256i; R],
    dw: [f32; R],
    a: &[ActRow; T],
    b: usize,
    acc: &mut [[__m256; T]; R],
) {
    for t in 0..T {
        let aq = a[t].codes(b);
        let da = *a[t].scales.add(b);
        for i in 0..R {
            let scale = _mm256_set1_ps(dw[i] * da);
            acc[i][t] = _mm256_fmadd_ps(signed_dot(wq[i], aq), scale, acc[i][t]);
        }
    }
}

struct Q8_0;
struct Q4_0;
struct Q4K;

impl QuantTile for Q8_0 {
    const LEN: usize = QBLOCK;
    const BYTES: usize = 2 + QBLOCK;
    #[inline(always)]
    unsafe fn block<const T: usize>(
        w: &[*const u8; R],
        a: &[ActRow; T],
        b: usize,
        acc: &mut [[__m256; T]; R],
    ) {
        let mut wq = [_mm256_setzero_si256(); R];
        let mut dw = [0f32; R];
        for i in 0..R {
            dw[i] = f16_at(w[i]);
            wq[i] = _mm256_loadu_si256(w[i].add(2) as *const __m256i);
        }
        signed_block(wq, dw, a, b, acc);
    }
}

impl QuantTile for Q4_0 {
    const LEN: usize = QBLOCK;
    const BYTES: usize = 2 + QBLOCK / 2;
    #[inline(always)]
    unsafe fn block<const T: usize>(
        w: &[*const u8; R],
        a: &[ActRow; T],
        b: usize,
        acc: &mut [[__m256; T]; R],
    ) {
        let low = _mm_set1_epi8(0x0f);
        let mut wq = [_mm256_setzero_si256(); R];
        let mut dw = [0f32; R];
        for i in 0..R {
            dw[i] = f16_at(w[i]);
            // Weights 0..16 in the low nibbles, 16..32 in the high; codes 0..=15 stand for -8..=7.
            let raw = _mm_loadu_si128(w[i].add(2) as *const __m128i);
            let lo = _mm_and_si128(raw, low);
            let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), low);
            wq[i] = _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
        }
        signed_block(wq, dw, a, b, acc);
    }
}

impl QuantTile for Q4K {
    const LEN: usize = q4_k::SUPER_BLOCK;
    const BYTES: usize = q4_k::BLOCK_BYTES;
    #[inline(always)]
    unsafe fn block<const T: usize>(
        w: &[*const u8; R],
        a: &[ActRow; T],
        b: usize,
        acc: &mut [[__m256; T]; R],
    ) {
        let low = _mm256_set1_epi8(0x0f);
        let first = b * 8; // the super-block's first activation block
        for i in 0..R {
            let d = f16_at(w[i]);
            let dmin = f16_at(w[i].add(2));
            let packed = std::slice::from_raw_parts(w[i].add(4), 12);
            let (sc, m) = q4_k::scales_and_mins(packed);
            let mut ds = [0f32; 8];
            let mut dm = [0f32; 8];
            for j in 0..8 {
                ds[j] = d * sc[j] as f32;
                dm[j] = dmin * m[j] as f32;
            }
            // The minimums' share, lane j for sub-block j: −Σ_j dmin·m_j · d_a·Σ a.
            let mins = _mm256_loadu_ps(dm.as_ptr());
            for t in 0..T {
                let sums = _mm256_loadu_ps(a[t].sums.add(first));
                acc[i][t] = _mm256_fnmadd_ps(mins, sums, acc[i][t]);
            }
            let codes = w[i].add(16);
            for pair in 0..4 {
                let raw = _mm256_loadu_si256(codes.add(pair * QBLOCK) as *const __m256i);
                let lo = _mm256_and_si256(raw, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
                let (j0, j1) = (2 * pair, 2 * pair + 1);
                for t in 0..T {
                    let s0 = _mm256_set1_ps(ds[j0] * *a[t].scales.add(first + j0));
                    let s1 = _mm256_set1_ps(ds[j1] * *a[t].scales.add(first + j1));
                    let p0 = unsigned_dot(lo, a[t].codes(first + j0));
                    let p1 = unsigned_dot(hi, a[t].codes(first + j1));
                    acc[i][t] = _mm256_fmadd_ps(p0, s0, acc[i][t]);
                    acc[i][t] = _mm256_fmadd_ps(p1, s1, acc[i][t]);
                }
            }
        }
    }
}
