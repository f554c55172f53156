//! The KV cache, allocated once: for each of a fixed number of sequence slots, every layer's keys
//! and values for up to `capacity` positions. Decoding writes one position per token in place;
//! nothing is concatenated or reallocated while generating.
//!
//! Keys are stored after RoPE. Where the rotation depends on the sequence's length (dynamic NTK
//! scaling past the trained context, docs/MODEL.md section 13), the cache also keeps every key as
//! projected, and the forward pass rotates a sequence's cached keys again whenever its length
//! changes their frequencies, so that queries and keys always turn alike (transformers' generate
//! keeps each key at the base it was first rotated with). In the first layer this gives exactly
//! the keys of a full recomputation at the current length; deeper layers' keys still derive from
//! hidden states computed at the earlier lengths, as with any cache.

use super::kernels::panels::{ColumnBuf, Panels, LANES};

/// Positions of every slot and layer, keys and values, f32, in the panels of 16 rows that the
/// runtime's f32 products read (`kernels::panels`), so that attention multiplies them where they
/// lie. For each slot, layer and KV head:
/// - keys as a `[positions, head_dim]` matrix: panels of 16 positions, each `head_dim` columns
///   (the scores `q · kᵀ` are its product with the queries);
/// - values as a `[head_dim, positions]` matrix: panels of 16 dimensions, each `capacity`
///   columns, one per position (the output `p · v` is its product with the probabilities),
///   read up to the sequence's length.
pub struct KvCache {
    layers: usize,
    kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    lens: Vec<usize>,
    keys: ColumnBuf,
    values: ColumnBuf,
    unrotated: Option<Unrotated>,
}

/// The keys before RoPE, in the layout of the rotated ones, and for each slot the sequence
/// length whose frequencies its cached keys were rotated with.
struct Unrotated {
    keys: ColumnBuf,
    rotated_for: Vec<usize>,
}

/// A cache the system cannot give the address space for (a server's `--slots` × `--context`
/// beyond the machine).
#[derive(Debug, thiserror::Error)]
#[error("a KV cache of {slots} slots x {capacity} positions ({gib:.1} GiB) cannot be allocated: {source}")]
pub struct CacheError {
    slots: usize,
    capacity: usize,
    gib: f64,
    source: std::io::Error,
}

impl KvCache {
    /// Room for `slots` sequences of up to `capacity` tokens each.
    ///
    /// # Panics
    /// Where the system refuses the address space; [`KvCache::try_new`] reports it instead.
    pub fn new(
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        slots: usize,
        capacity: usize,
    ) -> KvCache {
        KvCache::try_new(layers, kv_heads, head_dim, slots, capacity, false)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`KvCache::new`], or why it cannot be had; `keep_unrotated` keeps the keys before RoPE as
    /// well, for a model whose rotation depends on the sequence's length.
    pub fn try_new(
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        slots: usize,
        capacity: usize,
        keep_unrotated: bool,
    ) -> Result<KvCache, CacheError> {
        let heads = slots as u128 * layers as u128 * kv_heads as u128;
        let key_copies = 1 + keep_unrotated as u128;
        let columns = heads
            * (key_copies * key_columns(capacity, head_dim) as u128
                + value_columns(capacity, head_dim) as u128);
        let error = |source| CacheError {
            slots,
            capacity,
            gib: columns as f64 * std::mem::size_of::<super::kernels::panels::Column>() as f64
                / (1u64 << 30) as f64,
            source,
        };
        let buf = |per_head: usize| {
            let len = usize::try_from(heads * per_head as u128)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
            ColumnBuf::try_zeroed(len)
        };
        let keys = buf(key_columns(capacity, head_dim)).map_err(error)?;
        let values = buf(value_columns(capacity, head_dim)).map_err(error)?;
        let unrotated = match keep_unrotated {
            true => Some(Unrotated {
                keys: buf(key_columns(capacity, head_dim)).map_err(error)?,
                rotated_for: vec![0; slots],
            }),
            false => None,
        };
        Ok(KvCache {
            layers,
            kv_heads,
            head_dim,
            capacity,
            lens: vec![0; slots],
            keys,
            values,
            unrotated,
        })
    }

    /// Whether the cache keeps the keys before RoPE (see the module's documentation).
    pub fn keeps_unrotated(&self) -> bool {
        self.unrotated.is_some()
    }

    /// The sequence length whose frequencies the cached keys of `slot` are rotated with.
    pub(crate) fn rotated_for(&self, slot: usize) -> Option<usize> {
        self.unrotated.as_ref().map(|u| u.rotated_for[slot])
    }

