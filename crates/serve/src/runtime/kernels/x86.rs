//! AVX2 + FMA + F16C kernels. Each computes a register tile of `R` weight rows × `T`
//! activation rows: per step it loads each weight vector once and each activation vector once
//! and does all `R·T` multiply-adds, with one 8-lane accumulator per output, summed across
//! lanes at the end.
//!
//! - f16 / bf16: weights widened to f32 (F16C for f16, a shift for bf16), f32 FMAs. (f32
//!   weights are multiplied in panels instead: [`super::x86_panels`].)
//!   (f32 weight matrices are multiplied in panels instead, [`super::x86_panels`]; this path
//!   serves row-major f32 such as the attention's keys.)
//! - Q8_0 / Q4_0 against quantised activations: 32 codes per block, `vpmaddubsw` (unsigned ×
//!   signed bytes, with the weight's sign moved onto the activation so the weight side is
//!   `|w|`), `vpmaddwd` by ones to 8 i32 sums, converted and scaled by `d_w · d_a` in f32.
//! - Q4_K: codes 0..=15 are already unsigned, so `vpmaddubsw` takes them directly; the
//!   sub-block's scale `d·sc_j` goes into the f32 factor and the minimums `dmin·m_j` (8 per
//!   super-block, one per lane) meet the activation block sums in one FMA per tile.
//!
//! Integer sums cannot overflow: `vpmaddubsw` adds two products of at most 128·127 (or 15·127),
//! under i16's 32767, and the i32 sums of 32 of them are far from 2^31.

// Register tiles are indexed by (weight row i, activation row t) throughout; index loops say
// that more plainly than iterator chains over two or three arrays at once.
#![allow(clippy::needless_range_loop)]

use super::acts::{QuantizedActs, QBLOCK};
use super::{Acts, Out, Weights};
use crate::gguf::TensorType;
use crate::quant::{q4_k, QuantType};
use std::arch::x86_64::*;
use std::ops::Range;

/// Weight rows per register tile.
const R: usize = 4;

/// Every `out[t, r]` for `r` in `rows` and `t` in `ts`, with AVX2 kernels.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn panel_avx2(
    w: &Weights,
    acts: &Acts,
    rows: Range<usize>,
    ts: Range<usize>,
    out: &Out,
) {
    panel::<Avx2>(w, acts, rows, ts, out)
}

/// The same with AVX-512: 16-lane float tiles, and `vpdpbusd` (VNNI) on 8 lanes for the block
/// formats, whose 32 registers also hold taller tiles.
///
/// # Safety
/// The CPU has AVX2, FMA, F16C, AVX-512 F/BW/VL and VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn panel_avx512(
    w: &Weights,
    acts: &Acts,
    rows: Range<usize>,
    ts: Range<usize>,
    out: &Out,
) {
    panel::<Avx512>(w, acts, rows, ts, out)
}

/// What differs between the instruction sets. Everything below is `inline(always)` so that it
/// compiles into each entry point with that entry point's features.
trait Isa {
    /// Activation rows per float tile and per quantised tile.
    const T_FLOAT: usize;
    const T_QUANT: usize;
    /// Float tiles of 16 lanes (else 8).
    const WIDE: bool;
    /// `src + Σ u·a` over each group of 4 bytes: `u` unsigned, `a` signed; the 2-byte partial
    /// sums must not exceed i16 (`vpmaddubsw` saturates) where VNNI is missing.
    unsafe fn udot(src: __m256i, u: __m256i, a: __m256i) -> __m256i;
    /// `Σ w·a` per group of 4 bytes of signed weights `w` and activation codes `a`, given `|w|`,
    /// `-128·Σ w` (per group) and `a + 128`, whichever the instruction set needs.
    unsafe fn sdot(w: __m256i, wabs: __m256i, wcorr: __m256i, a: __m256i, au: __m256i) -> __m256i;
}

struct Avx2;
struct Avx512;

