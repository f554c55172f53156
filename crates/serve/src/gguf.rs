//! GGUF, llama.cpp's model file (version 3): a header, typed metadata, tensor descriptions, then
//! the tensors' bytes, each aligned. The writer lays files out exactly as llama.cpp's own Python
//! writer (gguf-py's GGUFWriter) does, byte for byte; the reader refuses a truncated or foreign
//! file with a one-line error instead of reading past its end.
//!
//! ```text
//! "GGUF" u32 version=3 | u64 tensors | u64 metadata entries
//! per entry:  string key | u32 value type | value      (string: u64 length + UTF-8 bytes)
//! per tensor: string name | u32 dims | u64 sizes, innermost first | u32 type | u64 offset
//! zero padding to the alignment, then each tensor's bytes padded to the alignment
//! ```

use crate::quant::QuantType;
use half::f16;

pub const MAGIC: &[u8; 4] = b"GGUF";
pub const VERSION: u32 = 3;
/// Data alignment when the file does not set `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value; arrays hold values of one type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(ValueType, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// The format's value type codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    fn from_code(code: u32) -> Option<ValueType> {
        use ValueType::*;
        [
            U8, I8, U16, I16, U32, I32, F32, Bool, String, Array, U64, I64, F64,
        ]
        .into_iter()
        .find(|t| *t as u32 == code)
    }
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(..) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }
}

/// How a tensor's elements are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    F32,
    F16,
    Bf16,
    Quant(QuantType),
}

impl TensorType {
    /// ggml's type code.
    pub fn code(self) -> u32 {
        match self {
            TensorType::F32 => 0,
            TensorType::F16 => 1,
            TensorType::Bf16 => 30,
            TensorType::Quant(QuantType::Q4_0) => 2,
            TensorType::Quant(QuantType::Q8_0) => 8,
            TensorType::Quant(QuantType::Q4K) => 12,
        }
    }

    fn from_code(code: u32) -> Option<TensorType> {
        [
            TensorType::F32,
            TensorType::F16,
            TensorType::Bf16,
            TensorType::Quant(QuantType::Q4_0),
            TensorType::Quant(QuantType::Q8_0),
            TensorType::Quant(QuantType::Q4K),
        ]
        .into_iter()
        .find(|t| t.code() == code)
    }

    /// Bytes of a tensor whose innermost dimension is `row` and which has `n` elements; `None`
    /// when a quantised row is not whole blocks.
    pub fn bytes(self, row: u64, n: u64) -> Option<u64> {
        match self {
            TensorType::F32 => Some(4 * n),
            TensorType::F16 | TensorType::Bf16 => Some(2 * n),
            TensorType::Quant(q) => {
                let block = q.block_len() as u64;
                row.is_multiple_of(block)
                    .then(|| n / block * q.block_bytes() as u64)
            }
        }
    }
}

/// A tensor: its name, its shape outermost first (`[rows, columns]`, as PyTorch and HF write
/// it; GGUF stores the reverse), its type and its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<u64>,
    pub ty: TensorType,
    pub data: Vec<u8>,
}

