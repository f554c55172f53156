//! A weight matrix `[rows, cols]` as the inference runtime holds it: f32 weights repacked in
//! panels of 16 rows (see `kernels::panels`), the other types (f16, bf16 and llama.cpp's block
//! formats) row-major in their stored layout, their bytes owned or mapped from a file. The only
//! operation decoding and prefill need is `matmul`: `out = x · Wᵀ` for a batch of activation
//! rows.

use super::kernels::panels::{self, Column, ColumnBuf, Panels};
use super::kernels::{self, scalar, Backend, Weights};
use crate::gguf::TensorType;
use crate::quant::QuantError;
use half::{bf16, f16};
use std::sync::Arc;

/// Where a matrix's bytes live.
#[derive(Clone)]
enum Bytes {
    Owned(Vec<u8>),
    /// A range of a read-only file mapping (a GGUF or safetensors file), shared by its tensors.
    Mapped {
        map: Arc<memmap2::Mmap>,
        start: usize,
        len: usize,
    },
}

impl Bytes {
    fn get(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Mapped { map, start, len } => &map[*start..*start + *len],
        }
    }

    /// Lets the memory go once the values have been copied elsewhere (repacked): a mapped
    /// range's pages leave the process's resident set, though the file stays mapped for the
    /// tensors that still read it.
    fn release(self) {
        #[cfg(unix)]
        if let Bytes::Mapped { map, start, len } = self {
            // SAFETY: the mapping is a read-only shared mapping of a file, and nothing borrows
            // this range any more; dropping pages only makes a later read of them (a neighbour
            // tensor sharing the first or last page) fault them in again from the file, with
            // the same bytes. A failed advice changes nothing, so its error is ignored.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len)
            };
        }
    }
}

/// How a matrix holds its values.
#[derive(Clone)]
enum Storage {
    /// Row-major, in its type's layout.
    Rows(Bytes),
    /// f32 in panels, packed once at load.
    Panels(Arc<ColumnBuf>),
}

#[derive(Clone)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    ty: TensorType,
    storage: Storage,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MatrixError {
    #[error(transparent)]
    Quant(#[from] QuantError),
    #[error("{ty:?} [{rows}, {cols}] needs {want} bytes, got {got}")]
    Size {
        ty: TensorType,
        rows: usize,
        cols: usize,
        want: usize,
        got: usize,
    },
}

impl Matrix {
    /// `values` (row-major) stored as `ty`, quantising each row for the block formats.
    pub fn from_f32(
        rows: usize,
        cols: usize,
        values: &[f32],
        ty: TensorType,
    ) -> Result<Matrix, MatrixError> {
        assert_eq!(values.len(), rows * cols, "matrix values");
        let bytes: Vec<u8> = match ty {
            TensorType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            TensorType::F16 => values
                .iter()
                .flat_map(|v| f16::from_f32(*v).to_le_bytes())
                .collect(),
            TensorType::Bf16 => values
                .iter()
                .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
                .collect(),
            TensorType::Quant(q) => {
                let mut out = Vec::new();
                for row in values.chunks_exact(cols.max(1)) {
                    out.extend(q.quantize(row)?);
                }
                out
            }
        };
        Matrix::from_bytes(rows, cols, ty, bytes)
    }

    /// A matrix over bytes already in `ty`'s layout (read from a file).
    pub fn from_bytes(
        rows: usize,
        cols: usize,
        ty: TensorType,
        bytes: Vec<u8>,
    ) -> Result<Matrix, MatrixError> {
        check_size(rows, cols, ty, bytes.len())?;
        Ok(Matrix::stored(rows, cols, ty, Bytes::Owned(bytes)))
    }

    /// A matrix over `len` bytes of a file mapping from `start`.
    pub fn mapped(
        rows: usize,
        cols: usize,
        ty: TensorType,
        map: Arc<memmap2::Mmap>,
        start: usize,
        len: usize,
    ) -> Result<Matrix, MatrixError> {
        check_size(rows, cols, ty, len)?;
        assert!(start + len <= map.len(), "mapped range inside the file");
        Ok(Matrix::stored(
            rows,
            cols,
            ty,
            Bytes::Mapped { map, start, len },
        ))
    }

    /// f32 bytes repacked in panels, the other types kept as they are.
    fn stored(rows: usize, cols: usize, ty: TensorType, bytes: Bytes) -> Matrix {
        let storage = match ty {
            TensorType::F32 => {
                let b = bytes.get();
                let at = |i: usize| f32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap());
                let packed = panels::pack(rows, cols, at);
                bytes.release();
                Storage::Panels(Arc::new(packed))
            }
            _ => Storage::Rows(bytes),
        };
        Matrix {
            rows,
            cols,
            ty,
            storage,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn ty(&self) -> TensorType {
        self.ty
    }

    /// Bytes the values take in memory (f32 panels include the padding of the last one).
    pub fn stored_bytes(&self) -> usize {
        match &self.storage {
            Storage::Rows(bytes) => bytes.get().len(),
            Storage::Panels(columns) => std::mem::size_of_val(columns.get()),
        }
    }

    fn row_bytes(&self) -> usize {
        self.ty
            .bytes(self.cols as u64, self.cols as u64)
            .expect("checked at construction") as usize
    }

    /// Row `r` as f32 (an embedding lookup).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        match &self.storage {
            Storage::Rows(bytes) => {
                let n = self.row_bytes();
                scalar::decode_row(self.ty, &bytes.get()[r * n..(r + 1) * n], out)
            }
            Storage::Panels(columns) => self.panels(columns.get()).row(r, out),
        }
    }

    fn panels<'a>(&self, columns: &'a [Column]) -> Panels<'a> {
        Panels {
            rows: self.rows,
            cols: self.cols,
            stride: self.cols,
            data: columns,
        }
    }

    /// The whole matrix as f32, row-major.
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for (r, row) in out.chunks_exact_mut(self.cols.max(1)).enumerate() {
            self.row_f32(r, row);
        }
        out
    }

    /// `out[t, r] = Σ_c x[t, c] · W[r, c]` for `n` activation rows `x` (`[n, cols]`, row-major);
    /// `out` is `[n, rows]`. Runs on the current rayon pool, with the fastest kernels this CPU
    /// has. For the block formats the activations are quantised to 8 bits per block of 32 first
    /// (as llama.cpp does), which moves a result by at most half a step of each block.
    pub fn matmul(&self, x: &[f32], n: usize, out: &mut [f32]) {
        self.matmul_with(Backend::detect(), x, n, out)
    }

    /// [`Matrix::matmul`] of the same activations by each of `ms` into the matching `outs`: in
    /// one parallel loop where all are f32 panels of one width (q, k and v; gate and up), else
    /// one after another.
    pub fn matmul_each(ms: &[&Matrix], x: &[f32], n: usize, outs: &mut [&mut [f32]]) {
        assert_eq!(ms.len(), outs.len(), "one output per matrix");
        let panels: Option<Vec<Panels>> = ms
            .iter()
            .map(|m| match &m.storage {
                Storage::Panels(columns) if m.cols == ms[0].cols => Some(m.panels(columns.get())),
                _ => None,
            })
            .collect();
        match panels {
            Some(ws) => {
                let ws: Vec<&Panels> = ws.iter().collect();
                panels::matmul_each(Backend::detect(), &ws, x, n, outs)
            }
            None => {
                for (m, out) in ms.iter().zip(outs.iter_mut()) {
                    m.matmul(x, n, out);
                }
            }
        }
    }

    /// [`Matrix::matmul`] with `backend`'s kernels.
    pub fn matmul_with(&self, backend: Backend, x: &[f32], n: usize, out: &mut [f32]) {
        match &self.storage {
            Storage::Rows(bytes) => {
                let w = Weights {
                    ty: self.ty,
                    rows: self.rows,
                    cols: self.cols,
                    bytes: bytes.get(),
                };
                kernels::matmul(backend, &w, x, n, out)
            }
            Storage::Panels(columns) => {
                panels::matmul(backend, &self.panels(columns.get()), x, n, out)
            }
        }
    }
}