impl Isa for Avx2 {
    // 4 × 3 and 4 × 2 accumulators plus the operands fit the 16 registers.
    const T_FLOAT: usize = 3;
    const T_QUANT: usize = 2;
    const WIDE: bool = false;
    #[inline(always)]
    unsafe fn udot(src: __m256i, u: __m256i, a: __m256i) -> __m256i {
        let pairs = _mm256_maddubs_epi16(u, a);
        _mm256_add_epi32(src, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }
    #[inline(always)]
    unsafe fn sdot(w: __m256i, wabs: __m256i, _: __m256i, a: __m256i, _: __m256i) -> __m256i {
        // The weight's sign moves onto the activation, so the unsigned side is |w| <= 128 and a
        // pair of products stays within i16 (2 · 128 · 127).
        Self::udot(_mm256_setzero_si256(), wabs, _mm256_sign_epi8(a, w))
    }
}

impl Isa for Avx512 {
    const T_FLOAT: usize = 6;
    const T_QUANT: usize = 4;
    const WIDE: bool = true;
    #[inline(always)]
    unsafe fn udot(src: __m256i, u: __m256i, a: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(src, u, a)
    }
    #[inline(always)]
    unsafe fn sdot(w: __m256i, _: __m256i, wcorr: __m256i, _: __m256i, au: __m256i) -> __m256i {
        // (a + 128)·w summed in i32 (no i16 step to saturate), less 128·Σ w.
        _mm256_dpbusd_epi32(wcorr, au, w)
    }
}

#[inline(always)]
unsafe fn panel<I: Isa>(w: &Weights, acts: &Acts, rows: Range<usize>, ts: Range<usize>, out: &Out) {
    match (w.ty, acts) {
        (TensorType::F16, Acts::F32(x)) => float_panel::<I, F16>(w, x, rows, ts, out),
        (TensorType::Bf16, Acts::F32(x)) => float_panel::<I, Bf16>(w, x, rows, ts, out),
        (TensorType::Quant(QuantType::Q8_0), Acts::Quantized(q)) => {
            quant_panel::<I, Q8_0>(w, q, rows, ts, out)
        }
        (TensorType::Quant(QuantType::Q4_0), Acts::Quantized(q)) => {
            quant_panel::<I, Q4_0>(w, q, rows, ts, out)
        }
        (TensorType::Quant(QuantType::Q4K), Acts::Quantized(q)) => {
            quant_panel::<I, Q4K>(w, q, rows, ts, out)
        }
        (TensorType::F32, _) => unreachable!("f32 weights are multiplied in panels"),
        _ => unreachable!("the driver quantises activations exactly for the block formats"),
    }
}

/// The `R` weight rows from `r0` (the last repeated where fewer remain; their results are
/// dropped) and how many are real.
#[inline(always)]
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
#[inline(always)]
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
    /// Sixteen weights from `p` (AVX-512 only).
    unsafe fn sixteen(p: *const u8) -> __m512;
    /// Eight weights from `p`.
    unsafe fn eight(p: *const u8) -> __m256;
    /// One weight at `p`.
    unsafe fn one(p: *const u8) -> f32;
}

struct F16;
struct Bf16;

impl Load for F16 {
    const SIZE: usize = 2;
    #[inline(always)]
    unsafe fn sixteen(p: *const u8) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    }
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
    unsafe fn sixteen(p: *const u8) -> __m512 {
        let wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p as *const __m256i));
        _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16))
    }
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

#[inline(always)]
unsafe fn float_panel<I: Isa, L: Load>(
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
            let tn = (ts.end - t0).min(I::T_FLOAT);
            let xp = |t: usize| x[(t0 + t.min(tn - 1)) * w.cols..].as_ptr();
            with_const!(tn, T => {
                let res = float_tile::<I, L, T>(wp, std::array::from_fn(xp), w.cols);
                store(res, rn, r0, t0, out)
            }; 1 2 3 4 5 6);
            t0 += tn;
        }
        r0 += rn;
    }
}

