//! Which GGUF type each tensor is stored in, given the type asked for.

use crate::gguf::TensorType;
use crate::quant::{QuantType, BLOCK};
use std::str::FromStr;

/// The type asked for on the command line (`--type`), llama.cpp's `general.file_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    F32,
    F16,
    Q8_0,
    Q4_0,
    Q4K,
}

impl FileType {
    pub const ALL: [FileType; 5] = [
        FileType::F32,
        FileType::F16,
        FileType::Q8_0,
        FileType::Q4_0,
        FileType::Q4K,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FileType::F32 => "f32",
            FileType::F16 => "f16",
            FileType::Q8_0 => "q8_0",
            FileType::Q4_0 => "q4_0",
            FileType::Q4K => "q4_k",
        }
    }

    /// llama.cpp's `llama_ftype`: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q4_0 2, MOSTLY_Q8_0 7,
    /// MOSTLY_Q4_K_S 14 (ours is q4_k throughout, which its labels come closest to as "S").
    pub fn code(self) -> u32 {
        match self {
            FileType::F32 => 0,
            FileType::F16 => 1,
            FileType::Q4_0 => 2,
            FileType::Q8_0 => 7,
            FileType::Q4K => 14,
        }
    }

    pub fn from_code(code: u32) -> Option<FileType> {
        FileType::ALL.into_iter().find(|t| t.code() == code)
    }

    fn tensor_type(self) -> TensorType {
        match self {
            FileType::F32 => TensorType::F32,
            FileType::F16 => TensorType::F16,
            FileType::Q8_0 => TensorType::Quant(QuantType::Q8_0),
            FileType::Q4_0 => TensorType::Quant(QuantType::Q4_0),
            FileType::Q4K => TensorType::Quant(QuantType::Q4K),
        }
    }
}

impl FromStr for FileType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FileType::ALL
            .into_iter()
            .find(|t| t.name() == s.to_ascii_lowercase())
            .ok_or_else(|| format!("unknown GGUF type `{s}` (f32, f16, q8_0, q4_0 or q4_k)"))
    }
}

/// The type tensor `gguf_name` of shape `[rows, cols]` (or `[len]`) is stored in:
///
/// - vectors (the norms) are f32;
/// - the token embedding and an untied output head are f16, or f32 when f32 is asked for
///   (MiniCPM's rule: embeddings and norms are not quantised);
/// - an MoE router (`ffn_gate_inp`) is f32: its softmax decides the routing, and llama.cpp's
///   quantiser keeps it unquantised too;
/// - every other matrix is in the type asked for, except that a quantised type needs rows of
///   whole blocks (32 weights, 256 for q4_k): a row that is not falls back to q8_0, and to f16
///   where it is not whole 32-weight blocks either, as llama.cpp's quantiser does.
pub fn tensor_type(file: FileType, gguf_name: &str, shape: &[usize]) -> TensorType {
    if shape.len() < 2 || gguf_name.ends_with("ffn_gate_inp.weight") {
        return TensorType::F32;
    }
    if gguf_name == "token_embd.weight" || gguf_name == "output.weight" {
        return match file {
            FileType::F32 => TensorType::F32,
            _ => TensorType::F16,
        };
    }
    let cols = shape[shape.len() - 1];
    match file.tensor_type() {
        TensorType::Quant(q) if !cols.is_multiple_of(q.block_len()) => match cols % BLOCK {
            0 => TensorType::Quant(QuantType::Q8_0),
            _ => TensorType::F16,
        },
        t => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        let q4 = TensorType::Quant(QuantType::Q4_0);
        assert_eq!(
            tensor_type(FileType::Q4_0, "blk.0.attn_q.weight", &[64, 64]),
            q4
        );
        assert_eq!(
            tensor_type(FileType::Q4_0, "blk.0.attn_norm.weight", &[64]),
            TensorType::F32
        );
        assert_eq!(
            tensor_type(FileType::F16, "blk.0.attn_norm.weight", &[64]),
            TensorType::F32
        );
        assert_eq!(
            tensor_type(FileType::Q8_0, "token_embd.weight", &[100, 64]),
            TensorType::F16
        );
        assert_eq!(
            tensor_type(FileType::Q4_0, "output.weight", &[100, 64]),
            TensorType::F16
        );
        assert_eq!(
            tensor_type(FileType::F32, "token_embd.weight", &[100, 64]),
            TensorType::F32
        );
        assert_eq!(
            tensor_type(FileType::Q8_0, "blk.0.ffn_down.weight", &[64, 48]),
            TensorType::F16
        );
        assert_eq!(
            tensor_type(FileType::F32, "blk.0.ffn_down.weight", &[64, 48]),
            TensorType::F32
        );
        // q4_k's 256-weight blocks: rows of 64 fall back to q8_0, rows of 512 stay q4_k.
        assert_eq!(
            tensor_type(FileType::Q4K, "blk.0.attn_q.weight", &[64, 64]),
            TensorType::Quant(QuantType::Q8_0)
        );
        assert_eq!(
            tensor_type(FileType::Q4K, "blk.0.attn_q.weight", &[64, 512]),
            TensorType::Quant(QuantType::Q4K)
        );
    }

    #[test]
    fn names_parse_and_unknown_ones_are_refused() {
        for t in FileType::ALL {
            assert_eq!(t.name().parse::<FileType>(), Ok(t));
            assert_eq!(FileType::from_code(t.code()), Some(t));
        }
        assert_eq!("Q8_0".parse::<FileType>(), Ok(FileType::Q8_0));
        let e = "q5_k".parse::<FileType>().unwrap_err();
        assert_eq!(e, "unknown GGUF type `q5_k` (f32, f16, q8_0, q4_0 or q4_k)");
    }
}
