//! A bounded map from pre-token to token ids.
//!
//! Word frequencies are Zipfian: a few thousand distinct pre-tokens make up most of any corpus,
//! so remembering their ids skips nearly all BPE work.
//!
//! Lookups are bound by memory latency, not arithmetic: the profile of a first version (boxed
//! keys and ids in a hash map) was dominated by cache misses. So keys and ids are stored inline,
//! and a small direct-mapped table of recent entries, sized to stay in a core's L2 cache, answers
//! the frequent pre-tokens before the large map, which holds up to a quarter million entries, is
//! consulted. Only short pre-tokens with few ids fit, which are the ones that repeat; the bound
//! on entries keeps memory flat whatever the corpus.

use crate::pre_tokens::PreToken;
use rustc_hash::FxHashMap;
use std::hash::{Hash, Hasher};

/// Longest body remembered, in bytes (the marker is a flag, not stored).
const MAX_BODY_BYTES: usize = 23;

/// Most ids remembered for one pre-token.
const MAX_IDS: usize = 4;

/// Entries kept before the memo starts over: about 12 MB.
const MAX_ENTRIES: usize = 1 << 18;

/// Slots of the table of recent entries: 4096 x 48 bytes, 192 KiB.
const RECENT_SLOTS: usize = 1 << 12;

pub struct Memo {
    /// Direct-mapped: each key has one slot, which the latest key mapping there holds.
    recent: Box<[Slot]>,
    entries: FxHashMap<Key, Ids>,
}

#[derive(Clone, Copy)]
struct Slot {
    key: Key,
    ids: Ids,
}

impl Slot {
    const EMPTY: Slot = Slot {
        key: Key([0; 3]),
        ids: Ids {
            len: u8::MAX,
            ids: [0; MAX_IDS],
        },
    };
}

impl Default for Memo {
    fn default() -> Self {
        Memo {
            recent: vec![Slot::EMPTY; RECENT_SLOTS].into_boxed_slice(),
            entries: FxHashMap::default(),
        }
    }
}

/// A pre-token packed into 24 bytes: the body, zero-padded, then its length and the marker flag.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key([u64; 3]);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for word in self.0 {
            state.write_u64(word);
        }
    }
}

impl Key {
    fn new(token: PreToken) -> Option<Key> {
        let body = token.body.as_bytes();
        if body.len() > MAX_BODY_BYTES {
            return None;
        }
        let mut bytes = [0u8; 24];
        bytes[..body.len()].copy_from_slice(body);
        bytes[MAX_BODY_BYTES] = body.len() as u8 | (u8::from(token.marked) << 7);
        let word = |i: usize| u64::from_ne_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
        Some(Key([word(0), word(1), word(2)]))
    }

    fn recent_slot(self) -> usize {
        // Multiplicative hashing; the top bits are the best mixed.
        let [a, b, c] = self.0;
        let mixed = (a ^ b.rotate_left(21) ^ c.rotate_left(42)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed >> (64 - RECENT_SLOTS.trailing_zeros())) as usize
    }
}

#[derive(Clone, Copy)]
struct Ids {
    len: u8,
    ids: [u32; MAX_IDS],
}

impl Ids {
    fn as_slice(&self) -> &[u32] {
        &self.ids[..self.len as usize]
    }
}

impl Memo {
    pub fn get(&mut self, token: PreToken) -> Option<&[u32]> {
        let key = Key::new(token)?;
        let slot = key.recent_slot();
        // An empty slot's length (u8::MAX) is never a real entry's, so its key never matches.
        if self.recent[slot].key != key || self.recent[slot].ids.len == u8::MAX {
            let ids = *self.entries.get(&key)?;
            self.recent[slot] = Slot { key, ids };
        }
        Some(self.recent[slot].ids.as_slice())
    }

    pub fn insert(&mut self, token: PreToken, ids: &[u32]) {
        let Some(key) = Key::new(token) else {
            return;
        };
        if ids.len() > MAX_IDS {
            return;
        }
        if self.entries.len() >= MAX_ENTRIES {
            // Starting over is simpler than eviction and costs little: the frequent pre-tokens
            // come back within a few documents (and stay in the recent table meanwhile).
            self.entries.clear();
        }
        let mut inline = Ids {
            len: ids.len() as u8,
            ids: [0; MAX_IDS],
        };
        inline.ids[..ids.len()].copy_from_slice(ids);
        self.entries.insert(key, inline);
        self.recent[key.recent_slot()] = Slot { key, ids: inline };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_and_unmarked_bodies_and_lengths_are_distinct_keys() {
        let mut memo = Memo::default();
        let t = |marked, body| PreToken { marked, body };
        memo.insert(t(true, "ab"), &[1]);
        memo.insert(t(false, "ab"), &[2, 3]);
        memo.insert(t(false, "ab\0"), &[4]);
        memo.insert(t(true, ""), &[5]);
        assert_eq!(memo.get(t(true, "ab")), Some(&[1][..]));
        assert_eq!(memo.get(t(false, "ab")), Some(&[2, 3][..]));
        assert_eq!(memo.get(t(false, "ab\0")), Some(&[4][..]));
        assert_eq!(memo.get(t(true, "")), Some(&[5][..]));
        assert_eq!(memo.get(t(false, "")), None);
        // Too long a body or too many ids: not remembered, not an error.
        let long = "x".repeat(MAX_BODY_BYTES + 1);
        memo.insert(t(true, &long), &[1]);
        memo.insert(t(true, "many"), &[1, 2, 3, 4, 5]);
        assert_eq!(memo.get(t(true, &long)), None);
        assert_eq!(memo.get(t(true, "many")), None);
    }

    #[test]
    fn keys_sharing_a_recent_slot_keep_their_own_ids() {
        let mut memo = Memo::default();
        let bodies: Vec<String> = (0..3 * RECENT_SLOTS).map(|i| format!("w{i}")).collect();
        for (i, body) in bodies.iter().enumerate() {
            let token = PreToken {
                marked: i % 2 == 0,
                body,
            };
            memo.insert(token, &[i as u32]);
        }
        for _ in 0..2 {
            for (i, body) in bodies.iter().enumerate() {
                let token = PreToken {
                    marked: i % 2 == 0,
                    body,
                };
                assert_eq!(memo.get(token), Some(&[i as u32][..]), "{body}");
                let other = PreToken {
                    marked: i % 2 == 1,
                    body,
                };
                assert_eq!(memo.get(other), None, "{body}");
            }
        }
    }
}
