//! f32 weights repacked into panels, and the matrix product over them.
//!
//! A panel holds 16 consecutive weight rows column by column: `panel[c][i] = W[16p + i, c]`
//! (the last panel padded with zero rows). One vector load then brings one column of 16
//! rows, and a register tile of a few panels × a few activation rows accumulates 16 outputs
//! per register with one broadcast activation value per multiply-add. Each output is a single
//! accumulator summed along the row in order, so no horizontal sums end a tile (the row-major
//! kernels in [`super::x86`] end every output with one, a large share of the work at the
//! few-hundred-wide rows of small models), and the result of a sequence does not depend on the
//! batch it shares a product with.
//!
//! The activations are regrouped too: each tile of activation rows is stored column by column
//! (`tile[c][t]`), so a kernel walks one pointer for all its rows.

use super::{Backend, Out};
use rayon::prelude::*;
use std::ops::Range;

/// Rows per panel: one 16-lane vector of f32.
pub const LANES: usize = 16;

/// One column of a panel, aligned so that a 16-lane load never straddles two cache lines.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
pub struct Column(pub [f32; LANES]);

/// Weights `[rows, cols]` in panels of [`LANES`] rows.
pub struct Panels<'a> {
    pub rows: usize,
    pub cols: usize,
    /// Columns from one panel's start to the next: `cols` for a packed matrix, more for a view
    /// of the first columns of wider panels (the values of a KV cache slot filled to `cols`).
    pub stride: usize,
    /// `rows.div_ceil(LANES)` panels, `stride` columns apart.
    pub data: &'a [Column],
}

/// Zeroed columns in an anonymous mapping: page-aligned (more than a column's 64 bytes), and
/// each page committed by the system when first written, so that a KV cache sized for every
/// slot's whole context costs memory for the positions filled (a vector of aligned columns
/// would write every zero at once). Packed weights live in one too.
pub struct ColumnBuf {
    map: memmap2::MmapMut,
    len: usize,
}

impl ColumnBuf {
    pub fn zeroed(len: usize) -> ColumnBuf {
        ColumnBuf::try_zeroed(len).expect("address space for f32 panels")
    }

    /// [`ColumnBuf::zeroed`], or the system's refusal of the address space.
    pub fn try_zeroed(len: usize) -> std::io::Result<ColumnBuf> {
        let bytes = len
            .checked_mul(std::mem::size_of::<Column>())
            .ok_or(std::io::ErrorKind::OutOfMemory)?;
        let map = memmap2::MmapMut::map_anon(bytes.max(1))?;
        Ok(ColumnBuf { map, len })
    }

    pub fn get(&self) -> &[Column] {
        // SAFETY: the mapping holds `len` columns' bytes, page-aligned, zero-filled (a valid
        // column) and only ever written as columns; it lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<Column>(), self.len) }
    }

    pub fn get_mut(&mut self) -> &mut [Column] {
        // SAFETY: as in `get`, borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().cast::<Column>(), self.len) }
    }
}

/// Row-major `values` `[rows, cols]` (`values(r * cols + c)`) in panels.
pub fn pack(rows: usize, cols: usize, values: impl Fn(usize) -> f32 + Sync) -> ColumnBuf {
    let mut buf = ColumnBuf::zeroed(rows.div_ceil(LANES) * cols);
    let out = buf.get_mut();
    out.par_chunks_mut(cols.max(1))
        .enumerate()
        .for_each(|(p, panel)| {
            for i in 0..LANES.min(rows - p * LANES) {
                let r = p * LANES + i;
                for (c, column) in panel.iter_mut().enumerate() {
                    column.0[i] = values(r * cols + c);
                }
            }
        });
    buf
}

impl Panels<'_> {
    /// Row `r`: lane `r % 16` of its panel's columns.
    pub fn row(&self, r: usize, out: &mut [f32]) {
        let panel = &self.data[(r / LANES) * self.stride..][..self.cols];
        for (o, column) in out.iter_mut().zip(panel) {
            *o = column.0[r % LANES];
        }
    }

    fn panels(&self) -> usize {
        self.rows.div_ceil(LANES)
    }

    /// Panel `p`'s first column.
    pub fn panel(&self, p: usize) -> *const Column {
        self.data[p * self.stride..].as_ptr()
    }

    /// Whether `data` holds every panel's columns.
    fn whole(&self) -> bool {
        let panels = self.panels();
        self.stride >= self.cols
            && (panels == 0 || self.data.len() >= (panels - 1) * self.stride + self.cols)
    }
}

