//! A bounded map from pre-token to token ids.
//!
//! Word frequencies are Zipfian: a few thousand distinct pre-tokens make up most of any corpus,
//! so remembering their ids skips nearly all BPE work. The bound keeps memory flat on corpora of
//! mostly unique pre-tokens (Chinese text without spaces is one long pre-token per line).

use crate::pre_tokens::PreToken;
use rustc_hash::FxHashMap;

/// Pre-tokens longer than this are encoded every time: they rarely repeat. The HF BPE model's own
/// cache draws the line at the same length.
const MAX_REMEMBERED_BYTES: usize = 256;

/// Entries kept before the memo starts over; a few tens of MB at most.
const MAX_ENTRIES: usize = 1 << 18;

#[derive(Default)]
pub struct Memo {
    /// Keyed by body; the marked and unmarked forms of a body are different pre-tokens.
    marked: FxHashMap<Box<str>, Box<[u32]>>,
    unmarked: FxHashMap<Box<str>, Box<[u32]>>,
}

impl Memo {
    pub fn get(&self, token: PreToken) -> Option<&[u32]> {
        self.map(token.marked).get(token.body).map(|ids| &ids[..])
    }

    pub fn insert(&mut self, token: PreToken, ids: &[u32]) {
        if token.body.len() > MAX_REMEMBERED_BYTES {
            return;
        }
        if self.marked.len() + self.unmarked.len() >= MAX_ENTRIES {
            // Starting over is simpler than eviction and costs little: the frequent pre-tokens
            // come back within a few documents.
            self.marked.clear();
            self.unmarked.clear();
        }
        let map = if token.marked {
            &mut self.marked
        } else {
            &mut self.unmarked
        };
        map.insert(token.body.into(), ids.into());
    }

    fn map(&self, marked: bool) -> &FxHashMap<Box<str>, Box<[u32]>> {
        if marked {
            &self.marked
        } else {
            &self.unmarked
        }
    }
}
