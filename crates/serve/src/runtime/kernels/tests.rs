//! The SIMD kernels against the scalar reference, the block formats against the exact product
//! of what they multiply, and the thread count's (lack of) influence.

use super::acts::{QuantizedActs, QBLOCK};
use super::Backend;
use crate::gguf::TensorType;
use crate::quant::QuantType;
use crate::runtime::Matrix;
use crate::synthetic::uniform;

const FLOATS: [TensorType; 3] = [TensorType::F32, TensorType::F16, TensorType::Bf16];
const BLOCKS: [QuantType; 3] = [QuantType::Q8_0, QuantType::Q4_0, QuantType::Q4K];

/// `(rows, cols)` per type: row counts that leave partial register tiles and tasks, and for the
/// float types column counts that are not a multiple of the 8-lane vectors (37, 300).
fn shapes(ty: TensorType) -> Vec<(usize, usize)> {
    match ty {
        TensorType::Quant(QuantType::Q4K) => vec![(13, 256), (37, 512)],
        TensorType::Quant(_) => vec![(13, 96), (37, 160)],
        _ => vec![(13, 37), (37, 96), (6, 300)],
    }
}

fn all_types() -> Vec<TensorType> {
    FLOATS
        .into_iter()
        .chain(BLOCKS.into_iter().map(TensorType::Quant))
        .collect()
}

fn product(backend: Backend, m: &Matrix, x: &[f32], n: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; n * m.rows()];
    m.matmul_with(backend, x, n, &mut out);
    out
}

/// The activations a kernel multiplies: `x` itself for the float types, its quantised blocks'
/// values for the block formats.
fn effective_acts(ty: TensorType, x: &[f32], n: usize, cols: usize) -> Vec<f32> {
    match ty {
        TensorType::Quant(_) => {
            let q = QuantizedActs::new(x, n, cols);
            (0..n).flat_map(|t| q.dequantized_row(t)).collect()
        }
        _ => x.to_vec(),
    }
}

/// `Σ_c |a_c| · 2 max_c |w_c|`: a size for the terms of one output, the two covering Q4_K's
/// scale and minimum, each at most about the largest weight. Rounding differences of an f32 sum
/// of `cols` such terms stay below `cols · 2^-24` of it; 1e-4 is that for a few hundred columns
/// with room to spare, while a wrong code, scale or block anywhere moves a result by a whole
/// term, far more.
fn magnitude(w: &[f32], a: &[f32]) -> f64 {
    let wmax = w.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    a.iter().map(|v| v.abs() as f64).sum::<f64>() * 2.0 * wmax + 1e-30
}

/// Both backends against the f64 product of the decoded weights and the activations the
/// kernels multiply (quantised and back for the block formats), for every type, batch size and
/// shape; and the SIMD kernels against the scalar ones.
#[test]
fn every_kernel_equals_the_product_of_what_it_multiplies() {
    let backends = Backend::available();
    for ty in all_types() {
        for (rows, cols) in shapes(ty) {
            let m = Matrix::from_f32(rows, cols, &uniform(rows * cols, 11), ty).unwrap();
            let dense = m.to_f32();
            for n in [1, 3, 8, 33] {
                let x = uniform(n * cols, 100 + n as u32);
                let a = effective_acts(ty, &x, n, cols);
                let outs: Vec<Vec<f32>> = backends.iter().map(|&b| product(b, &m, &x, n)).collect();
                for t in 0..n {
                    let at = &a[t * cols..(t + 1) * cols];
                    for r in 0..rows {
                        let wr = &dense[r * cols..(r + 1) * cols];
                        let want: f64 = wr.iter().zip(at).map(|(&w, &a)| w as f64 * a as f64).sum();
                        let tol = 1e-4 * magnitude(wr, at);
                        for (b, out) in backends.iter().zip(&outs) {
                            let got = out[t * rows + r] as f64;
                            assert!(
                                (got - want).abs() <= tol,
                                "{} {ty:?} [{rows}x{cols}] n={n} [{t},{r}]: {got} vs {want} (tol {tol})",
                                b.name()
                            );
                        }
                        let (first, last) =
                            (outs[0][t * rows + r], outs[outs.len() - 1][t * rows + r]);
                        assert!(
                            ((first - last) as f64).abs() <= tol,
                            "scalar vs simd {ty:?} n={n} [{t},{r}]: {first} vs {last}"
                        );
                    }
                }
            }
        }
    }
}

