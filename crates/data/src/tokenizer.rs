//! Tokenizers in the HF `tokenizer.json` format. Any such file loads (a released MiniCPM
//! tokenizer.json included); training builds what MiniCPM's SentencePiece tokenizer is: BPE over
//! "▁"-prefixed words with digits split one by one and byte fallback, so text the vocabulary has
//! never seen (emoji, rare CJK characters, control characters) still encodes, as `<0xNN>` tokens,
//! and decodes back exactly.

use crate::error::DataError;
use crate::fast_encoder::FastEncoder;
use std::path::Path;
use std::str::FromStr;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    Tokenizer, TokenizerBuilder, TokenizerImpl,
};

/// MiniCPM's special tokens, at ids 0, 1, 2.
pub const SPECIAL_TOKENS: [&str; 3] = ["<unk>", "<s>", "</s>"];

/// The smallest vocabulary worth training: specials, 256 byte tokens and some merges.
pub const MIN_VOCAB: usize = 3 + 256 + 64;

type Impl = TokenizerImpl<
    BPE,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

pub struct TextTokenizer {
    inner: Tokenizer,
    /// Present for tokenizers of the family `train_bpe` makes: same ids, many times faster.
    fast: Option<FastEncoder>,
}

/// The normaliser of the tokenizers `train_bpe` makes, SentencePiece's layout: spaces become "▁"
/// and one "▁" is always prepended.
pub(crate) fn family_normalizer() -> Result<NormalizerWrapper, tokenizers::Error> {
    Ok(NormalizerSequence::new(vec![
        Prepend::new("▁".into()).into(),
        Replace::new(" ", "▁")?.into(),
    ])
    .into())
}

/// The pre-tokeniser of the tokenizers `train_bpe` makes: words split before each "▁", digits
/// one by one.
pub(crate) fn family_pre_tokenizer() -> PreTokenizerWrapper {
    let split_words = Metaspace::new('▁', PrependScheme::Never, true);
    PreTokenizerSequence::new(vec![split_words.into(), Digits::new(true).into()]).into()
}

fn byte_token(b: u8) -> String {
    format!("<0x{b:02X}>")
}

