//! A thin, safe-to-call wrapper over the `gemm` crate (the GEMM that burn's CPU backend uses), for
//! the small per-head products of the fused kernels, which address rows of larger tensors through
//! strides instead of copying them out.

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
    if m == 0 || n == 0 {
        return;
    }
    let dst = View::rows(&[], dst_offset, dst_row_stride);
    assert!(
        a.fits(m, k) && b.fits(k, n) && View { data: out, ..dst }.fits(m, n),
        "gemm operands out of bounds"
    );
    // SAFETY: the assertion above keeps every addressed element inside its slice, `out` is
    // borrowed mutably so it aliases neither input, and the call runs on this thread only.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr().add(dst_offset),
            1,
            dst_row_stride as isize,
            accumulate,
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
            gemm::Parallelism::None,
        );
    }
}