/// Dot products of `R` weight rows with `T` activation rows of `cols` values: 16 lanes at a
/// time where the instruction set has them, then 8, then one by one.
#[inline(always)]
unsafe fn float_tile<I: Isa, L: Load, const T: usize>(
    w: [*const u8; R],
    x: [*const f32; T],
    cols: usize,
) -> [[f32; T]; R] {
    let mut res = [[0f32; T]; R];
    let mut c = 0;
    if I::WIDE {
        let mut acc = [[_mm512_setzero_ps(); T]; R];
        while c + 16 <= cols {
            let mut wv = [_mm512_setzero_ps(); R];
            for i in 0..R {
                wv[i] = L::sixteen(w[i].add(c * L::SIZE));
            }
            for t in 0..T {
                let xv = _mm512_loadu_ps(x[t].add(c));
                for i in 0..R {
                    acc[i][t] = _mm512_fmadd_ps(wv[i], xv, acc[i][t]);
                }
            }
            c += 16;
        }
        for i in 0..R {
            for t in 0..T {
                res[i][t] = _mm512_reduce_add_ps(acc[i][t]);
            }
        }
    }
    let mut acc = [[_mm256_setzero_ps(); T]; R];
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
    for i in 0..R {
        for t in 0..T {
            let mut v = res[i][t] + hsum(acc[i][t]);
            for k in c..cols {
                v += L::one(w[i].add(k * L::SIZE)) * *x[t].add(k);
            }
            res[i][t] = v;
        }
    }
    res
}

// ---- Q8_0, Q4_0, Q4_K ----

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

    #[inline(always)]
    unsafe fn scale(&self, b: usize) -> f32 {
        *self.scales.add(b)
    }
}

/// A block format's dot products with quantised activations.
trait QuantTile {
    /// Weights per weight block.
    const LEN: usize;
    const BYTES: usize;
    /// Whether [`QuantTile::pair`] exists.
    const PAIRS: bool;
    /// Floats per block that [`QuantTile::prepare`] decodes ahead, once per panel rather than
    /// once per tile (Q4_K's packed 6-bit scales and minimums).
    const PREPARED: usize = 0;
    /// Appends a weight block's [`QuantTile::PREPARED`] floats.
    fn prepare(_block: &[u8], _out: &mut Vec<f32>) {}
    /// Adds block `b` of each weight row (`w[i]` points at it, `prep[i]` at its prepared
    /// floats, or is null where the block decodes them itself) times the activation rows'
    /// matching blocks into `acc`.
    unsafe fn block<I: Isa, const T: usize>(
        w: &[*const u8; R],
        prep: &[*const f32; R],
        a: &[ActRow; T],
        b: usize,
        acc: &mut Acc<T>,
    );
    /// Blocks `b` and `b + 1` at once in 16-lane vectors (AVX-512 only).
    #[inline(always)]
    unsafe fn pair<const T: usize>(
        _w: &[*const u8; R],
        _a: &[ActRow; T],
        _b: usize,
        _acc: &mut Acc<T>,
    ) {
    }
}

/// A tile's accumulators: 8 lanes, and 16 where AVX-512 is in use (only then touched).
struct Acc<const T: usize> {
    narrow: [[__m256; T]; R],
    wide: [[__m512; T]; R],
}

#[inline(always)]
unsafe fn quant_panel<I: Isa, Q: QuantTile>(
    w: &Weights,
    q: &QuantizedActs,
    rows: Range<usize>,
    ts: Range<usize>,
    out: &Out,
) {
    let blocks = w.cols / Q::LEN;
    // Worth it only where a row tile meets more than one activation tile; else the blocks
    // decode their own (`prep` null).
    let prepare = Q::PREPARED > 0 && ts.len() > I::T_QUANT;
    let per_row = blocks * Q::PREPARED;
    let mut prepared = Vec::with_capacity(if prepare { rows.len() * per_row } else { 0 });
    if prepare {
        for r in rows.clone() {
            for block in w.row(r).chunks_exact(Q::BYTES) {
                Q::prepare(block, &mut prepared);
            }
        }
    }
    let decode = ts.len() <= 8;
    let mut r0 = rows.start;
    while r0 < rows.end {
        let (wp, rn) = tile_rows(w, r0, rows.end);
        let pp = std::array::from_fn(|i| match prepare {
            true => prepared[(r0 + i.min(rn - 1) - rows.start) * per_row..].as_ptr(),
            false => std::ptr::null(),
        });
        let mut t0 = ts.start;
        while t0 < ts.end {
            let tn = (ts.end - t0).min(I::T_QUANT);
            let a = |t: usize| ActRow::new(q, t0 + t.min(tn - 1));
            // At decode the weights stream from memory once: the first activation tile fetches
            // the next row tile's weights ahead. At prefill they come from cache.
            let ahead = match decode && t0 == ts.start {
                true => R * w.row_bytes(),
                false => 0,
            };
            with_const!(tn, T => {
                let res = quant_tile::<I, Q, T>(wp, pp, std::array::from_fn(a), blocks, ahead);
                store(res, rn, r0, t0, out)
            }; 1 2 3 4);
            t0 += tn;
        }
        r0 += rn;
    }
}