impl TextTokenizer {
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let inner = Tokenizer::from_file(path).map_err(|e| {
            DataError::failed(format!("{}: cannot load tokenizer", path.display()), e)
        })?;
        Ok(Self::new(inner))
    }

    /// A tokenizer from the text of a tokenizer.json (as a GGUF file carries it); `origin`
    /// names where the text came from.
    pub fn from_json(json: &str, origin: &str) -> Result<Self, DataError> {
        let inner = Tokenizer::from_str(json)
            .map_err(|e| DataError::failed(format!("{origin}: cannot load tokenizer"), e))?;
        Ok(Self::new(inner))
    }

    fn new(inner: Tokenizer) -> Self {
        let fast = FastEncoder::for_tokenizer(&inner);
        TextTokenizer { inner, fast }
    }

    /// Encodes through the HF pipeline only, even when the fast encoder applies: to compare the
    /// two, or to rule the fast one out.
    pub fn with_generic_encoder(mut self) -> Self {
        self.fast = None;
        self
    }

    /// This tokenizer for text that continues other text: without the "▁" that SentencePiece
    /// layouts (ours, Llama's and MiniCPM's tokenizer.json) prepend to the start of every text.
    /// Encoding a conversation piece by piece with it gives a token boundary where each piece
    /// starts, as at inference, where the answer's tokens follow the prompt's.
    pub fn continuation(&self) -> Result<Self, DataError> {
        let setup = |e: tokenizers::Error| DataError::failed("tokenizer setup", e);
        let mut json: serde_json::Value =
            serde_json::from_str(&self.inner.to_string(false).map_err(setup)?)
                .map_err(|e| DataError::failed("tokenizer setup", e))?;
        let is_prepend = |n: &serde_json::Value| n["type"] == "Prepend";
        let normalizer = &mut json["normalizer"];
        if is_prepend(normalizer) {
            *normalizer = serde_json::Value::Null;
        } else if let Some(list) = normalizer["normalizers"].as_array_mut() {
            list.retain(|n| !is_prepend(n));
        }
        // Newer layouts prepend in the pre-tokenizer instead: Metaspace's prepend scheme.
        let pre = &mut json["pre_tokenizer"];
        let mut never = |p: &mut serde_json::Value| {
            if p["type"] == "Metaspace" {
                p["prepend_scheme"] = "never".into();
            }
        };
        match pre["pretokenizers"].as_array_mut() {
            Some(list) => list.iter_mut().for_each(&mut never),
            None => never(pre),
        }
        let inner = Tokenizer::from_str(&json.to_string()).map_err(setup)?;
        Ok(TextTokenizer { inner, fast: None })
    }

    /// Whether encoding goes through the fast encoder of our tokenizer family.
    pub fn uses_fast_encoder(&self) -> bool {
        self.fast.is_some()
    }

    /// Trains a byte-fallback BPE of `vocab_size` tokens on `texts`.
    pub fn train_bpe<I, S>(texts: I, vocab_size: usize) -> Result<Self, DataError>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        if vocab_size < MIN_VOCAB {
            return Err(DataError::Invalid(format!(
                "vocabulary size {vocab_size} is too small: at least {MIN_VOCAB} (3 specials + 256 byte tokens + merges)"
            )));
        }
        let setup = |e: tokenizers::Error| DataError::failed("tokenizer setup", e);
        // Specials first (ids 0, 1, 2), then the 256 byte tokens byte fallback needs in the vocabulary.
        let mut reserved: Vec<AddedToken> = SPECIAL_TOKENS
            .iter()
            .map(|t| AddedToken::from(t.to_string(), true))
            .collect();
        reserved.extend((0..=255u8).map(|b| AddedToken::from(byte_token(b), true)));
        let mut trainer = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(2)
            .show_progress(false)
            .special_tokens(reserved)
            // Rare characters are left to byte fallback instead of taking a token each.
            .limit_alphabet(1000)
            .build();
        let model = BPE::builder()
            .byte_fallback(true)
            .unk_token("<unk>".into())
            .build()
            .map_err(setup)?;
        // Decoding undoes the family's normaliser exactly, removing the one prepended space.
        let decoder = DecoderSequence::new(vec![
            Replace::new("▁", " ").map_err(setup)?.into(),
            ByteFallback::default().into(),
            Fuse::default().into(),
            Strip::new(' ', 1, 0).into(),
        ]);
        let mut tok: Impl = TokenizerBuilder::new()
            .with_model(model)
            .with_normalizer(Some(family_normalizer().map_err(setup)?))
            .with_pre_tokenizer(Some(family_pre_tokenizer()))
            .with_post_processor(None)
            .with_decoder(Some(decoder.into()))
            .build()
            .map_err(setup)?;
        tok.train(&mut trainer, texts)
            .map_err(|e| DataError::failed("tokenizer training", e))?;
        // The byte tokens are vocabulary entries, not added tokens: as added tokens the literal text
        // "<0x41>" would encode to the byte token instead of its characters.
        let mut json: serde_json::Value =
            serde_json::from_str(&tok.to_string(false).map_err(setup)?)
                .map_err(|e| DataError::failed("tokenizer setup", e))?;
        if let Some(added) = json.get_mut("added_tokens").and_then(|a| a.as_array_mut()) {
            added.retain(|t| {
                t["content"]
                    .as_str()
                    .is_some_and(|c| SPECIAL_TOKENS.contains(&c))
            });
        }
        let inner = Tokenizer::from_str(&json.to_string()).map_err(setup)?;
        Ok(Self::new(inner))
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
        if let Some(fast) = &self.fast {
            return Ok(fast.encode(text));
        }
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| DataError::failed("encode", e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encodes many texts at once, in parallel on all cores.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, DataError> {
        if let Some(fast) = &self.fast {
            return Ok(fast.encode_batch(texts));
        }
        let encs = self
            .inner
            .encode_batch_fast(texts.to_vec(), false)
            .map_err(|e| DataError::failed("encode", e))?;
        Ok(encs.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, DataError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| DataError::failed("decode", e))
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trained() -> TextTokenizer {
        let corpus = ["the quick brown fox jumps over the lazy dog 12345"; 50];
        TextTokenizer::train_bpe(corpus.iter(), 400).unwrap()
    }

    #[test]
    fn specials_and_bytes_have_minicpm_ids() {
        let tok = trained();
        assert_eq!(tok.token_id("<unk>"), Some(0));
        assert_eq!(tok.token_id("<s>"), Some(1));
        assert_eq!(tok.token_id("</s>"), Some(2));
        assert_eq!(tok.token_id("<0x00>"), Some(3));
        assert_eq!(tok.token_id("<0xFF>"), Some(258));
        // Digits are split one by one.
        let ids = tok.encode("2024").unwrap();
        assert_eq!(ids.len(), 4 + 1, "{ids:?}"); // "▁" and four digits
    }

    #[test]
    fn arbitrary_utf8_round_trips_through_byte_fallback() {
        let tok = trained();
        for text in [
            "héllo wörld 🦀 汉字从未见过",
            "tabs\tand\nnewlines\u{1}\u{7f} and <0x41> literally",
            "  leading spaces and trailing  ",
            "",
            "Ω≈ç√∫˜µ≤≥÷ 𝕳𝖊𝖑𝖑𝖔 \u{200b}zero-width",
        ] {
            let ids = tok.encode(text).unwrap();
            assert_eq!(tok.decode(&ids).unwrap(), text, "{ids:?}");
        }
        // Unseen characters really go through the byte tokens, not <unk>.
        let ids = tok.encode("🦀").unwrap();
        assert!(!ids.contains(&0), "{ids:?}");
        assert!(
            ids.iter()
                .all(|&i| i <= 258 || tok.decode(&[i]).unwrap().trim().is_empty()),
            "{ids:?}"
        );
    }

    #[test]
    fn too_small_a_vocabulary_is_refused() {
        let e = TextTokenizer::train_bpe(["abc"].iter(), 100)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("too small"), "{e}");
    }
}