impl Tensor {
    pub fn f32(name: &str, shape: &[u64], values: &[f32]) -> Tensor {
        Tensor {
            name: name.into(),
            shape: shape.to_vec(),
            ty: TensorType::F32,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    pub fn f16(name: &str, shape: &[u64], values: &[f32]) -> Tensor {
        Tensor {
            name: name.into(),
            shape: shape.to_vec(),
            ty: TensorType::F16,
            data: values
                .iter()
                .flat_map(|v| f16::from_f32(*v).to_le_bytes())
                .collect(),
        }
    }
}

/// A whole GGUF file in memory.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Gguf {
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<Tensor>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GgufError {
    #[error("not a GGUF file (it starts with {0:?}, not \"GGUF\")")]
    Magic(Vec<u8>),
    #[error("GGUF version {0} is not supported (only {VERSION})")]
    Version(u32),
    #[error("truncated: the file ends at byte {len} inside {what}")]
    Truncated { len: usize, what: String },
    #[error("{what}: {msg}")]
    Invalid { what: String, msg: String },
}

impl Gguf {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn alignment(&self) -> u64 {
        alignment(&self.metadata)
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out).expect("writing to memory");
        out
    }

    /// Writes the file to `w`, the tensors' bytes straight from memory (no second copy).
    pub fn write_to(&self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        let align = self.alignment();
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_string(&mut out, key);
            out.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
            put_value(&mut out, value);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_string(&mut out, &t.name);
            out.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for d in t.shape.iter().rev() {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty.code().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset += padded(t.data.len() as u64, align);
        }
        let mut written = out.len() as u64;
        w.write_all(&out)?;
        let zeros = vec![0u8; align as usize];
        let pad = |w: &mut dyn std::io::Write, written: &mut u64| {
            let n = padded(*written, align) - *written;
            *written += n;
            w.write_all(&zeros[..n as usize])
        };
        for t in &self.tensors {
            pad(w, &mut written)?;
            w.write_all(&t.data)?;
            written += t.data.len() as u64;
        }
        pad(w, &mut written)
    }

    /// Reads a file's bytes; every size and offset is checked against the file's length.
    pub fn parse(bytes: &[u8]) -> Result<Gguf, GgufError> {
        let header = Gguf::parse_header(bytes)?;
        let tensors = header
            .tensors
            .into_iter()
            .map(|t| Tensor {
                data: bytes[t.offset as usize..(t.offset + t.len) as usize].to_vec(),
                name: t.name,
                shape: t.shape,
                ty: t.ty,
            })
            .collect();
        Ok(Gguf {
            metadata: header.metadata,
            tensors,
        })
    }

    /// Reads the metadata and the tensor descriptions, and where each tensor's bytes lie, without
    /// copying them (for a file mapped into memory). Every tensor lies inside `bytes`.
    pub fn parse_header(bytes: &[u8]) -> Result<Header, GgufError> {
        let mut r = Reader { bytes, at: 0 };
        let magic = r.take(4, "the magic number")?;
        if magic != MAGIC {
            return Err(GgufError::Magic(magic.to_vec()));
        }
        let version = r.u32("the version")?;
        if version != VERSION {
            return Err(GgufError::Version(version));
        }
        let n_tensors = r.u64("the tensor count")?;
        let n_metadata = r.u64("the metadata count")?;
        let mut metadata = Vec::new();
        for i in 0..n_metadata {
            let key = r.string(&format!("metadata entry {i}"))?;
            let code = r.u32(&key)?;
            let value = r.value(code, &key)?;
            metadata.push((key, value));
        }
        let align = alignment(&metadata);
        let mut infos = Vec::new();
        for i in 0..n_tensors {
            let name = r.string(&format!("tensor {i}"))?;
            let dims = r.u32(&name)?;
            if dims == 0 || dims > 4 {
                return Err(invalid(
                    &name,
                    format!("{dims} dimensions (1 to 4 are possible)"),
                ));
            }
            let mut shape = (0..dims)
                .map(|_| r.u64(&name))
                .collect::<Result<Vec<_>, _>>()?;
            shape.reverse();
            let code = r.u32(&name)?;
            let ty = TensorType::from_code(code)
                .ok_or_else(|| invalid(&name, format!("tensor type {code} is not supported")))?;
            let offset = r.u64(&name)?;
            infos.push((name, shape, ty, offset));
        }
        let data_start = padded(r.at as u64, align);
        let mut tensors = Vec::with_capacity(infos.len());
        for (name, shape, ty, offset) in infos {
            let n = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
            let row = *shape.last().expect("at least one dimension");
            let len = n
                .and_then(|n| ty.bytes(row, n))
                .ok_or_else(|| invalid(&name, format!("shape {shape:?} does not fit {ty:?}")))?;
            let start = data_start.checked_add(offset).filter(|s| s % align == 0);
            let start = start.ok_or_else(|| invalid(&name, "offset not aligned".into()))?;
            if start
                .checked_add(len)
                .is_none_or(|end| end > bytes.len() as u64)
            {
                return Err(GgufError::Truncated {
                    len: bytes.len(),
                    what: name,
                });
            }
            tensors.push(TensorInfo {
                name,
                shape,
                ty,
                offset: start,
                len,
            });
        }
        Ok(Header { metadata, tensors })
    }
}

/// A file's metadata and tensor descriptions ([`Gguf::parse_header`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
}

