//! A fast encoder for tokenizers of the family `TextTokenizer::train_bpe` makes, giving the same
//! ids as the HF pipeline.
//!
//! Profiling `data prepare` showed the HF encoder spending most of its time outside BPE: in
//! allocation and in the offset bookkeeping of its normalised strings, once per pre-token. For
//! our family the normaliser and pre-tokeniser are simple enough to do on the raw text
//! (`pre_tokens`), and the ids of a pre-token never depend on its context, so they are
//! remembered (`memo`); only pre-tokens not seen before go through BPE, the model's own
//! algorithm run on prebuilt tables (`bpe_merges`).
//!
//! Any other tokenizer (a released MiniCPM tokenizer.json included) keeps the generic HF path:
//! `FastEncoder::for_tokenizer` accepts only the exact shape it reproduces.

use crate::bpe_merges::{BpeMerges, MergeScratch};
use crate::memo::Memo;
use crate::pre_tokens::{PreTokens, MARKER};
use crate::tokenizer::{family_normalizer, family_pre_tokenizer};
use aho_corasick::{AhoCorasick, MatchKind};
use rayon::prelude::*;
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokenizers::{ModelWrapper, Tokenizer};

pub struct FastEncoder {
    bpe: BpeMerges,
    /// The ids of a lone "▁": every space after the first of a run is one, and in indented code
    /// they are most pre-tokens.
    marker_ids: Vec<u32>,
    added: Option<AddedTokens>,
    /// One state per thread of rayon's pool, plus one shared by callers outside it; a state is
    /// locked for a whole document, so each pool thread always finds its own free.
    states: Vec<Mutex<ThreadState>>,
}

#[derive(Default)]
struct ThreadState {
    memo: Memo,
    scratch: MergeScratch,
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
        let shape_matches = same_json(tok.get_normalizer(), family_normalizer().ok().as_ref())
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
        let states = (0..=rayon::current_num_threads())
            .map(|_| Mutex::new(ThreadState::default()))
            .collect();
        let bpe = BpeMerges::for_model(bpe)?;
        let mut marker_ids = Vec::new();
        bpe.encode_word(
            &MARKER.to_string(),
            &mut MergeScratch::default(),
            &mut marker_ids,
        );
        Some(FastEncoder {
            bpe,
            marker_ids,
            added,
            states,
        })
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut state = self.state_of_this_thread();
        // About 3 bytes per token is typical; the guess only saves reallocations.
        let mut ids = Vec::with_capacity(text.len() / 3 + 1);
        let mut plain_start = 0;
        if let Some(added) = &self.added {
            for m in added.patterns.find_iter(text) {
                self.encode_plain(&text[plain_start..m.start()], &mut state, &mut ids);
                ids.push(added.ids[m.pattern().as_usize()]);
                plain_start = m.end();
            }
        }
        self.encode_plain(&text[plain_start..], &mut state, &mut ids);
        ids
    }

    /// Encodes many texts in parallel on rayon's pool; the output order is the input order.
    pub fn encode_batch(&self, texts: &[&str]) -> Vec<Vec<u32>> {
        texts.par_iter().map(|text| self.encode(text)).collect()
    }

    /// Encodes text that holds no added tokens.
    fn encode_plain(&self, text: &str, state: &mut ThreadState, ids: &mut Vec<u32>) {
        let mut spelled = String::new();
        for token in PreTokens::new(text) {
            if token.marked && token.body.is_empty() {
                ids.extend_from_slice(&self.marker_ids);
                continue;
            }
            if let Some(known) = state.memo.get(token) {
                ids.extend_from_slice(known);
                continue;
            }
            spelled.clear();
            if token.marked {
                spelled.push(MARKER);
            }
            spelled.push_str(token.body);
            let start = ids.len();
            self.bpe.encode_word(&spelled, &mut state.scratch, ids);
            state.memo.insert(token, &ids[start..]);
        }
    }

    fn state_of_this_thread(&self) -> MutexGuard<'_, ThreadState> {
        let shared = self.states.len() - 1;
        let slot = rayon::current_thread_index()
            .filter(|&i| i < shared)
            .unwrap_or(shared);
        // A panic while a state was locked leaves valid (if partial) buffers, so poisoning is
        // ignored.
        self.states[slot]
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
