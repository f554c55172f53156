//! Token shards on disk: a directory with `index.json` and flat little-endian token files
//! (`u16` when the vocabulary fits, else `u32`). The index records each shard's token count and
//! the UTF-8 byte count of the text it came from, so evaluation can report bits per byte.

use crate::atomic_file::write_atomic;
use crate::error::DataError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const INDEX_FILE: &str = "index.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenWidth {
    U16,
    U32,
}

impl TokenWidth {
    pub fn for_vocab(vocab_size: usize) -> Result<Self, DataError> {
        match vocab_size {
            0..=65_536 => Ok(TokenWidth::U16),
            n if n as u64 <= u32::MAX as u64 => Ok(TokenWidth::U32),
            n => Err(DataError::Invalid(format!(
                "vocabulary of {n} tokens does not fit in 32-bit ids"
            ))),
        }
    }
    fn bytes(self) -> usize {
        match self {
            TokenWidth::U16 => 2,
            TokenWidth::U32 => 4,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShardInfo {
    pub file: String,
    pub tokens: u64,
    /// UTF-8 bytes of the text these tokens encode.
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatasetIndex {
    pub version: u32,
    pub width: TokenWidth,
    pub vocab_size: usize,
    pub eos_id: u32,
    pub shards: Vec<ShardInfo>,
}

impl DatasetIndex {
    /// Reads `dir/index.json`.
    pub fn read(dir: &Path) -> Result<Self, DataError> {
        let path = dir.join(INDEX_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| DataError::file(&path, e))?;
        serde_json::from_str(&text).map_err(|e| DataError::file(&path, e))
    }

    pub fn tokens(&self) -> u64 {
        self.shards.iter().map(|s| s.tokens).sum()
    }
    pub fn bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.bytes).sum()
    }
}

/// A tokenised dataset read into memory.
pub struct TokenDataset {
    pub dir: PathBuf,
    pub index: DatasetIndex,
    pub tokens: Vec<u32>,
}

impl TokenDataset {
    pub fn open(dir: &Path) -> Result<Self, DataError> {
        let index = DatasetIndex::read(dir)?;
        let mut tokens = Vec::with_capacity(index.tokens() as usize);
        let w = index.width.bytes();
        for s in &index.shards {
            let p = dir.join(&s.file);
            let raw = std::fs::read(&p).map_err(|e| DataError::file(&p, e))?;
            if raw.len() as u64 != s.tokens * w as u64 {
                return Err(DataError::file(
                    &p,
                    format!(
                        "holds {} bytes but the index says {} tokens of {w} bytes (truncated?)",
                        raw.len(),
                        s.tokens
                    ),
                ));
            }
            let start = tokens.len();
            match index.width {
                TokenWidth::U16 => tokens.extend(
                    raw.chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32),
                ),
                TokenWidth::U32 => tokens.extend(
                    raw.chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                ),
            }
            if let Some(bad) = tokens[start..]
                .iter()
                .find(|&&t| t as usize >= index.vocab_size)
            {
                return Err(DataError::file(
                    &p,
                    format!(
                        "token id {bad} is outside the vocabulary of {}",
                        index.vocab_size
                    ),
                ));
            }
        }
        Ok(TokenDataset {
            dir: dir.to_path_buf(),
            index,
            tokens,
        })
    }

    /// Several datasets read as one (e.g. the validation splits of every source). They must
    /// share the vocabulary and EOS id.
    pub fn open_many(dirs: &[PathBuf]) -> Result<Self, DataError> {
        let mut all: Option<TokenDataset> = None;
        for d in dirs {
            let next = TokenDataset::open(d)?;
            all = Some(match all {
                None => next,
                Some(mut acc) => {
                    if (acc.index.vocab_size, acc.index.eos_id)
                        != (next.index.vocab_size, next.index.eos_id)
                    {
                        return Err(DataError::file(
                            d,
                            "vocabulary or EOS id differs from the other datasets",
                        ));
                    }
                    acc.tokens.extend(next.tokens);
                    acc.index.shards.extend(next.index.shards);
                    acc
                }
            });
        }
        all.ok_or_else(|| DataError::Invalid("no dataset directories given".into()))
    }

    /// Average UTF-8 bytes per token, when the index records byte counts.
    pub fn bytes_per_token(&self) -> Option<f64> {
        let (b, t) = (self.index.bytes(), self.index.tokens());
        (b > 0 && t > 0).then(|| b as f64 / t as f64)
    }
}

/// Writes shards of at most `shard_tokens` tokens and, last, the index; a directory without an
/// index is never mistaken for a complete dataset.
pub struct ShardWriter {
    dir: PathBuf,
    width: TokenWidth,
    vocab_size: usize,
    eos_id: u32,
    shard_tokens: usize,
    buf: Vec<u32>,
    buf_bytes: u64,
    shards: Vec<ShardInfo>,
}

impl ShardWriter {
    pub fn create(
        dir: &Path,
        vocab_size: usize,
        eos_id: u32,
        shard_tokens: usize,
    ) -> Result<Self, DataError> {
        std::fs::create_dir_all(dir).map_err(|e| DataError::file(dir, e))?;
        let _ = std::fs::remove_file(dir.join(INDEX_FILE));
        Ok(ShardWriter {
            dir: dir.to_path_buf(),
            width: TokenWidth::for_vocab(vocab_size)?,
            vocab_size,
            eos_id,
            shard_tokens,
            buf: Vec::new(),
            buf_bytes: 0,
            shards: Vec::new(),
        })
    }

