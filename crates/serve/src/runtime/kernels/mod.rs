//! The matrix-product kernels behind [`crate::runtime::Matrix::matmul`]: `out[t, r] =
//! Σ_c x[t, c] · W[r, c]` for weights stored as f32, f16, bf16, Q8_0, Q4_0 or Q4_K.
//!
//! f32 matrices (weights, repacked at load, and the KV cache) are held in panels of 16 rows and
//! multiplied by their own driver and kernels ([`panels`]). The other types share the driver
//! below. It quantises the activations once per product for the block
//! formats (see [`acts`]), splits the weight rows into chunks across the rayon pool, and within
//! a chunk walks blocks of activation rows, so that a chunk's weights and a block of activations
//! stay in cache while a kernel's register tile (a few weight rows × a few activation rows)
//! reads each weight once per tile: at decode (n ≤ 8) every weight byte comes from memory once
//! per product however many sequences there are, and at prefill the weights are reused from
//! cache across the activation rows.
//!
//! Kernels are picked at run time: AVX-512 with VNNI, or AVX2 + FMA + F16C, on x86-64 ([`x86`]),
//! else the portable
//! [`scalar`] loops, which are also the reference the fast ones are tested against.

/// `match $n` over the listed values, binding the one matched as the constant `$T`, so that a
/// kernel's register tile has a size fixed at compile time; the caller keeps `$n` among them.
#[cfg(target_arch = "x86_64")]
macro_rules! with_const {
    ($n:expr, $T:ident => $body:expr; $($k:literal)+) => {
        match $n {
            $($k => {
                const $T: usize = $k;
                $body
            })+
            n => unreachable!("no register tile of {n}"),
        }
    };
}

pub(crate) mod acts;
pub(crate) mod exp;
pub(crate) mod panels;
pub(crate) mod scalar;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_panels;

use crate::gguf::TensorType;
use acts::QuantizedActs;
use rayon::prelude::*;
use std::ops::Range;
use std::sync::OnceLock;

/// Which kernels run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Scalar,
    /// x86-64 with AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// x86-64 with AVX2, FMA, F16C, AVX-512 F/BW/VL and VNNI.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Backend {
    /// The fastest kernels this CPU runs (checked once), or slower ones named by the
    /// environment variable `MINICPM_MATMUL_KERNELS` (`scalar`, `avx2`) for comparisons.
    pub fn detect() -> Backend {
        static BEST: OnceLock<Backend> = OnceLock::new();
        *BEST.get_or_init(|| {
            let all = Backend::available();
            let best = *all.last().expect("scalar is always available");
            let asked = std::env::var("MINICPM_MATMUL_KERNELS").ok();
            asked
                .and_then(|name| all.into_iter().find(|b| b.name() == name))
                .unwrap_or(best)
        })
    }

    /// Every backend this CPU runs, slowest first.
    pub fn available() -> Vec<Backend> {
        #[allow(unused_mut)]
        let mut all = vec![Backend::Scalar];
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
        {
            all.push(Backend::Avx2);
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni")
            {
                all.push(Backend::Avx512);
            }
        }
        all
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => "avx512",
        }
    }
}

/// A product's weights: `rows` rows of `cols` values stored as `ty`, row-major.
pub struct Weights<'a> {
    pub ty: TensorType,
    pub rows: usize,
    pub cols: usize,
    pub bytes: &'a [u8],
}

impl Weights<'_> {
    pub fn row_bytes(&self) -> usize {
        self.bytes.len() / self.rows.max(1)
    }

    pub fn row(&self, r: usize) -> &[u8] {
        let n = self.row_bytes();
        &self.bytes[r * n..(r + 1) * n]
    }
}