impl Header {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Where a tensor's bytes lie in its file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Outermost first, as [`Tensor::shape`].
    pub shape: Vec<u64>,
    pub ty: TensorType,
    /// From the start of the file.
    pub offset: u64,
    pub len: u64,
}

fn alignment(metadata: &[(String, Value)]) -> u64 {
    match metadata.iter().find(|(k, _)| k == "general.alignment") {
        Some((_, Value::U32(a))) if *a > 0 => *a as u64,
        _ => DEFAULT_ALIGNMENT,
    }
}

fn invalid(what: &str, msg: String) -> GgufError {
    GgufError::Invalid {
        what: what.to_string(),
        msg,
    }
}

fn padded(n: u64, align: u64) -> u64 {
    n.div_ceil(align) * align
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_string(out, s),
        Value::Array(ty, items) => {
            out.extend_from_slice(&(*ty as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            items.iter().for_each(|item| put_value(out, item));
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], GgufError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| GgufError::Truncated {
            len: self.bytes.len(),
            what: what.to_string(),
        })?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        Ok(self.take(N, what)?.try_into().expect("N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        let len = usize::try_from(len).map_err(|_| invalid(what, format!("length {len}")))?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| invalid(what, "not UTF-8".into()))
    }

    fn value(&mut self, code: u32, what: &str) -> Result<Value, GgufError> {
        let ty = ValueType::from_code(code)
            .ok_or_else(|| invalid(what, format!("value type {code} is unknown")))?;
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(what)?[0]),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array(what)?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            ValueType::U32 => Value::U32(self.u32(what)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            ValueType::Bool => Value::Bool(self.array::<1>(what)?[0] != 0),
            ValueType::String => Value::String(self.string(what)?),
            ValueType::U64 => Value::U64(self.u64(what)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            ValueType::Array => {
                let code = self.u32(what)?;
                let item = ValueType::from_code(code)
                    .filter(|t| *t != ValueType::Array)
                    .ok_or_else(|| invalid(what, format!("array of value type {code}")))?;
                let n = self.u64(what)?;
                // Each item takes at least one byte: a count beyond the file is a lie.
                if n > (self.bytes.len() - self.at) as u64 {
                    return Err(GgufError::Truncated {
                        len: self.bytes.len(),
                        what: what.to_string(),
                    });
                }
                let items = (0..n)
                    .map(|_| self.value(item as u32, what))
                    .collect::<Result<_, _>>()?;
                Value::Array(item, items)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn reference() -> Vec<u8> {
        let p =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf/reference.gguf");
        std::fs::read(p).unwrap()
    }

    /// scripts/reference/make_gguf_fixture.py's weights: ((7 i mod 23) - 11) * scale / 8.
    fn values(n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((7 * i) % 23) as f32 - 11.0)
            .map(|v| v * scale / 8.0)
            .collect()
    }

    /// The content the reference script writes.
    fn content() -> Gguf {
        let s = |v: &str| Value::String(v.into());
        let quant = |name: &str, ty: QuantType, rows: u64, cols: u64, scale: f32| Tensor {
            name: name.into(),
            shape: vec![rows, cols],
            ty: TensorType::Quant(ty),
            data: ty.quantize(&values((rows * cols) as usize, scale)).unwrap(),
        };
        Gguf {
            metadata: vec![
                ("general.architecture".into(), s("minicpm")),
                ("general.name".into(), s("test model 测试")),
                ("test.u8".into(), Value::U8(200)),
                ("test.i8".into(), Value::I8(-100)),
                ("test.u16".into(), Value::U16(60000)),
                ("test.i16".into(), Value::I16(-30000)),
                ("minicpm.block_count".into(), Value::U32(2)),
                ("test.i32".into(), Value::I32(-2_000_000_000)),
                ("minicpm.embedding_scale".into(), Value::F32(12.0)),
                ("minicpm.residual_scale".into(), Value::F32(1.4)),
                ("test.bool".into(), Value::Bool(true)),
                ("test.u64".into(), Value::U64((1 << 40) + 7)),
                ("test.i64".into(), Value::I64(-(1 << 40))),
                ("test.f64".into(), Value::F64(0.1)),
                (
                    "tokenizer.ggml.tokens".into(),
                    Value::Array(
                        ValueType::String,
                        ["<unk>", "<s>", "</s>", "<用户>", "<AI>", "▁the"]
                            .map(s)
                            .to_vec(),
                    ),
                ),
                (
                    "tokenizer.ggml.scores".into(),
                    Value::Array(ValueType::F32, [0.0, -1.5, 2.25].map(Value::F32).to_vec()),
                ),
                (
                    "tokenizer.ggml.token_type".into(),
                    Value::Array(ValueType::I32, [2, 3, 3, 1, 1, 1].map(Value::I32).to_vec()),
                ),
            ],
            tensors: vec![
                Tensor::f32("token_embd.weight", &[6, 4], &values(24, 1.0)),
                Tensor::f32("output_norm.weight", &[4], &values(4, 0.5)),
                Tensor::f16("blk.0.attn_q.weight", &[3, 5], &values(15, 2.0)),
                quant("blk.0.ffn_up.weight", QuantType::Q8_0, 2, 64, 3.0),
                quant("blk.0.ffn_down.weight", QuantType::Q4_0, 1, 32, 0.25),
            ],
        }
    }

    #[test]
    fn writes_the_bytes_llama_cpps_writer_writes() {
        let ours = content().to_bytes();
        let theirs = reference();
        assert_eq!(ours.len(), theirs.len());
        let first = ours.iter().zip(&theirs).position(|(a, b)| a != b);
        assert_eq!(first, None, "first differing byte");
    }

    #[test]
    fn reads_llama_cpps_writer_back() {
        let file = Gguf::parse(&reference()).unwrap();
        assert_eq!(file, content());
        assert_eq!(file.get("minicpm.block_count"), Some(&Value::U32(2)));
        let down = &file.tensors[4];
        let back = QuantType::Q4_0.dequantize(&down.data).unwrap();
        let want = values(32, 0.25);
        let max = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(back
            .iter()
            .zip(&want)
            .all(|(a, b)| (a - b).abs() <= max / 8.0));
    }

    /// Every prefix of the file is refused with an error naming where it ends, never a panic.
    #[test]
    fn every_truncation_is_a_one_line_error() {
        let bytes = reference();
        // The last tensor ends at byte 1330; what follows is padding.
        for len in 0..1330 {
            let e = Gguf::parse(&bytes[..len]).unwrap_err().to_string();
            assert!(!e.contains('\n'), "{e}");
            assert!(e.starts_with("truncated") || len < 4, "{len}: {e}");
        }
    }

    #[test]
    fn foreign_files_and_unknown_types_are_named() {
        let e = Gguf::parse(b"PK\x03\x04rest").unwrap_err().to_string();
        assert!(e.starts_with("not a GGUF file"), "{e}");
        let mut bytes = reference();
        bytes[4] = 2;
        let e = Gguf::parse(&bytes).unwrap_err().to_string();
        assert_eq!(e, "GGUF version 2 is not supported (only 3)");
        // The first tensor's type code sits 12 bytes before its offset field, after the
        // metadata; find it by re-encoding the file with a type ggml has but we do not read.
        let file = content();
        let mut odd = file.clone();
        odd.tensors.truncate(1);
        let good = odd.to_bytes();
        let name_at = good
            .windows(b"token_embd.weight".len())
            .position(|w| w == b"token_embd.weight")
            .unwrap();
        let type_at = name_at + "token_embd.weight".len() + 4 + 2 * 8;
        let mut bad = good.clone();
        bad[type_at..type_at + 4].copy_from_slice(&14u32.to_le_bytes()); // Q6_K
        let e = Gguf::parse(&bad).unwrap_err().to_string();
        assert_eq!(e, "token_embd.weight: tensor type 14 is not supported");
    }
}