#[inline(always)]
unsafe fn quant_tile<I: Isa, Q: QuantTile, const T: usize>(
    w: [*const u8; R],
    prep: [*const f32; R],
    a: [ActRow; T],
    blocks: usize,
    ahead: usize,
) -> [[f32; T]; R] {
    let prep_at = |b: usize| {
        let mut pb = prep;
        for p in pb.iter_mut().filter(|p| !p.is_null()) {
            *p = p.add(b * Q::PREPARED);
        }
        pb
    };
    let at = |b: usize| {
        let mut wb = w;
        for p in wb.iter_mut() {
            *p = p.add(b * Q::BYTES);
        }
        wb
    };
    // Two phases, each with its own accumulators so that the 8- and 16-lane ones (which share
    // the register file) are never live together: single blocks (all of them, or the odd one
    // out), then pairs.
    let paired = if I::WIDE && Q::PAIRS { blocks & !1 } else { 0 };
    let mut res = [[0f32; T]; R];
    // SAFETY (both): all-zero bits are a zero vector; zeroing this way emits no AVX-512
    // instruction where the entry point lacks it (the wide half is then never used).
    let mut acc: Acc<T> = std::mem::zeroed();
    for b in paired..blocks {
        prefetch::<Q>(&w, ahead, b, 1);
        Q::block::<I, T>(&at(b), &prep_at(b), &a, b, &mut acc);
    }
    for i in 0..R {
        for t in 0..T {
            res[i][t] = hsum(acc.narrow[i][t]);
            if I::WIDE {
                res[i][t] += _mm512_reduce_add_ps(acc.wide[i][t]);
            }
        }
    }
    if paired > 0 {
        let mut acc: Acc<T> = std::mem::zeroed();
        for b in (0..paired).step_by(2) {
            prefetch::<Q>(&w, ahead, b, 2);
            Q::pair::<T>(&at(b), &a, b, &mut acc);
        }
        for i in 0..R {
            for t in 0..T {
                res[i][t] += _mm512_reduce_add_ps(acc.wide[i][t]);
            }
        }
    }
    res
}

/// Asks for the cache lines of blocks `b..b + count` of each row `ahead` bytes after the
/// tile's rows (nothing when `ahead` is 0). A prefetch never faults, so addresses past the
/// weights are harmless; `wrapping_add` keeps the arithmetic defined.
#[inline(always)]
unsafe fn prefetch<Q: QuantTile>(w: &[*const u8; R], ahead: usize, b: usize, count: usize) {
    if ahead == 0 {
        return;
    }
    for p in w {
        let at = p.wrapping_add(ahead + b * Q::BYTES);
        let mut k = 0;
        while k < count * Q::BYTES {
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(k) as *const i8);
            k += 64;
        }
    }
}

/// Sixteen lanes: the two floats at `p`, the first in lanes 0..8 and the second in 8..16
/// (one load and one permute).
#[inline(always)]
unsafe fn halves_at(p: *const f32) -> __m512 {
    spread(_mm_castpd_ps(_mm_load_sd(p as *const f64)))
}

/// Lanes 0 and 1 of `v` as lanes 0..8 and 8..16.
#[inline(always)]
unsafe fn spread(v: __m128) -> __m512 {
    let idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(v))
}

