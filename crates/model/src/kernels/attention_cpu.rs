//! RoPE + causal softmax attention, forward and backward, on host memory.
//!
//! Inputs keep the projections' natural layout, `q [batch, len, heads, head_dim]` and `k`, `v`
//! `[batch, len, kv_heads, head_dim]`, and the output has q's layout, so no transposes are needed
//! around the kernel. Each (batch, KV head) pair is one task on the thread pool: it rotates its
//! queries and keys into scratch rows, then works through blocks of query rows, multiplying only
//! against the keys at or before the block (the causal triangle) with the `gemm` crate.
//!
//! Memory is linear in the length, as in flash attention: a task holds the scores of one block of
//! query rows at a time (`BLOCK x len`), and the forward pass keeps only each row's softmax
//! statistics (its maximum score and the reciprocal of its sum of exponentials, `[batch, heads,
//! len, 2]`). The backward pass recomputes each block's probabilities from them with the same
//! operations in the same order, so they are bit-identical to the forward pass's. Keeping the
//! probabilities instead, `[batch, heads, len, len]`, saved nothing measurable even at 256
//! tokens, where they were a tenth of bench-d512's peak memory (docs/PERFORMANCE.md, "Memory
//! reused, and attention's probabilities recomputed").

use super::strided_gemm::{gemm, View};
use super::{vector_math, zeros};
use rayon::prelude::*;

/// Query rows per block: the causal triangle is covered by rectangles this tall.
const BLOCK: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub batch: usize,
    pub len: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl Dims {
    fn group(&self) -> usize {
        self.heads / self.kv_heads
    }
    fn q_row(&self) -> usize {
        self.heads * self.head_dim
    }
    fn kv_row(&self) -> usize {
        self.kv_heads * self.head_dim
    }
    /// Offset of `x[b, 0, head, 0]` in a `[batch, len, n_heads, head_dim]` tensor.
    fn base(&self, b: usize, head: usize, n_heads: usize) -> usize {
        (b * self.len * n_heads + head) * self.head_dim
    }
}

/// RoPE tables: `cos` and `sin`, `[len, head_dim]` or one table per batch row
/// `[batch * len, head_dim]`, in HF's rotate-half layout; and for rows that pack several
/// sequences, `first_key [batch * len]`, the first key each query may see (empty: 0).
pub struct Rope<'a> {
    pub cos: &'a [f32],
    pub sin: &'a [f32],
    pub first_key: &'a [usize],
}

impl<'a> Rope<'a> {
    /// The tables of batch row `b`.
    fn row(&self, b: usize, len: usize, hd: usize) -> Rope<'a> {
        let table = |t: &'a [f32]| match t.len() > len * hd {
            true => &t[b * len * hd..][..len * hd],
            false => t,
        };
        Rope {
            cos: table(self.cos),
            sin: table(self.sin),
            first_key: match self.first_key.is_empty() {
                true => &[],
                false => &self.first_key[b * len..][..len],
            },
        }
    }

    /// The first key query `i` of this row may see.
    fn first(&self, i: usize) -> usize {
        self.first_key.get(i).copied().unwrap_or(0)
    }

    /// `x * cos + rotate_half(x) * sin` for the `len` rows of one head, read with `row_stride`,
    /// written contiguously to `out [len, head_dim]`.
    fn rotate(&self, x: &[f32], offset: usize, row_stride: usize, hd: usize, out: &mut [f32]) {
        let half = hd / 2;
        for (i, dst) in out.chunks_exact_mut(hd).enumerate() {
            let src = &x[offset + i * row_stride..][..hd];
            let (c, s) = (&self.cos[i * hd..][..hd], &self.sin[i * hd..][..hd]);
            for d in 0..half {
                dst[d] = src[d] * c[d] - src[d + half] * s[d];
                dst[d + half] = src[d + half] * c[d + half] + src[d] * s[d + half];
            }
        }
    }

    /// The transpose of [`Rope::rotate`]: the gradient of the unrotated rows from that of the
    /// rotated ones, `g [len, head_dim]`, written with `row_stride` from `offset` into `out`.
    fn unrotate(&self, g: &[f32], hd: usize, out: &mut [f32], offset: usize, row_stride: usize) {
        let half = hd / 2;
        for (i, src) in g.chunks_exact(hd).enumerate() {
            let dst = &mut out[offset + i * row_stride..][..hd];
            let (c, s) = (&self.cos[i * hd..][..hd], &self.sin[i * hd..][..hd]);
            for d in 0..half {
                dst[d] = src[d] * c[d] + src[d + half] * s[d + half];
                dst[d + half] = src[d + half] * c[d + half] - src[d] * s[d];
            }
        }
    }
}