/// The activations as the kernels read them: f32 rows for the float types, quantised blocks
/// for the block formats.
pub enum Acts<'a> {
    F32(&'a [f32]),
    Quantized(&'a QuantizedActs),
}

/// The output `[n, rows]`, written by many threads at once, each to its own weight rows.
pub struct Out {
    ptr: *mut f32,
    n: usize,
    rows: usize,
}

// SAFETY: `Out` is a pointer into a `&mut [f32]` that outlives every use (the parallel loop in
// `matmul` ends before the borrow does); threads write disjoint elements (see `Out::set`).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    fn new(out: &mut [f32], n: usize, rows: usize) -> Out {
        assert_eq!(out.len(), n * rows, "output [n, rows]");
        Out {
            ptr: out.as_mut_ptr(),
            n,
            rows,
        }
    }

    /// Writes `out[t, r]`.
    ///
    /// # Safety
    /// No other thread reads or writes `out[t, r]` meanwhile. `matmul` gives each task its own
    /// range of weight rows `r`, and only that task's kernels write those columns.
    #[inline(always)]
    pub unsafe fn set(&self, t: usize, r: usize, v: f32) {
        assert!(t < self.n && r < self.rows, "output index");
        // SAFETY: in bounds (asserted); exclusive by the caller's contract.
        unsafe { self.ptr.add(t * self.rows + r).write(v) }
    }

    /// Writes `out[t, r..r + values.len()]`.
    ///
    /// # Safety
    /// As [`Out::set`], for each of those elements.
    #[inline(always)]
    pub unsafe fn set_run(&self, t: usize, r: usize, values: &[f32]) {
        assert!(t < self.n && r + values.len() <= self.rows, "output run");
        // SAFETY: in bounds (asserted); exclusive by the caller's contract.
        unsafe {
            let dst = self.ptr.add(t * self.rows + r);
            std::ptr::copy_nonoverlapping(values.as_ptr(), dst, values.len())
        }
    }
}

/// `out[t, r] = Σ_c x[t, c] · W[r, c]`, `x` `[n, cols]`, `out` `[n, rows]`, on the current rayon
/// pool with `backend`'s kernels, for row-major weights of any type but f32 (which
/// [`panels::matmul`] multiplies).
pub fn matmul(backend: Backend, w: &Weights, x: &[f32], n: usize, out: &mut [f32]) {
    assert!(
        w.ty != TensorType::F32,
        "f32 weights are multiplied in panels"
    );
    assert_eq!(x.len(), n * w.cols, "matmul input");
    assert_eq!(out.len(), n * w.rows, "matmul output");
    if n == 0 || w.rows == 0 {
        return;
    }
    let quantized = matches!(w.ty, TensorType::Quant(_)).then(|| QuantizedActs::new(x, n, w.cols));
    let acts = match &quantized {
        Some(q) => Acts::Quantized(q),
        None => Acts::F32(x),
    };
    let target = Out::new(out, n, w.rows);
    let chunk = row_chunk(w.rows);
    let act_block = act_block(w.cols, n);
    (0..w.rows.div_ceil(chunk)).into_par_iter().for_each(|c| {
        let rows = c * chunk..((c + 1) * chunk).min(w.rows);
        for t0 in (0..n).step_by(act_block) {
            let ts = t0..(t0 + act_block).min(n);
            panel(backend, w, &acts, rows.clone(), ts, &target);
        }
    });
}

/// Every `out[t, r]` for `r` in `rows` and `t` in `ts`.
fn panel(
    backend: Backend,
    w: &Weights,
    acts: &Acts,
    rows: Range<usize>,
    ts: Range<usize>,
    out: &Out,
) {
    match backend {
        Backend::Scalar => scalar::panel(w, acts, rows, ts, out),
        // SAFETY: `Backend::available` offers these only where the CPU has their features
        // (code that names a backend itself, as tests do, takes it from that list).
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 => unsafe { x86::panel_avx2(w, acts, rows, ts, out) },
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => unsafe { x86::panel_avx512(w, acts, rows, ts, out) },
    }
}

/// Weight rows per task: at least 8 tasks per thread so that uneven progress evens out, at
/// most 64 rows, which keep a task's weights (64 × 3840 f16 = 480 KiB at the widest) in L2
/// while it walks the activation blocks; a multiple of 16 so that register tiles stay whole.
fn row_chunk(rows: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    rows.div_ceil(threads * 8)
        .next_multiple_of(16)
        .clamp(16, 64)
}

/// Activation rows per block: all of them at decode; at prefill as many as fit in about
/// 192 KiB of f32, a multiple of 12 (every tile height divides it).
fn act_block(cols: usize, n: usize) -> usize {
    if n <= 16 {
        return n;
    }
    ((192 * 1024 / (4 * cols.max(1))) / 12 * 12).max(12)
}