/// The f16 scales of two blocks `stride` bytes apart, spread as [`halves_at`] does.
#[inline(always)]
unsafe fn f16_halves(p: *const u8, stride: usize) -> __m512 {
    let d0 = (p as *const u16).read_unaligned() as i32;
    let d1 = (p.add(stride) as *const u16).read_unaligned() as i32;
    spread(_mm_cvtph_ps(_mm_insert_epi16(_mm_cvtsi32_si128(d0), d1, 1)))
}

/// [`scaled`] on 16 lanes.
#[inline(always)]
unsafe fn scaled_wide(acc: __m512, dot: __m512i, dw: __m512, da: __m512) -> __m512 {
    _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dot), da), dw, acc)
}

/// Two 256-bit halves as one 512-bit vector.
#[inline(always)]
unsafe fn join(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)
}

impl ActRow {
    /// The 64 codes of activation blocks `b` and `b + 1`.
    #[inline(always)]
    unsafe fn codes_pair(&self, b: usize) -> __m512i {
        _mm512_loadu_si512(self.codes.add(b * QBLOCK) as *const _)
    }

    #[inline(always)]
    unsafe fn scale_pair(&self, b: usize) -> __m512 {
        halves_at(self.scales.add(b))
    }
}

/// `acc += (dot · d_a) · d_w`, the 8 i32 lanes of an integer dot product scaled to f32. Two
/// vector operations on broadcast scales; `dot · (d_w · d_a)` would cost a scalar multiply and
/// a broadcast per tile entry.
#[inline(always)]
unsafe fn scaled(acc: __m256, dot: __m256i, dw: __m256, da: __m256) -> __m256 {
    _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(dot), da), dw, acc)
}

struct Q8_0;
struct Q4_0;
struct Q4K;

impl QuantTile for Q8_0 {
    const LEN: usize = QBLOCK;
    const BYTES: usize = 2 + QBLOCK;
    const PAIRS: bool = true;
    #[inline(always)]
    unsafe fn pair<const T: usize>(
        w: &[*const u8; R],
        a: &[ActRow; T],
        b: usize,
        acc: &mut Acc<T>,
    ) {
        let zero = _mm512_setzero_si512();
        let (mut wq, mut wcorr) = ([zero; R], [zero; R]);
        let mut dw = [_mm512_setzero_ps(); R];
        for i in 0..R {
            let next = w[i].add(Self::BYTES);
            dw[i] = f16_halves(w[i], Self::BYTES);
            let lo = _mm256_loadu_si256(w[i].add(2) as *const __m256i);
            wq[i] = join(lo, _mm256_loadu_si256(next.add(2) as *const __m256i));
            wcorr[i] = _mm512_sub_epi32(
                zero,
                _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(-128), wq[i]),
            );
        }
        for t in 0..T {
            let au = _mm512_xor_si512(a[t].codes_pair(b), _mm512_set1_epi8(-128));
            let da = a[t].scale_pair(b);
            for i in 0..R {
                let dot = _mm512_dpbusd_epi32(wcorr[i], au, wq[i]);
                acc.wide[i][t] = scaled_wide(acc.wide[i][t], dot, dw[i], da);
            }
        }
    }
    #[inline(always)]
    unsafe fn block<I: Isa, const T: usize>(
        w: &[*const u8; R],
        _prep: &[*const f32; R],
        a: &[ActRow; T],
        b: usize,
        acc: &mut Acc<T>,
    ) {
        let zero = _mm256_setzero_si256();
        let (mut wq, mut wabs, mut wcorr) = ([zero; R], [zero; R], [zero; R]);
        let mut dw = [_mm256_setzero_ps(); R];
        for i in 0..R {
            dw[i] = _mm256_set1_ps(f16_at(w[i]));
            wq[i] = _mm256_loadu_si256(w[i].add(2) as *const __m256i);
            // Each instruction set uses one of these; the other is dead code.
            wabs[i] = _mm256_sign_epi8(wq[i], wq[i]);
            wcorr[i] = _mm256_sub_epi32(zero, I::udot(zero, _mm256_set1_epi8(-128), wq[i]));
        }
        for t in 0..T {
            let aq = a[t].codes(b);
            let au = _mm256_xor_si256(aq, _mm256_set1_epi8(-128));
            let da = _mm256_set1_ps(a[t].scale(b));
            for i in 0..R {
                let dot = I::sdot(wq[i], wabs[i], wcorr[i], aq, au);
                acc.narrow[i][t] = scaled(acc.narrow[i][t], dot, dw[i], da);
            }
        }
    }
}