/// The block formats against the f32 activations: quantising an activation block moves each
/// value by at most half its step `max|x| / 127 / 2`, so a result moves by at most
/// `Σ_blocks step/2 · Σ |w|` over the block, plus the rounding allowance above.
#[test]
fn block_formats_stay_within_the_activation_rounding_of_the_f32_product() {
    for backend in Backend::available() {
        for q in BLOCKS {
            let ty = TensorType::Quant(q);
            for (rows, cols) in shapes(ty) {
                let m = Matrix::from_f32(rows, cols, &uniform(rows * cols, 5), ty).unwrap();
                let dense = m.to_f32();
                for n in [1, 8, 33] {
                    let x = uniform(n * cols, 7 + n as u32);
                    let out = product(backend, &m, &x, n);
                    for t in 0..n {
                        let xt = &x[t * cols..(t + 1) * cols];
                        for r in 0..rows {
                            let wr = &dense[r * cols..(r + 1) * cols];
                            let want: f64 =
                                wr.iter().zip(xt).map(|(&w, &a)| w as f64 * a as f64).sum();
                            let rounding: f64 = xt
                                .chunks(QBLOCK)
                                .zip(wr.chunks(QBLOCK))
                                .map(|(xb, wb)| {
                                    let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
                                    amax / 127.0 / 2.0
                                        * wb.iter().map(|w| w.abs() as f64).sum::<f64>()
                                })
                                .sum();
                            let tol = rounding * 1.001 + 1e-4 * magnitude(wr, xt);
                            let got = out[t * rows + r] as f64;
                            assert!(
                                (got - want).abs() <= tol,
                                "{} {ty:?} n={n} [{t},{r}]: {got} vs {want} (tol {tol})",
                                backend.name()
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The same bits whatever the pool's size: each output is one tile's accumulation, and tiles
/// never straddle two tasks' rows in a way that changes the order of its additions.
#[test]
fn results_do_not_depend_on_the_thread_count() {
    let pool = |k| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(k)
            .build()
            .unwrap()
    };
    let (one, two, three) = (pool(1), pool(2), pool(3));
    for ty in all_types() {
        let (rows, cols) = (203, 512);
        let m = Matrix::from_f32(rows, cols, &uniform(rows * cols, 3), ty).unwrap();
        for n in [1, 33] {
            let x = uniform(n * cols, 9);
            let run = |p: &rayon::ThreadPool| {
                let mut out = vec![0f32; n * rows];
                p.install(|| m.matmul(&x, n, &mut out));
                out
            };
            let want = run(&one);
            for got in [run(&two), run(&three)] {
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{ty:?} n={n}: results differ with the thread count"
                );
            }
        }
    }
}

/// f32 weights in panels: every backend sums each output as one chain of fused multiply-adds
/// along the row, so all agree to the bit with the scalar reference, whatever the batch and
/// however its rows fall into tiles; and packing keeps every weight.
#[test]
fn f32_panels_agree_to_the_bit_across_backends_and_batches() {
    // 5 panels, the last partial (4-panel groups and a single one), and an odd row length.
    let (rows, cols) = (77, 45);
    let values = uniform(rows * cols, 21);
    let m = Matrix::from_f32(rows, cols, &values, TensorType::F32).unwrap();
    assert_eq!(m.to_f32(), values);
    let x = uniform(29 * cols, 22);
    let alone: Vec<Vec<f32>> = (0..29)
        .map(|t| product(Backend::Scalar, &m, &x[t * cols..(t + 1) * cols], 1))
        .collect();
    for backend in Backend::available() {
        for n in [1, 2, 3, 4, 5, 8, 12, 13, 16, 29] {
            let out = product(backend, &m, &x[..n * cols], n);
            for t in 0..n {
                let same = out[t * rows..(t + 1) * rows]
                    .iter()
                    .zip(&alone[t])
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "{} n={n} row {t} differs from the scalar product alone",
                    backend.name()
                );
            }
        }
    }
}

/// Activation codes round half to even: with `max|x| = 127` the step is exactly 1, so the
/// values below land on ties.
#[test]
fn activation_codes_round_half_to_even() {
    let mut x = vec![0f32; QBLOCK];
    x[..8].copy_from_slice(&[127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.4]);
    let q = QuantizedActs::new(&x, 1, QBLOCK);
    assert_eq!(q.row_scales(0)[0], 1.0);
    assert_eq!(&q.row_codes(0)[..8], &[127, 0, 2, 2, 0, -2, -2, 3]);
    assert_eq!(q.row_sums(0)[0], (127 + 2 + 2 - 2 - 2 + 3) as f32);
}
