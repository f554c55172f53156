//! A fast encoder for tokenizers of the family `TextTokenizer::train_bpe` makes, giving the same
//! ids as the HF pipeline.
//!
//! Profiling `data prepare` showed the HF encoder spending most of its time outside BPE: in
//! allocation and in the offset bookkeeping of its normalised strings, once per pre-token. For
//! our family the normaliser and pre-tokeniser are simple enough to do on the raw text
//! (`pre_tokens`), and the ids of a pre-token never depend on its context, so they are
//! remembered (`memo`); the HF BPE model is only asked about pre-tokens not seen before.
//!
//! Any other tokenizer (a released MiniCPM tokenizer.json included) keeps the generic HF path:
//! `FastEncoder::for_tokenizer` accepts only the exact shape it reproduces.

use crate::error::DataError;
use crate::memo::Memo;
use crate::pre_tokens::{PreTokens, MARKER};
use crate::tokenizer::{family_normalizer, family_pre_tokenizer};
use aho_corasick::{AhoCorasick, MatchKind};
use rayon::prelude::*;
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokenizers::models::bpe::BPE;
use tokenizers::{Model, ModelWrapper, Tokenizer};

pub struct FastEncoder {
    bpe: BPE,
    added: Option<AddedTokens>,
    /// One memo per thread of rayon's pool, plus one shared by callers outside it; a memo is
    /// locked for a whole document, so each pool thread always finds its own free.
    memos: Vec<Mutex<Memo>>,
}

/// The added tokens (`<s>`, `</s>`, ...), which the HF pipeline cuts out of the raw text before
/// normalising, matched the way it matches them (leftmost, then longest).
struct AddedTokens {
    patterns: AhoCorasick,
    ids: Vec<u32>,
}

impl FastEncoder {
    /// The fast encoder for `tok` when it is of our family, else `None`.
    pub fn for_tokenizer(tok: &Tokenizer) -> Option<Self> {
        let ModelWrapper::BPE(bpe) = tok.get_model() else {
            return None;
        };
        // With dropout the ids of a pre-token are random, so they cannot be remembered.
        let shape_matches = bpe.dropout.is_none()
            && same_json(tok.get_normalizer(), family_normalizer().ok().as_ref())
            && same_json(tok.get_pre_tokenizer(), Some(&family_pre_tokenizer()))
            && tok.get_post_processor().is_none()
            && tok.get_truncation().is_none()
            && tok.get_padding().is_none()
            && !tok.get_encode_special_tokens();
        if !shape_matches {
            return None;
        }
        let mut added: Vec<_> = tok.get_added_tokens_decoder().into_iter().collect();
        // Added tokens matched after normalisation or with stripping rules are not reproduced.
        if added
            .iter()
            .any(|(_, t)| t.normalized || t.lstrip || t.rstrip || t.single_word)
        {
            return None;
        }
        added.sort_by_key(|&(id, _)| id);
        let added = if added.is_empty() {
            None
        } else {
            let patterns = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(added.iter().map(|(_, t)| t.content.as_str()))
                .ok()?;
            Some(AddedTokens {
                patterns,
                ids: added.iter().map(|&(id, _)| id).collect(),
            })
        };
        let memos = (0..=rayon::current_num_threads())
            .map(|_| Mutex::new(Memo::default()))
            .collect();
        Some(FastEncoder {
            bpe: bpe.clone(),
            added,
            memos,
        })
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>, DataError> {
        let mut memo = self.memo_of_this_thread();
        // About 3 bytes per token is typical; the guess only saves reallocations.
        let mut ids = Vec::with_capacity(text.len() / 3 + 1);
        let mut plain_start = 0;
        if let Some(added) = &self.added {
            for m in added.patterns.find_iter(text) {
                self.encode_plain(&text[plain_start..m.start()], &mut memo, &mut ids)?;
                ids.push(added.ids[m.pattern().as_usize()]);
                plain_start = m.end();
            }
        }
        self.encode_plain(&text[plain_start..], &mut memo, &mut ids)?;
        Ok(ids)
    }

    /// Encodes many texts in parallel on rayon's pool; the output order is the input order.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, DataError> {
        texts.par_iter().map(|text| self.encode(text)).collect()
    }

    /// Encodes text that holds no added tokens.
    fn encode_plain(
        &self,
        text: &str,
        memo: &mut Memo,
        ids: &mut Vec<u32>,
    ) -> Result<(), DataError> {
        let mut spelled = String::new();
        for token in PreTokens::new(text) {
            if let Some(known) = memo.get(token) {
                ids.extend_from_slice(known);
                continue;
            }
            spelled.clear();
            if token.marked {
                spelled.push(MARKER);
            }
            spelled.push_str(token.body);
            let start = ids.len();
            let tokens = self
                .bpe
                .tokenize(&spelled)
                .map_err(|e| DataError::Invalid(format!("encode: {e}")))?;
            ids.extend(tokens.iter().map(|t| t.id));
            memo.insert(token, &ids[start..]);
        }
        Ok(())
    }

    fn memo_of_this_thread(&self) -> MutexGuard<'_, Memo> {
        let shared = self.memos.len() - 1;
        let slot = rayon::current_thread_index()
            .filter(|&i| i < shared)
            .unwrap_or(shared);
        // A panic while a memo was locked leaves it a valid map, so poisoning is ignored.
        self.memos[slot]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether two tokenizer components serialise identically (they have no `PartialEq`).
fn same_json<T: serde::Serialize>(a: Option<&T>, b: Option<&T>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => match (serde_json::to_value(a), serde_json::to_value(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        },
        _ => false,
    }
}