impl QuantTile for Q4_0 {
    const LEN: usize = QBLOCK;
    const BYTES: usize = 2 + QBLOCK / 2;
    const PAIRS: bool = true;
    #[inline(always)]
    unsafe fn pair<const T: usize>(
        w: &[*const u8; R],
        a: &[ActRow; T],
        b: usize,
        acc: &mut Acc<T>,
    ) {
        let zero = _mm512_setzero_si512();
        // Each block's 16 bytes twice, the second copy shifted down by 4: low nibbles are
        // weights 0..16, high nibbles 16..32.
        let shifts = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);
        let low = _mm512_set1_epi8(0x0f);
        let mut wq = [zero; R];
        let mut dw = [_mm512_setzero_ps(); R];
        for i in 0..R {
            let next = w[i].add(Self::BYTES);
            dw[i] = f16_halves(w[i], Self::BYTES);
            let lo = _mm256_broadcastsi128_si256(_mm_loadu_si128(w[i].add(2) as *const __m128i));
            let hi = _mm256_broadcastsi128_si256(_mm_loadu_si128(next.add(2) as *const __m128i));
            wq[i] = _mm512_and_si512(_mm512_srlv_epi64(join(lo, hi), shifts), low);
        }
        for t in 0..T {
            let aq = a[t].codes_pair(b);
            let offset = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(8), aq));
            let da = a[t].scale_pair(b);
            for i in 0..R {
                let dot = _mm512_dpbusd_epi32(offset, wq[i], aq);
                acc.wide[i][t] = scaled_wide(acc.wide[i][t], dot, dw[i], da);
            }
        }
    }
    #[inline(always)]
    unsafe fn block<I: Isa, const T: usize>(
        w: &[*const u8; R],
        _prep: &[*const f32; R],
        a: &[ActRow; T],
        b: usize,
        acc: &mut Acc<T>,
    ) {
        let zero = _mm256_setzero_si256();
        let low = _mm256_set1_epi8(0x0f);
        // Weights 0..16 in the low nibbles, 16..32 in the high: the 16 bytes in both halves,
        // the upper half shifted down by 4.
        let shifts = _mm256_set_epi64x(4, 4, 0, 0);
        let mut wq = [zero; R];
        let mut dw = [_mm256_setzero_ps(); R];
        for i in 0..R {
            dw[i] = _mm256_set1_ps(f16_at(w[i]));
            let raw = _mm256_broadcastsi128_si256(_mm_loadu_si128(w[i].add(2) as *const __m128i));
            wq[i] = _mm256_and_si256(_mm256_srlv_epi64(raw, shifts), low);
        }
        for t in 0..T {
            let aq = a[t].codes(b);
            // Codes 0..=15 stand for -8..=7: Σ (q - 8)·a = Σ q·a - 8·Σ a, the second shared by
            // the tile's weight rows and started from.
            let offset = _mm256_sub_epi32(zero, I::udot(zero, _mm256_set1_epi8(8), aq));
            let da = _mm256_set1_ps(a[t].scale(b));
            for i in 0..R {
                let dot = I::udot(offset, wq[i], aq);
                acc.narrow[i][t] = scaled(acc.narrow[i][t], dot, dw[i], da);
            }
        }
    }
}