    /// Adds one document (its tokens, then EOS) encoding `text_bytes` bytes of text.
    pub fn push_document(&mut self, tokens: &[u32], text_bytes: u64) -> Result<(), DataError> {
        // Checked here because a 16-bit shard would silently wrap such an id into the vocabulary.
        if let Some(bad) = tokens.iter().find(|&&t| t as usize >= self.vocab_size) {
            return Err(DataError::Invalid(format!(
                "{}: token id {bad} is outside the vocabulary of {}",
                self.dir.display(),
                self.vocab_size
            )));
        }
        self.buf.extend_from_slice(tokens);
        self.buf.push(self.eos_id);
        self.buf_bytes += text_bytes;
        if self.buf.len() >= self.shard_tokens {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DataError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let file = format!("shard-{:05}.bin", self.shards.len());
        let path = self.dir.join(&file);
        let mut bytes = Vec::with_capacity(self.buf.len() * self.width.bytes());
        for &t in &self.buf {
            match self.width {
                TokenWidth::U16 => bytes.extend_from_slice(&(t as u16).to_le_bytes()),
                TokenWidth::U32 => bytes.extend_from_slice(&t.to_le_bytes()),
            }
        }
        std::fs::write(&path, &bytes).map_err(|e| DataError::file(&path, e))?;
        self.shards.push(ShardInfo {
            file,
            tokens: self.buf.len() as u64,
            bytes: self.buf_bytes,
        });
        self.buf.clear();
        self.buf_bytes = 0;
        Ok(())
    }

    pub fn finish(mut self) -> Result<DatasetIndex, DataError> {
        self.flush()?;
        let index = DatasetIndex {
            version: 1,
            width: self.width,
            vocab_size: self.vocab_size,
            eos_id: self.eos_id,
            shards: self.shards,
        };
        let path = self.dir.join(INDEX_FILE);
        let json = serde_json::to_vec_pretty(&index).expect("index serialises");
        write_atomic(&path, &json).map_err(|e| DataError::file(&path, e))?;
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ShardWriter::create(dir.path(), 1000, 2, 5).unwrap();
        w.push_document(&[10, 11, 12], 7).unwrap();
        w.push_document(&[999, 5], 4).unwrap();
        let index = w.finish().unwrap();
        assert_eq!(index.tokens(), 7);
        assert_eq!(index.bytes(), 11);
        let ds = TokenDataset::open(dir.path()).unwrap();
        assert_eq!(ds.tokens, vec![10, 11, 12, 2, 999, 5, 2]);
        // Truncate a shard: the reader names the file.
        let shard = dir.path().join(&index.shards[0].file);
        let len = std::fs::metadata(&shard).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&shard)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let e = TokenDataset::open(dir.path()).err().unwrap().to_string();
        assert!(
            e.contains("shard-00000.bin") && e.contains("truncated"),
            "{e}"
        );
    }
}
