//! The panel kernels (see [`super::panels`]) for x86-64: per weight column, one aligned load per
//! panel (16 rows), one broadcast per activation row, and a fused multiply-add into each
//! (panel, activation row) accumulator. AVX-512 holds a tile of 2 panels × up to 12 rows (or 4
//! panels × up to 3) in at most 24 of its 32 registers; AVX2 one panel (two 8-lane halves) × up
//! to 6 rows in 12 of its 16.

// Tiles are indexed by (panel p, activation row t) throughout; index loops say that more
// plainly than iterator chains over two arrays at once.
#![allow(clippy::needless_range_loop)]

use super::panels::{store, ActTiles, Column, Panels, LANES};
use super::Out;
use std::arch::x86_64::*;
use std::ops::Range;

/// Activation rows per AVX-512 tile.
pub const AVX512_HEIGHT: usize = 12;
/// Activation rows per AVX2 tile.
pub const AVX2_HEIGHT: usize = 6;

/// Every output of `panels`' rows and `tiles`' activation rows, with AVX-512.
///
/// # Safety
/// The CPU has AVX-512 F; `panels` belong to the calling task.
#[target_feature(enable = "avx512f")]
pub unsafe fn avx512(
    w: &Panels,
    panels: Range<usize>,
    acts: &ActTiles,
    tiles: Range<usize>,
    out: &Out,
) {
    // Up to 4 panels meet each activation tile in turn while they stay in cache; a tile of up
    // to 3 rows takes all 4 at once (at least 4 independent sums in flight to cover the
    // multiply-add latency), taller ones 2 at a time.
    let mut p = panels.start;
    while p < panels.end {
        let group = p..(p + 4).min(panels.end);
        for k in tiles.clone() {
            let (tile, x) = (acts.tiles[k], acts.tile(k));
            with_const!(tile.height, T => {
                let widest = if T <= 3 { 4 } else { 2 };
                let mut q = group.start;
                while q < group.end {
                    let width = widest.min(group.end - q);
                    match width {
                        1 => tile512::<1, T>(w, q, x, tile.t0, out),
                        2 => tile512::<2, T>(w, q, x, tile.t0, out),
                        3 => tile512::<3, T>(w, q, x, tile.t0, out),
                        _ => tile512::<4, T>(w, q, x, tile.t0, out),
                    }
                    q += width;
                }
            }; 1 2 3 4 5 6 7 8 9 10 11 12);
        }
        p = group.end;
    }
}

/// Panels `p0..p0 + P` times the `T` activation rows of tile `x` (rows `t0..`), stored.
#[inline(always)]
unsafe fn tile512<const P: usize, const T: usize>(
    panels: &Panels,
    p0: usize,
    x: *const f32,
    t0: usize,
    out: &Out,
) {
    let w: [*const Column; P] = std::array::from_fn(|p| panels.panel(p0 + p));
    let mut acc = [[_mm512_setzero_ps(); T]; P];
    for c in 0..panels.cols {
        let wv: [__m512; P] = std::array::from_fn(|p| _mm512_load_ps(w[p].add(c) as *const f32));
        for t in 0..T {
            let xv = _mm512_set1_ps(*x.add(c * T + t));
            for p in 0..P {
                acc[p][t] = _mm512_fmadd_ps(wv[p], xv, acc[p][t]);
            }
        }
    }
    let mut res = [[[0f32; LANES]; T]; P];
    for p in 0..P {
        for t in 0..T {
            _mm512_storeu_ps(res[p][t].as_mut_ptr(), acc[p][t]);
        }
    }
    store(&res, panels, p0, t0, out)
}

/// The same with AVX2 and FMA.
///
/// # Safety
/// The CPU has AVX2 and FMA; `panels` belong to the calling task.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn avx2(
    w: &Panels,
    panels: Range<usize>,
    acts: &ActTiles,
    tiles: Range<usize>,
    out: &Out,
) {
    for p in panels {
        for k in tiles.clone() {
            let (tile, x) = (acts.tiles[k], acts.tile(k));
            with_const!(tile.height, T => {
                let res = tile256::<T>(w.panel(p), x, w.cols);
                store(&[res], w, p, tile.t0, out)
            }; 1 2 3 4 5 6);
        }
    }
}

#[inline(always)]
unsafe fn tile256<const T: usize>(
    w: *const Column,
    x: *const f32,
    cols: usize,
) -> [[f32; LANES]; T] {
    let mut lo = [_mm256_setzero_ps(); T];
    let mut hi = [_mm256_setzero_ps(); T];
    for c in 0..cols {
        let column = w.add(c) as *const f32;
        let (wl, wh) = (_mm256_load_ps(column), _mm256_load_ps(column.add(8)));
        for t in 0..T {
            let xv = _mm256_set1_ps(*x.add(c * T + t));
            lo[t] = _mm256_fmadd_ps(wl, xv, lo[t]);
            hi[t] = _mm256_fmadd_ps(wh, xv, hi[t]);
        }
    }
    let mut res = [[0f32; LANES]; T];
    for t in 0..T {
        _mm256_storeu_ps(res[t].as_mut_ptr(), lo[t]);
        _mm256_storeu_ps(res[t].as_mut_ptr().add(8), hi[t]);
    }
    res
}