impl QuantTile for Q4K {
    const LEN: usize = q4_k::SUPER_BLOCK;
    const BYTES: usize = q4_k::BLOCK_BYTES;
    const PAIRS: bool = false;
    /// `d·sc_j` for the eight sub-blocks, then `dmin·m_j`.
    const PREPARED: usize = 16;
    fn prepare(block: &[u8], out: &mut Vec<f32>) {
        let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
        let dmin = half::f16::from_le_bytes([block[2], block[3]]).to_f32();
        let (sc, m) = q4_k::scales_and_mins(&block[4..16]);
        out.extend(sc.iter().map(|&s| d * s as f32));
        out.extend(m.iter().map(|&m| dmin * m as f32));
    }
    #[inline(always)]
    unsafe fn block<I: Isa, const T: usize>(
        w: &[*const u8; R],
        prep: &[*const f32; R],
        a: &[ActRow; T],
        b: usize,
        acc: &mut Acc<T>,
    ) {
        let zero = _mm256_setzero_si256();
        let low = _mm256_set1_epi8(0x0f);
        let first = b * 8; // the super-block's first activation block
        for i in 0..R {
            let mut decoded = [0f32; 16];
            let ds = match prep[i].is_null() {
                false => prep[i],
                true => {
                    let (d, dmin) = (f16_at(w[i]), f16_at(w[i].add(2)));
                    let (sc, m) =
                        q4_k::scales_and_mins(std::slice::from_raw_parts(w[i].add(4), 12));
                    for j in 0..8 {
                        decoded[j] = d * sc[j] as f32;
                        decoded[8 + j] = dmin * m[j] as f32;
                    }
                    decoded.as_ptr()
                }
            };
            // The minimums' share, lane j for sub-block j: −Σ_j dmin·m_j · d_a·Σ a.
            let mins = _mm256_loadu_ps(ds.add(8));
            let codes = w[i].add(16);
            if I::WIDE {
                // Everything in the 16-lane accumulators (the minimums in the low 8 lanes).
                let mins = _mm512_zextps256_ps512(mins);
                for t in 0..T {
                    let sums = _mm512_zextps256_ps512(_mm256_loadu_ps(a[t].sums.add(first)));
                    acc.wide[i][t] = _mm512_fnmadd_ps(mins, sums, acc.wide[i][t]);
                }
                // Sub-blocks 2p and 2p + 1 share 32 code bytes (low and high nibbles), and
                // their activation blocks are adjacent: one 16-lane product per pair.
                let shifts = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);
                let low = _mm512_set1_epi8(0x0f);
                for pair in 0..4 {
                    let raw = _mm256_loadu_si256(codes.add(pair * QBLOCK) as *const __m256i);
                    let wq = _mm512_and_si512(_mm512_srlv_epi64(join(raw, raw), shifts), low);
                    let ds = halves_at(ds.add(2 * pair));
                    for t in 0..T {
                        let j = first + 2 * pair;
                        let dot =
                            _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq, a[t].codes_pair(j));
                        acc.wide[i][t] = scaled_wide(acc.wide[i][t], dot, ds, a[t].scale_pair(j));
                    }
                }
                continue;
            }
            for t in 0..T {
                let sums = _mm256_loadu_ps(a[t].sums.add(first));
                acc.narrow[i][t] = _mm256_fnmadd_ps(mins, sums, acc.narrow[i][t]);
            }
            for pair in 0..4 {
                let raw = _mm256_loadu_si256(codes.add(pair * QBLOCK) as *const __m256i);
                let lo = _mm256_and_si256(raw, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
                let (j0, j1) = (2 * pair, 2 * pair + 1);
                let (ds0, ds1) = (_mm256_set1_ps(*ds.add(j0)), _mm256_set1_ps(*ds.add(j1)));
                for t in 0..T {
                    let da0 = _mm256_set1_ps(a[t].scale(first + j0));
                    let da1 = _mm256_set1_ps(a[t].scale(first + j1));
                    let p0 = I::udot(zero, lo, a[t].codes(first + j0));
                    let p1 = I::udot(zero, hi, a[t].codes(first + j1));
                    acc.narrow[i][t] = scaled(acc.narrow[i][t], p0, ds0, da0);
                    acc.narrow[i][t] = scaled(acc.narrow[i][t], p1, ds1, da1);
                }
            }
        }
    }
}