/// A pointer that rayon tasks may share because each writes a disjoint part of the buffer.
#[derive(Clone, Copy)]
struct Shared(*mut f32, usize);
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    fn new(v: &mut [f32]) -> Self {
        Shared(v.as_mut_ptr(), v.len())
    }
    /// # Safety
    /// Concurrent callers must only touch disjoint elements.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self) -> &mut [f32] {
        std::slice::from_raw_parts_mut(self.0, self.1)
    }
}

fn blocks(len: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..len)
        .step_by(BLOCK)
        .map(move |r0| (r0, BLOCK.min(len - r0)))
}

/// Per query row, what the backward pass needs to recompute its probabilities: the row's maximum
/// score and the reciprocal of the sum of its exponentials.
pub const STATS: usize = 2;

/// Returns the output `[batch, len, heads, head_dim]` and what the backward pass needs: each
/// query row's softmax statistics, `[batch, heads, len, STATS]`.
pub fn forward(
    dims: Dims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    rope: &Rope,
    scale: f32,
) -> (Vec<f32>, Vec<f32>) {
    let Dims {
        batch,
        len,
        heads,
        kv_heads,
        head_dim: hd,
    } = dims;
    let mut out = zeros(batch * len * heads * hd);
    let mut stats = vec![0f32; batch * heads * len * STATS];
    let ptrs = (Shared::new(&mut out), Shared::new(&mut stats));
    (0..batch * kv_heads).into_par_iter().for_each(|task| {
        let (b, kvh) = (task / kv_heads, task % kv_heads);
        // SAFETY: this task writes only the output rows and statistics of its own heads.
        let (out, stats) = unsafe { (ptrs.0.slice(), ptrs.1.slice()) };
        let rope = rope.row(b, len, hd);
        let mut kr = vec![0f32; len * hd];
        let mut qr = vec![0f32; len * hd];
        let mut p = vec![0f32; BLOCK.min(len) * len];
        rope.rotate(k, dims.base(b, kvh, kv_heads), dims.kv_row(), hd, &mut kr);
        let v_base = dims.base(b, kvh, kv_heads);
        for h in kvh * dims.group()..(kvh + 1) * dims.group() {
            rope.rotate(q, dims.base(b, h, heads), dims.q_row(), hd, &mut qr);
            let s_base = (b * heads + h) * len * STATS;
            for (r0, rows) in blocks(len) {
                let keys = r0 + rows;
                block_scores(rows, keys, len, &qr, &kr, r0, hd, scale, &mut p);
                for i in 0..rows {
                    let row = &mut p[i * len..][..keys];
                    let (max, inv_sum) = causal_softmax(row, rope.first(r0 + i), r0 + i + 1);
                    stats[s_base + (r0 + i) * STATS..][..STATS].copy_from_slice(&[max, inv_sum]);
                }
                gemm(
                    rows,
                    hd,
                    keys,
                    out,
                    dims.base(b, h, heads) + r0 * dims.q_row(),
                    dims.q_row(),
                    false,
                    View::rows(&p, 0, len),
                    View::rows(v, v_base, dims.kv_row()),
                    1.0,
                );
            }
        }
    });
    (out, stats)
}

/// The scaled scores `Qr[r0..r0+rows] Kr[..keys]^T` into the first `rows` rows of `p` (row
/// stride `len`). The forward and backward passes both call this, so their scores agree bit for
/// bit.
#[allow(clippy::too_many_arguments)]
fn block_scores(
    rows: usize,
    keys: usize,
    len: usize,
    qr: &[f32],
    kr: &[f32],
    r0: usize,
    hd: usize,
    scale: f32,
    p: &mut [f32],
) {
    gemm(
        rows,
        keys,
        hd,
        p,
        0,
        len,
        false,
        View::rows(qr, r0 * hd, hd),
        View::rows(kr, 0, hd).t(),
        scale,
    );
}

/// Softmax over the scores `first..end` of `row`; the rest (future keys, and keys of an earlier
/// sequence packed in the same row) become 0. Returns the maximum and `1 / sum` it used.
fn causal_softmax(row: &mut [f32], first: usize, end: usize) -> (f32, f32) {
    let (before, row) = row.split_at_mut(first);
    before.fill(0.0);
    let (live, masked) = row.split_at_mut(end - first);
    let max = vector_math::max(live);
    let inv_sum = 1.0 / vector_math::exp_shifted_sum(live, max);
    vector_math::scale(live, inv_sum);
    masked.fill(0.0);
    (max, inv_sum)
}