/// The activations `[n, cols]` as tiles of consecutive rows, each stored column by column.
pub struct ActTiles {
    /// Each tile's first row, its height, and where it starts in `data`.
    pub tiles: Vec<ActTile>,
    data: Vec<f32>,
}

#[derive(Clone, Copy)]
pub struct ActTile {
    pub t0: usize,
    pub height: usize,
    offset: usize,
}

impl ActTiles {
    /// `n` rows in tiles of at most `max_height`, as even as they come (16 rows in tiles of at
    /// most 12 are two of 8, not 12 and 4).
    pub fn new(x: &[f32], n: usize, cols: usize, max_height: usize) -> ActTiles {
        let count = n.div_ceil(max_height);
        let mut tiles = Vec::with_capacity(count);
        let mut t0 = 0;
        for k in 0..count {
            let height = (n - t0).div_ceil(count - k);
            tiles.push(ActTile {
                t0,
                height,
                offset: t0 * cols,
            });
            t0 += height;
        }
        let mut data = vec![0f32; n * cols];
        for tile in &tiles {
            let dst = &mut data[tile.offset..tile.offset + tile.height * cols];
            for t in 0..tile.height {
                let row = &x[(tile.t0 + t) * cols..(tile.t0 + t + 1) * cols];
                for (c, &v) in row.iter().enumerate() {
                    dst[c * tile.height + t] = v;
                }
            }
        }
        ActTiles { tiles, data }
    }

    /// Tile `k`'s first value: `[cols][height]`.
    pub fn tile(&self, k: usize) -> *const f32 {
        self.data[self.tiles[k].offset..].as_ptr()
    }
}

/// `out[t, r] = Σ_c x[t, c] · W[r, c]`, `x` `[n, cols]`, `out` `[n, rows]`, on the current rayon
/// pool with `backend`'s kernels.
pub fn matmul(backend: Backend, w: &Panels, x: &[f32], n: usize, out: &mut [f32]) {
    matmul_each(backend, &[w], x, n, &mut [out]);
}

/// [`matmul`] of the same activations by each of `ws` into the matching `outs` (q, k and v; gate
/// and up), as one parallel loop: the activations are regrouped once and the threads wake once.
pub fn matmul_each(backend: Backend, ws: &[&Panels], x: &[f32], n: usize, outs: &mut [&mut [f32]]) {
    assert_eq!(ws.len(), outs.len(), "one output per matrix");
    let Some(cols) = ws.first().map(|w| w.cols) else {
        return;
    };
    for (w, out) in ws.iter().zip(outs.iter()) {
        assert_eq!(w.cols, cols, "matrices of one input width");
        assert_eq!(x.len(), n * w.cols, "matmul input");
        assert_eq!(out.len(), n * w.rows, "matmul output");
        assert!(w.whole(), "panels");
    }
    if n == 0 {
        return;
    }
    let acts = ActTiles::new(x, n, cols, tile_height(backend));
    let targets: Vec<Out> = ws
        .iter()
        .zip(outs.iter_mut())
        .map(|(w, out)| Out::new(out, n, w.rows))
        .collect();
    let chunk = panel_chunk(ws.iter().map(|w| w.panels()).sum());
    let tasks: Vec<(usize, Range<usize>)> = ws
        .iter()
        .enumerate()
        .flat_map(|(i, w)| {
            let panels = w.panels();
            (0..panels.div_ceil(chunk)).map(move |c| (i, c * chunk..((c + 1) * chunk).min(panels)))
        })
        .collect();
    let block = act_block(n, cols, &acts);
    tasks.into_par_iter().for_each(|(i, panels)| {
        for k0 in (0..acts.tiles.len()).step_by(block) {
            let tiles = k0..(k0 + block).min(acts.tiles.len());
            run(backend, ws[i], panels.clone(), &acts, tiles, &targets[i]);
        }
    });
}

