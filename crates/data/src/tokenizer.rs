//! Tokenizers in the HF `tokenizer.json` format: any such file loads, and a byte-level BPE can be
//! trained here (every byte is in the base alphabet, so any UTF-8 text round-trips exactly).

use crate::error::DataError;
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    Tokenizer, TokenizerBuilder, TokenizerImpl,
};

/// MiniCPM's special tokens, at ids 0, 1, 2.
pub const SPECIAL_TOKENS: [&str; 3] = ["<unk>", "<s>", "</s>"];

pub struct TextTokenizer {
    inner: Tokenizer,
}

impl TextTokenizer {
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| DataError::file(path, format!("cannot load tokenizer: {e}")))?;
        Ok(TextTokenizer { inner })
    }

    /// Trains a byte-level BPE of `vocab_size` tokens on `texts`.
    pub fn train_bpe<I, S>(texts: I, vocab_size: usize) -> Result<Self, DataError>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        let specials = SPECIAL_TOKENS
            .iter()
            .map(|t| AddedToken::from(t.to_string(), true))
            .collect();
        let mut trainer = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(2)
            .show_progress(false)
            .special_tokens(specials)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build();
        let mut tok: TokenizerImpl<
            BPE,
            NormalizerWrapper,
            PreTokenizerWrapper,
            PostProcessorWrapper,
            DecoderWrapper,
        > = TokenizerBuilder::new()
            .with_model(BPE::default())
            .with_normalizer(None)
            .with_pre_tokenizer(Some(ByteLevel::new(false, true, true).into()))
            .with_post_processor(None)
            .with_decoder(Some(ByteLevelDecoder::default().into()))
            .build()
            .map_err(|e| DataError::Invalid(format!("tokenizer setup: {e}")))?;
        tok.train(&mut trainer, texts)
            .map_err(|e| DataError::Invalid(format!("tokenizer training: {e}")))?;
        let inner: Tokenizer = tok.into();
        Ok(TextTokenizer { inner })
    }

    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        self.inner
            .save(path, false)
            .map_err(|e| DataError::file(path, e))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>, DataError> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| DataError::Invalid(format!("encode: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, DataError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| DataError::Invalid(format!("decode: {e}")))
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_round_trips_unseen_text() {
        let corpus = ["the quick brown fox jumps over the lazy dog"; 50];
        let tok = TextTokenizer::train_bpe(corpus.iter(), 300).unwrap();
        assert_eq!(tok.token_id("<unk>"), Some(0));
        assert_eq!(tok.token_id("<s>"), Some(1));
        assert_eq!(tok.token_id("</s>"), Some(2));
        for text in [
            "héllo wörld 🦀 汉字从未见过",
            "tabs\tand\nnewlines\u{1}\u{7f}",
            "  leading spaces",
        ] {
            let ids = tok.encode(text).unwrap();
            assert_eq!(tok.decode(&ids).unwrap(), text);
        }
    }
}
