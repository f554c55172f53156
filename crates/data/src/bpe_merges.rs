//! BPE on one pre-token, exactly as the HF `BPE` model does it, minus its per-call costs.
//!
//! The HF model returns `Token`s (each with a freshly allocated copy of its string) and looks up
//! a byte-fallback token by formatting its name (`format!("<0x{b:02X}>")`) for every byte of
//! every character outside the vocabulary. On Chinese text, whose pre-tokens are whole lines
//! that rarely repeat, those costs dominate. Here characters map to ids through prebuilt tables
//! and the merge loop is the model's own algorithm (`Word::merge_all`): a queue of candidate
//! merges ordered by rank then position, stale candidates skipped by the same test.

use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use tokenizers::models::bpe::BPE;

pub struct BpeMerges {
    char_ids: FxHashMap<char, u32>,
    byte_ids: [u32; 256],
    /// (left id, right id) -> (rank, merged id), built as the HF model builds it.
    merges: FxHashMap<(u32, u32), (u32, u32)>,
}

/// Buffers reused from one pre-token to the next.
#[derive(Default)]
pub struct MergeScratch {
    symbols: Vec<Symbol>,
    /// Candidate merges: (rank, position of the left symbol, merged id), smallest first.
    queue: BinaryHeap<Reverse<(u32, u32, u32)>>,
}

/// One symbol of the word being merged, in a linked list over `MergeScratch::symbols`.
#[derive(Clone, Copy)]
struct Symbol {
    id: u32,
    prev: Option<u32>,
    next: Option<u32>,
    /// Merged into its left neighbour.
    removed: bool,
}

impl BpeMerges {
    /// The tables for `bpe`, or `None` when it uses features this does not reproduce
    /// (dropout, subword prefixes or suffixes, whole-word lookup, `<unk>` instead of byte fallback).
    pub fn for_model(bpe: &BPE) -> Option<Self> {
        if bpe.dropout.is_some()
            || bpe.continuing_subword_prefix.is_some()
            || bpe.end_of_word_suffix.is_some()
            || bpe.ignore_merges
            || !bpe.byte_fallback
        {
            return None;
        }
        // The model keeps its vocabulary and merges private; its serialised form lists the
        // merges in rank order.
        #[derive(serde::Deserialize)]
        struct Serialised {
            vocab: FxHashMap<String, u32>,
            merges: Vec<(String, String)>,
        }
        let model: Serialised = serde_json::from_value(serde_json::to_value(bpe).ok()?).ok()?;
        let mut byte_ids = [0; 256];
        for (b, id) in byte_ids.iter_mut().enumerate() {
            // Every byte must have its token, or some characters would fall back to <unk>.
            *id = *model.vocab.get(&format!("<0x{b:02X}>"))?;
        }
        let char_ids = model
            .vocab
            .iter()
            .filter_map(|(token, &id)| {
                let mut chars = token.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => Some((c, id)),
                    _ => None,
                }
            })
            .collect();
        let mut merges = FxHashMap::default();
        for (rank, (a, b)) in model.merges.iter().enumerate() {
            let pair = (*model.vocab.get(a)?, *model.vocab.get(b)?);
            let merged = *model.vocab.get(&format!("{a}{b}"))?;
            merges.insert(pair, (rank as u32, merged));
        }
        Some(BpeMerges {
            char_ids,
            byte_ids,
            merges,
        })
    }

    /// Appends the ids of `word` (one pre-token, "▁" included) to `out`.
    pub fn encode_word(&self, word: &str, scratch: &mut MergeScratch, out: &mut Vec<u32>) {
        let symbols = &mut scratch.symbols;
        symbols.clear();
        let mut push = |id: u32| {
            let n = symbols.len() as u32;
            if let Some(last) = symbols.last_mut() {
                last.next = Some(n);
            }
            symbols.push(Symbol {
                id,
                prev: n.checked_sub(1),
                next: None,
                removed: false,
            });
        };
        for c in word.chars() {
            match self.char_ids.get(&c) {
                Some(&id) => push(id),
                None => {
                    for b in c.encode_utf8(&mut [0; 4]).bytes() {
                        push(self.byte_ids[b as usize]);
                    }
                }
            }
        }

        let queue = &mut scratch.queue;
        queue.clear();
        for (pos, pair) in symbols.windows(2).enumerate() {
            if let Some(&(rank, merged)) = self.merges.get(&(pair[0].id, pair[1].id)) {
                queue.push(Reverse((rank, pos as u32, merged)));
            }
        }
        while let Some(Reverse((_, pos, merged))) = queue.pop() {
            let pos = pos as usize;
            let current = symbols[pos];
            let Some(right_pos) = current.next.filter(|_| !current.removed) else {
                continue;
            };
            let right = symbols[right_pos as usize];
            // A candidate is stale once either symbol has changed; the model tests that the
            // pair there now still merges into the same id.
            match self.merges.get(&(current.id, right.id)) {
                Some(&(_, now)) if now == merged => {}
                _ => continue,
            }
            symbols[pos].id = merged;
            symbols[pos].next = right.next;
            symbols[right_pos as usize].removed = true;
            if let Some(after) = right.next {
                symbols[after as usize].prev = Some(pos as u32);
            }
            if let Some(prev) = current.prev {
                if let Some(&(rank, m)) = self.merges.get(&(symbols[prev as usize].id, merged)) {
                    queue.push(Reverse((rank, prev, m)));
                }
            }
            if let Some(after) = right.next {
                if let Some(&(rank, m)) = self.merges.get(&(merged, symbols[after as usize].id)) {
                    queue.push(Reverse((rank, pos as u32, m)));
                }
            }
        }
        out.extend(symbols.iter().filter(|s| !s.removed).map(|s| s.id));
    }
}