/// [`matmul`] on the calling thread alone, for products too small to share (one attention head
/// of one sequence).
pub fn product(backend: Backend, w: &Panels, x: &[f32], n: usize, out: &mut [f32]) {
    assert_eq!(x.len(), n * w.cols, "product input");
    assert_eq!(out.len(), n * w.rows, "product output");
    assert!(w.whole(), "panels");
    if n == 0 || w.rows == 0 {
        return;
    }
    let acts = ActTiles::new(x, n, w.cols, tile_height(backend));
    let target = Out::new(out, n, w.rows);
    run(
        backend,
        w,
        0..w.panels(),
        &acts,
        0..acts.tiles.len(),
        &target,
    );
}

/// Every output of `panels`' rows and the activation rows of `tiles`.
fn run(
    backend: Backend,
    w: &Panels,
    panels: Range<usize>,
    acts: &ActTiles,
    tiles: Range<usize>,
    out: &Out,
) {
    match backend {
        Backend::Scalar => scalar(w, panels, acts, tiles, out),
        // SAFETY: `Backend::available` offers these only where the CPU has their features.
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 => unsafe { super::x86_panels::avx2(w, panels, acts, tiles, out) },
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => unsafe { super::x86_panels::avx512(w, panels, acts, tiles, out) },
    }
}

/// Activation rows per tile: as many as the register file holds accumulators for.
fn tile_height(backend: Backend) -> usize {
    match backend {
        Backend::Scalar => 4,
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 => super::x86_panels::AVX2_HEIGHT,
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => super::x86_panels::AVX512_HEIGHT,
    }
}

/// Panels per task: at least 8 tasks per thread so that uneven progress evens out, at most 4
/// panels (64 rows), whose weights stay in L2 while the task walks the activation blocks; even,
/// so that two-panel register tiles stay whole.
fn panel_chunk(panels: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    panels.div_ceil(threads * 8).next_multiple_of(2).clamp(2, 4)
}

/// Activation tiles per block: all of them at decode (up to 16 rows); at prefill as many as fit
/// in about 192 KiB of f32, so a block stays in L2 while a task's panels pass over it.
fn act_block(n: usize, cols: usize, acts: &ActTiles) -> usize {
    let height = acts.tiles[0].height.max(1);
    if n <= 16 {
        return acts.tiles.len();
    }
    (192 * 1024 / (4 * cols.max(1)) / height).max(1)
}

/// Writes a tile's results: `res[p][t]` holds rows `16(p0 + p)..` of activation row `t0 + t`,
/// of which only those below `w.rows` exist.
///
/// # Safety
/// The panels from `p0` belong to the calling task.
#[inline(always)]
pub unsafe fn store<const P: usize, const T: usize>(
    res: &[[[f32; LANES]; T]; P],
    w: &Panels,
    p0: usize,
    t0: usize,
    out: &Out,
) {
    for (p, rows) in res.iter().enumerate() {
        let r0 = (p0 + p) * LANES;
        let len = LANES.min(w.rows - r0);
        for (t, values) in rows.iter().enumerate() {
            out.set_run(t0 + t, r0, &values[..len]);
        }
    }
}

/// The portable kernel, also the reference the SIMD ones are tested against: the same sums in
/// the same order (one accumulator per output, along the row).
fn scalar(w: &Panels, panels: Range<usize>, acts: &ActTiles, tiles: Range<usize>, out: &Out) {
    for p in panels {
        let wp = &w.data[p * w.stride..][..w.cols];
        for k in tiles.clone() {
            let tile = acts.tiles[k];
            let xs = &acts.data[tile.offset..tile.offset + tile.height * w.cols];
            let mut res = vec![[0f32; LANES]; tile.height];
            for c in 0..w.cols {
                for (t, acc) in res.iter_mut().enumerate() {
                    let x = xs[c * tile.height + t];
                    for (i, a) in acc.iter_mut().enumerate() {
                        *a = w_times_x_plus(wp[c].0[i], x, *a);
                    }
                }
            }
            let len = LANES.min(w.rows - p * LANES);
            for (t, acc) in res.iter().enumerate() {
                // SAFETY: panel `p` is in this task's panels.
                unsafe { out.set_run(tile.t0 + t, p * LANES, &acc[..len]) };
            }
        }
    }
}

/// `w · x + acc` rounded once, as the SIMD kernels' fused multiply-add does, so that they
/// agree to the bit.
#[inline(always)]
fn w_times_x_plus(w: f32, x: f32, acc: f32) -> f32 {
    w.mul_add(x, acc)
}
