//! The KV cache, allocated once: for each of a fixed number of sequence slots, every layer's keys
//! and values for up to `capacity` positions. Decoding writes one position per token in place;
//! nothing is concatenated or reallocated while generating.
//!
//! Keys are stored after RoPE. The rotation is computed per forward pass from the config and the
//! sequence's length (docs/MODEL.md section 1), so a different RoPE base, as dynamic NTK scaling
//! uses past the trained context, applies to the tokens that arrive under it, exactly as the
//! training forward's cache does.

/// Positions of every slot and layer, keys and values, f32, each KV head's positions contiguous
/// (`[slot][layer][kv_head][position][head_dim]`), so that attention reads one head's keys as a
/// `[positions, head_dim]` matrix.
pub struct KvCache {
    layers: usize,
    kv_heads: usize,
    head_dim: usize,
    kv_dim: usize,
    capacity: usize,
    lens: Vec<usize>,
    keys: Vec<f32>,
    values: Vec<f32>,
}

impl KvCache {
    /// Room for `slots` sequences of up to `capacity` tokens each.
    pub fn new(
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        slots: usize,
        capacity: usize,
    ) -> KvCache {
        let kv_dim = kv_heads * head_dim;
        let n = slots * layers * capacity * kv_dim;
        KvCache {
            layers,
            kv_heads,
            head_dim,
            kv_dim,
            capacity,
            lens: vec![0; slots],
            keys: vec![0.0; n],
            values: vec![0.0; n],
        }
    }

    pub fn slots(&self) -> usize {
        self.lens.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Tokens cached for `slot`.
    pub fn len(&self, slot: usize) -> usize {
        self.lens[slot]
    }

    /// Forgets the tokens of `slot` from position `len` on (0 frees the slot; a speculative
    /// decoder rolls back rejected tokens this way).
    pub fn truncate(&mut self, slot: usize, len: usize) {
        self.lens[slot] = self.lens[slot].min(len);
    }

    /// Bytes held, keys and values together.
    pub fn bytes(&self) -> usize {
        (self.keys.len() + self.values.len()) * std::mem::size_of::<f32>()
    }

    pub(crate) fn advance(&mut self, slot: usize, by: usize) {
        self.lens[slot] += by;
        debug_assert!(self.lens[slot] <= self.capacity);
    }

    fn offset(&self, slot: usize, layer: usize) -> usize {
        (slot * self.layers + layer) * self.capacity * self.kv_dim
    }

    /// Keys and values of KV head `head` of `slot` in `layer`, `[capacity, head_dim]` each.
    pub(crate) fn head(&self, slot: usize, layer: usize, head: usize) -> (&[f32], &[f32]) {
        let len = self.capacity * self.head_dim;
        let start = self.offset(slot, layer) + head * len;
        (
            &self.keys[start..start + len],
            &self.values[start..start + len],
        )
    }

    /// Writes the keys and values (`[kv_heads * head_dim]` each) of `slot` at `position` in
    /// `layer`.
    pub(crate) fn write(
        &mut self,
        slot: usize,
        layer: usize,
        position: usize,
        k: &[f32],
        v: &[f32],
    ) {
        let hd = self.head_dim;
        for h in 0..self.kv_heads {
            let at = self.offset(slot, layer) + (h * self.capacity + position) * hd;
            self.keys[at..at + hd].copy_from_slice(&k[h * hd..(h + 1) * hd]);
            self.values[at..at + hd].copy_from_slice(&v[h * hd..(h + 1) * hd]);
        }
    }
}