/// [`causal_softmax`] again from its statistics: the same exponentials and the same product.
fn recomputed_softmax(row: &mut [f32], first: usize, end: usize, max: f32, inv_sum: f32) {
    let (before, row) = row.split_at_mut(first);
    before.fill(0.0);
    let (live, masked) = row.split_at_mut(end - first);
    vector_math::exp_shifted_sum(live, max);
    vector_math::scale(live, inv_sum);
    masked.fill(0.0);
}

/// Gradients `(dq, dk, dv)` in the layouts of `q`, `k` and `v`, given the softmax statistics
/// [`forward`] kept and the output gradient `grad_out` (layout of the output).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dims: Dims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    rope: &Rope,
    scale: f32,
    stats: &[f32],
    grad_out: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let Dims {
        batch,
        len,
        heads,
        kv_heads,
        head_dim: hd,
    } = dims;
    let mut dq = zeros(q.len());
    let mut dk = zeros(k.len());
    let mut dv = zeros(v.len());
    let ptrs = (
        Shared::new(&mut dq),
        Shared::new(&mut dk),
        Shared::new(&mut dv),
    );
    (0..batch * kv_heads).into_par_iter().for_each(|task| {
        let (b, kvh) = (task / kv_heads, task % kv_heads);
        // SAFETY: this task writes only the rows of its own query heads and KV head.
        let (dq, dk, dv) = unsafe { (ptrs.0.slice(), ptrs.1.slice(), ptrs.2.slice()) };
        let rope = rope.row(b, len, hd);
        let mut kr = vec![0f32; len * hd];
        let mut qr = vec![0f32; len * hd];
        let mut dqr = vec![0f32; len * hd];
        // Accumulated over the group's query heads and the query blocks, so they start at zero.
        let mut dkr = vec![0f32; len * hd];
        let mut p = vec![0f32; BLOCK.min(len) * len];
        let mut ds = vec![0f32; BLOCK.min(len) * len];
        let kv_base = dims.base(b, kvh, kv_heads);
        rope.rotate(k, kv_base, dims.kv_row(), hd, &mut kr);
        for h in kvh * dims.group()..(kvh + 1) * dims.group() {
            let q_base = dims.base(b, h, heads);
            rope.rotate(q, q_base, dims.q_row(), hd, &mut qr);
            let s_base = (b * heads + h) * len * STATS;
            for (r0, rows) in blocks(len) {
                let keys = r0 + rows;
                block_scores(rows, keys, len, &qr, &kr, r0, hd, scale, &mut p);
                for i in 0..rows {
                    let [max, inv_sum] = stats[s_base + (r0 + i) * STATS..][..STATS] else {
                        unreachable!("STATS values per row")
                    };
                    let row = &mut p[i * len..][..keys];
                    recomputed_softmax(row, rope.first(r0 + i), r0 + i + 1, max, inv_sum);
                }
                let pv = View::rows(&p, 0, len);
                let g = View::rows(grad_out, q_base + r0 * dims.q_row(), dims.q_row());
                // dV[..keys] += P^T dO
                gemm(
                    keys,
                    hd,
                    rows,
                    dv,
                    kv_base,
                    dims.kv_row(),
                    true,
                    pv.t(),
                    g,
                    1.0,
                );
                // dP = dO V^T, then dS = P * (dP - rowsum(P * dP)) * scale
                gemm(
                    rows,
                    keys,
                    hd,
                    &mut ds,
                    0,
                    len,
                    false,
                    g,
                    View::rows(v, kv_base, dims.kv_row()).t(),
                    1.0,
                );
                for i in 0..rows {
                    let pr = &p[i * len..][..keys];
                    let dr = &mut ds[i * len..][..keys];
                    let dot: f32 = pr.iter().zip(dr.iter()).map(|(a, b)| a * b).sum();
                    for (d, &pv) in dr.iter_mut().zip(pr) {
                        *d = pv * (*d - dot) * scale;
                    }
                }
                // dQr[block] = dS K ; dKr[..keys] += dS^T Qr[block]
                gemm(
                    rows,
                    hd,
                    keys,
                    &mut dqr,
                    r0 * hd,
                    hd,
                    false,
                    View::rows(&ds, 0, len),
                    View::rows(&kr, 0, hd),
                    1.0,
                );
                gemm(
                    keys,
                    hd,
                    rows,
                    &mut dkr,
                    0,
                    hd,
                    true,
                    View::rows(&ds, 0, len).t(),
                    View::rows(&qr, r0 * hd, hd),
                    1.0,
                );
            }
            rope.unrotate(&dqr, hd, dq, q_base, dims.q_row());
        }
        rope.unrotate(&dkr, hd, dk, kv_base, dims.kv_row());
    });
    (dq, dk, dv)
}