fn check_size(rows: usize, cols: usize, ty: TensorType, got: usize) -> Result<(), MatrixError> {
    let want = ty.bytes(cols as u64, (rows * cols) as u64);
    match want {
        Some(w) if w as usize == got => Ok(()),
        _ => Err(MatrixError::Size {
            ty,
            rows,
            cols,
            want: want.unwrap_or(0) as usize,
            got,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::uniform;

    /// The float types multiply as their own decoded f32 matrix does (f64 sums as the
    /// reference), for single rows (decoding) and batches (prefill). The block formats, whose
    /// activations are quantised too, are checked in `kernels::tests`.
    #[test]
    fn matmul_equals_the_decoded_matrix_product() {
        let (rows, cols) = (37, 96);
        let w = uniform(rows * cols, 1);
        for ty in [TensorType::F32, TensorType::F16, TensorType::Bf16] {
            let m = Matrix::from_f32(rows, cols, &w, ty).unwrap();
            let dense = m.to_f32();
            for n in [1, 3, 8] {
                let x = uniform(n * cols, 2 + n as u32);
                let mut out = vec![0f32; n * rows];
                m.matmul(&x, n, &mut out);
                for t in 0..n {
                    for r in 0..rows {
                        let want: f64 = (0..cols)
                            .map(|c| dense[r * cols + c] as f64 * x[t * cols + c] as f64)
                            .sum();
                        let got = out[t * rows + r] as f64;
                        assert!(
                            (got - want).abs() < 1e-4 * cols as f64,
                            "{ty:?} n={n} [{t},{r}]: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// One parallel loop over several matrices gives each its own product, to the bit: for
    /// f32 panels of one width (the shared loop) and for a mix of types (one after another).
    #[test]
    fn matmul_each_equals_each_matmul() {
        let cols = 64;
        let n = 5;
        let x = uniform(n * cols, 7);
        for types in [
            [TensorType::F32, TensorType::F32, TensorType::F32],
            [TensorType::F32, TensorType::F16, TensorType::Bf16],
        ] {
            let ms: Vec<Matrix> = [40, 16, 23]
                .iter()
                .zip(types)
                .enumerate()
                .map(|(i, (&rows, ty))| {
                    Matrix::from_f32(rows, cols, &uniform(rows * cols, 30 + i as u32), ty).unwrap()
                })
                .collect();
            let mut outs: Vec<Vec<f32>> = ms.iter().map(|m| vec![0f32; n * m.rows()]).collect();
            let mut views: Vec<&mut [f32]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
            Matrix::matmul_each(&ms.iter().collect::<Vec<_>>(), &x, n, &mut views);
            for (m, got) in ms.iter().zip(&outs) {
                let mut want = vec![0f32; n * m.rows()];
                m.matmul(&x, n, &mut want);
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{types:?}: a product of the group differs from its own"
                );
            }
        }
    }

    #[test]
    fn a_buffer_of_the_wrong_size_is_refused() {
        let e = Matrix::from_bytes(2, 32, TensorType::F16, vec![0; 100])
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "F16 [2, 32] needs 128 bytes, got 100");
    }
}