    pub(crate) fn set_rotated_for(&mut self, slot: usize, len: usize) {
        if let Some(u) = &mut self.unrotated {
            u.rotated_for[slot] = len;
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
        let unrotated = self
            .unrotated
            .as_ref()
            .map_or(0, |u| size_of_val(u.keys.get()));
        size_of_val(self.keys.get()) + size_of_val(self.values.get()) + unrotated
    }

    pub(crate) fn advance(&mut self, slot: usize, by: usize) {
        self.lens[slot] += by;
        debug_assert!(self.lens[slot] <= self.capacity);
    }

    /// Index of KV head `head` of `slot` in `layer` among all heads.
    fn index(&self, slot: usize, layer: usize, head: usize) -> usize {
        (slot * self.layers + layer) * self.kv_heads + head
    }

    /// The keys (`[len, head_dim]`) and values (`[head_dim, len]`) of the first `len` positions
    /// of KV head `head` of `slot` in `layer`.
    pub(crate) fn head(
        &self,
        slot: usize,
        layer: usize,
        head: usize,
        len: usize,
    ) -> (Panels<'_>, Panels<'_>) {
        assert!(len <= self.capacity, "positions held");
        let i = self.index(slot, layer, head);
        let kc = key_columns(self.capacity, self.head_dim);
        let vc = value_columns(self.capacity, self.head_dim);
        let keys = Panels {
            rows: len,
            cols: self.head_dim,
            stride: self.head_dim,
            data: &self.keys.get()[i * kc..(i + 1) * kc],
        };
        let values = Panels {
            rows: self.head_dim,
            cols: len,
            stride: self.capacity,
            data: &self.values.get()[i * vc..(i + 1) * vc],
        };
        (keys, values)
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
        let vc = value_columns(self.capacity, self.head_dim);
        for h in 0..self.kv_heads {
            let i = self.index(slot, layer, h);
            let key = self.key_at(i, position);
            write_key(&mut self.keys, key, position, &k[h * hd..(h + 1) * hd]);
            let values = &mut self.values.get_mut()[i * vc..(i + 1) * vc];
            for (d, &x) in v[h * hd..(h + 1) * hd].iter().enumerate() {
                values[(d / LANES) * self.capacity + position].0[d % LANES] = x;
            }
        }
    }

    /// Keeps the keys of `slot` at `position` in `layer` as projected, before RoPE (a cache
    /// that keeps them only).
    pub(crate) fn write_unrotated(
        &mut self,
        slot: usize,
        layer: usize,
        position: usize,
        k: &[f32],
    ) {
        let hd = self.head_dim;
        for h in 0..self.kv_heads {
            let key = self.key_at(self.index(slot, layer, h), position);
            let u = self
                .unrotated
                .as_mut()
                .expect("a cache that keeps unrotated keys");
            write_key(&mut u.keys, key, position, &k[h * hd..(h + 1) * hd]);
        }
    }

    /// Rotates the first `len` cached keys of `slot`, in every layer, again from the keys
    /// before RoPE: `rotate(position, key)` turns one head's key in place.
    pub(crate) fn rotate_again(
        &mut self,
        slot: usize,
        len: usize,
        rotate: impl Fn(usize, &mut [f32]),
    ) {
        let hd = self.head_dim;
        let mut key = vec![0f32; hd];
        for layer in 0..self.layers {
            for h in 0..self.kv_heads {
                let i = self.index(slot, layer, h);
                for position in 0..len {
                    let at = self.key_at(i, position);
                    let u = self
                        .unrotated
                        .as_ref()
                        .expect("a cache that keeps unrotated keys");
                    for (x, column) in key.iter_mut().zip(&u.keys.get()[at..at + hd]) {
                        *x = column.0[position % LANES];
                    }
                    rotate(position, &mut key);
                    write_key(&mut self.keys, at, position, &key);
                }
            }
        }
    }

    /// The first column of the key of KV head index `i` at `position`.
    fn key_at(&self, i: usize, position: usize) -> usize {
        i * key_columns(self.capacity, self.head_dim) + (position / LANES) * self.head_dim
    }
}

/// Writes one head's key into its `head_dim` columns from `at`, in `position`'s lane.
fn write_key(keys: &mut ColumnBuf, at: usize, position: usize, key: &[f32]) {
    for (column, &x) in keys.get_mut()[at..at + key.len()].iter_mut().zip(key) {
        column.0[position % LANES] = x;
    }
}

/// Columns of one head's keys: a panel of `head_dim` columns per 16 positions.
fn key_columns(capacity: usize, head_dim: usize) -> usize {
    capacity.div_ceil(LANES) * head_dim
}

/// Columns of one head's values: a panel of `capacity` columns per 16 dimensions.
fn value_columns(capacity: usize, head_dim: usize) -> usize {
    head_dim.div_ceil(LANES) * capacity
}
