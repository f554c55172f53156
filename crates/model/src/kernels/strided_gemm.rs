//! A thin, safe-to-call wrapper over the `gemm` crate (the GEMM that burn's CPU backend uses), for
//! the small per-head products of the fused kernels, which address rows of larger tensors through
//! strides instead of copying them out; and the one place that sends a product to the bf16 GEMM
//! ([`bf16_gemm`](super::bf16_gemm)) when its precision says so.

use super::MatmulPrecision;

/// A matrix view: element `(r, c)` is `data[offset + r * row_stride + c * col_stride]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> View<'a> {
    pub fn rows(data: &'a [f32], offset: usize, row_stride: usize) -> Self {
        View {
            data,
            offset,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose of the same elements.
    pub fn t(self) -> Self {
        View {
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element of an `r x c` matrix lies inside `data`.
    fn fits(&self, r: usize, c: usize) -> bool {
        r == 0
            || c == 0
            || self.offset + (r - 1) * self.row_stride + (c - 1) * self.col_stride < self.data.len()
    }
}

/// Products of at least this many multiply-adds are split over the thread pool; smaller ones
/// lose more to synchronisation than they gain (the threshold burn's CPU backend uses too).
const PARALLEL_MULTIPLY_ADDS: usize = 192 * 192 * 192;

/// `dst[m x n] = (accumulate ? dst : 0) + scale * a[m x k] * b[k x n]` on one thread, `dst` given
/// by its offset and row stride in `out` (columns contiguous).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    n: usize,
    k: usize,
    out: &mut [f32],
    dst_offset: usize,
    dst_row_stride: usize,
    accumulate: bool,
    a: View,
    b: View,
    scale: f32,
) {
    let dst = (out, dst_offset, dst_row_stride);
    let f32 = MatmulPrecision::F32;
    into_slice(m, n, k, dst, accumulate, a, b, scale, false, f32);
}

/// [`gemm`] on the thread pool when the product is large enough to split, in `precision`: the
/// training step's full-size products written into part of a larger buffer (the LM head's
/// chunks).
#[allow(clippy::too_many_arguments)]
pub fn gemm_on_pool(
    m: usize,
    n: usize,
    k: usize,
    out: &mut [f32],
    dst_offset: usize,
    dst_row_stride: usize,
    accumulate: bool,
    a: View,
    b: View,
    scale: f32,
    precision: MatmulPrecision,
) {
    let dst = (out, dst_offset, dst_row_stride);
    let parallel = worth_splitting(m, n, k);
    into_slice(m, n, k, dst, accumulate, a, b, scale, parallel, precision);
}

/// [`gemm`] with the destination `(out, offset, row stride)` and the threading given.
#[allow(clippy::too_many_arguments)]
fn into_slice(
    m: usize,
    n: usize,
    k: usize,
    (out, offset, row_stride): (&mut [f32], usize, usize),
    accumulate: bool,
    a: View,
    b: View,
    scale: f32,
    parallel: bool,
    precision: MatmulPrecision,
) {
    if m == 0 || n == 0 {
        return;
    }
    let dst = View::rows(&[], offset, row_stride);
    assert!(
        View { data: out, ..dst }.fits(m, n),
        "gemm destination out of bounds"
    );
    // SAFETY: the destination lies inside `out` (asserted above), which is borrowed mutably so it
    // aliases neither input, and is initialised, so reading it to accumulate is sound.
    unsafe {
        let dst = Dst {
            ptr: out.as_mut_ptr().add(offset),
            row_stride,
            accumulate,
        };
        run(Product::new(m, n, k, a, b, scale), dst, parallel, precision)
    }
}

/// `scale * a[m x k] * b[k x n]` in `precision` as a new row-major matrix, on the thread pool
/// when large enough. The output is written once, by the product itself: no zero-filling pass
/// before it.
pub fn product(
    m: usize,
    n: usize,
    k: usize,
    a: View,
    b: View,
    scale: f32,
    precision: MatmulPrecision,
) -> Vec<f32> {
    let len = m * n;
    if k == 0 {
        return vec![0.0; len];
    }
    let mut out = Vec::with_capacity(len);
    // SAFETY: `out` has room for the `m x n` destination and aliases neither input. Without
    // `accumulate` the product writes every destination element and reads none, so the vector's
    // elements are all initialised when its length is set.
    unsafe {
        let dst = Dst {
            ptr: out.as_mut_ptr(),
            row_stride: n,
            accumulate: false,
        };
        let parallel = worth_splitting(m, n, k);
        run(Product::new(m, n, k, a, b, scale), dst, parallel, precision);
        out.set_len(len);
    }
    out
}

fn worth_splitting(m: usize, n: usize, k: usize) -> bool {
    m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MULTIPLY_ADDS
}

/// One product `scale * a[m x k] * b[k x n]`.
#[derive(Clone, Copy)]
pub struct Product<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: View<'a>,
    pub b: View<'a>,
    pub scale: f32,
}

impl<'a> Product<'a> {
    pub fn new(m: usize, n: usize, k: usize, a: View<'a>, b: View<'a>, scale: f32) -> Self {
        Product {
            m,
            n,
            k,
            a,
            b,
            scale,
        }
    }
}

/// Where a product goes: an `m x n` matrix at `ptr` with row stride `row_stride` (columns
/// contiguous), added to (`accumulate`) or overwritten.
#[derive(Clone, Copy)]
pub struct Dst {
    pub ptr: *mut f32,
    pub row_stride: usize,
    pub accumulate: bool,
}

// SAFETY: a `Dst` is shared only by tasks that write disjoint parts of it ([`run`]'s callers
// vouch for the buffer itself).
unsafe impl Send for Dst {}
unsafe impl Sync for Dst {}

/// The one call into the `gemm` crate, or into the bf16 GEMM; on the thread pool when
/// `parallel`.
///
/// # Safety
/// `dst` must address an `m x n` matrix that aliases neither input and is initialised when it
/// accumulates.
pub(super) unsafe fn run(p: Product, dst: Dst, parallel: bool, precision: MatmulPrecision) {
    let (m, n, k, a, b, scale) = (p.m, p.n, p.k, p.a, p.b, p.scale);
    if m == 0 || n == 0 {
        return;
    }
    assert!(a.fits(m, k) && b.fits(k, n), "gemm operands out of bounds");
    // SAFETY: the operands lie inside their slices (asserted above); the caller vouches for
    // the destination.
    unsafe {
        if precision == MatmulPrecision::Bf16 {
            super::bf16_gemm::run(p, dst, parallel);
            return;
        }
        let parallelism = match parallel {
            true => gemm::Parallelism::Rayon(0),
            false => gemm::Parallelism::None,
        };
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            1,
            dst.row_stride as isize,
            dst.accumulate,
            a.data.as_ptr().add(a.offset),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr().add(b.offset),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}
