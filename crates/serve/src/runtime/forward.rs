//! One forward pass of the runtime over a batch of sequences of any lengths: prompts being
//! prefilled and sequences decoding one token share every matrix product, so each weight is
//! read once per pass (docs/MODEL.md section 1 is the computation).

use super::attention::{self, Run};
use super::cache::KvCache;
use super::kernels::{exp, Backend};
use super::model::{FeedForward, InferenceModel, Layer, Mlp};
use super::rope::Rotation;
use super::Matrix;
use minicpm_model::moe::Routing;
use minicpm_model::rope::{same_frequencies, Frequencies};
use rayon::prelude::*;

/// New tokens for the sequence in cache slot `slot`; their positions continue after the
/// tokens the slot already holds.
#[derive(Debug, Clone, Copy)]
pub struct Sequence<'a> {
    pub slot: usize,
    pub tokens: &'a [u32],
}

/// Which positions get logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// The last new token of each sequence (generation).
    Last,
    /// Every new token (scoring a text, verifying a draft).
    All,
    /// None: a chunk of a prompt whose remainder comes in a later pass.
    Skip,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "the sequence in slot {slot} would hold {len} tokens, more than the context of {capacity}"
    )]
    ContextFull {
        slot: usize,
        len: usize,
        capacity: usize,
    },
    #[error("token id {token} is outside the vocabulary of {vocab}")]
    TokenOutOfRange { token: u32, vocab: usize },
    #[error("slot {slot} does not exist (the cache has {slots})")]
    NoSuchSlot { slot: usize, slots: usize },
    #[error("slot {slot} appears twice in one forward pass")]
    SlotTwice { slot: usize },
    #[error("a sequence with no new tokens")]
    Empty,
    #[error("the prompt has {len} tokens, more than the model's context of {limit}")]
    PromptTooLong { len: usize, limit: usize },
    #[error("logits asked for position {row} of a pass of {tokens} tokens")]
    NoSuchRow { row: usize, tokens: usize },
    #[error("request {index}: {what}")]
    BadRequest { index: usize, what: String },
}

/// Where one new token sits: its cache slot, its position, and the length its sequence will
/// have after this pass.
#[derive(Clone, Copy)]
struct Place {
    slot: usize,
    position: usize,
    total_len: usize,
}

/// Where a pass's tokens sit, as every layer's attention needs it.
struct Block<'a> {
    places: &'a [Place],
    rotations: &'a [Rotation],
    runs: &'a [Run],
}

/// Passes over fewer values than this run on one thread: waking the pool costs more than the
/// work (a decoding step's norms and rotations, 16 rows of 512 at d512, take a few
/// microseconds).
const PARALLEL_VALUES: usize = 16 * 1024;

fn for_each_row(buf: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if buf.len() >= PARALLEL_VALUES && buf.len() >= 2 * width {
        buf.par_chunks_mut(width)
            .enumerate()
            .for_each(|(i, r)| f(i, r));
    } else {
        buf.chunks_mut(width).enumerate().for_each(|(i, r)| f(i, r));
    }
}

/// `out = x * rsqrt(mean(x²) + eps) * weight` for each row.
fn rms_norm(x: &[f32], weight: &[f32], eps: f64, out: &mut [f32]) {
    let d = weight.len();
    for_each_row(out, d, |i, o| {
        let row = &x[i * d..(i + 1) * d];
        let mean = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (mean + eps as f32).sqrt();
        for ((o, &v), &w) in o.iter_mut().zip(row).zip(weight) {
            *o = v * inv * w;
        }
    });
}

/// `x += y * scale`.
fn add_scaled(x: &mut [f32], y: &[f32], scale: f32) {
    x.iter_mut().zip(y).for_each(|(a, &b)| *a += b * scale);
}

impl InferenceModel {
    /// Runs the new tokens of `seqs` through the model, appending their keys and values to
    /// `cache`, and returns logits `[rows, vocab]` for the positions `which` asks for, in the
    /// order of `seqs`. Nothing is written to the cache when the input is refused.
    pub fn forward(
        &self,
        cache: &mut KvCache,
        seqs: &[Sequence],
        which: Logits,
    ) -> Result<Vec<f32>, RuntimeError> {
        self.forward_each(cache, seqs, &vec![which; seqs.len()])
    }

    /// [`forward`](Self::forward) with a choice of logits for each sequence (`which[i]` for
    /// `seqs[i]`): a server's pass mixes decoding sequences, prompts being echoed with their
    /// log-probabilities, and chunks of prompts that need none.
    pub fn forward_each(
        &self,
        cache: &mut KvCache,
        seqs: &[Sequence],
        which: &[Logits],
    ) -> Result<Vec<f32>, RuntimeError> {
        assert_eq!(seqs.len(), which.len(), "one logits choice per sequence");
        let mut rows = Vec::new();
        let mut start = 0;
        for (s, w) in seqs.iter().zip(which) {
            let end = start + s.tokens.len();
            match w {
                Logits::Last => rows.push(end - 1),
                Logits::All => rows.extend(start..end),
                Logits::Skip => {}
            }
            start = end;
        }
        self.forward_rows(cache, seqs, &rows)
    }

    /// [`forward`](Self::forward) with logits for exactly the positions `rows` names: indices
    /// into the pass's new tokens, the sequences' tokens one after another. Scoring a
    /// continuation needs only its own positions, and the LM head is a large share of a small
    /// model's work.
    pub fn forward_rows(
        &self,
        cache: &mut KvCache,
        seqs: &[Sequence],
        rows: &[usize],
    ) -> Result<Vec<f32>, RuntimeError> {
        let places = self.check(cache, seqs)?;
        if let Some(&row) = rows.iter().find(|&&r| r >= places.len()) {
            return Err(RuntimeError::NoSuchRow {
                row,
                tokens: places.len(),
            });
        }
        let tokens: Vec<u32> = seqs.iter().flat_map(|s| s.tokens.iter().copied()).collect();
        let x = self
            .pool
            .install(|| self.layers_pass(cache, &tokens, &places));
        for s in seqs {
            cache.advance(s.slot, s.tokens.len());
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let d = self.config.hidden_size;
        let mut picked = Vec::with_capacity(rows.len() * d);
        for &r in rows {
            picked.extend_from_slice(&x[r * d..(r + 1) * d]);
        }
        Ok(self.pool.install(|| self.logits(&picked, rows.len())))
    }

    fn check(&self, cache: &KvCache, seqs: &[Sequence]) -> Result<Vec<Place>, RuntimeError> {
        let vocab = self.config.vocab_size;
        let mut seen = vec![false; cache.slots()];
        let mut places = Vec::new();
        for s in seqs {
            let slots = cache.slots();
            if s.slot >= slots {
                return Err(RuntimeError::NoSuchSlot {
                    slot: s.slot,
                    slots,
                });
            }
            if std::mem::replace(&mut seen[s.slot], true) {
                return Err(RuntimeError::SlotTwice { slot: s.slot });
            }
            if s.tokens.is_empty() {
                return Err(RuntimeError::Empty);
            }
            if let Some(&token) = s.tokens.iter().find(|&&t| t as usize >= vocab) {
                return Err(RuntimeError::TokenOutOfRange { token, vocab });
            }
            let start = cache.len(s.slot);
            let total_len = start + s.tokens.len();
            if total_len > cache.capacity() {
                return Err(RuntimeError::ContextFull {
                    slot: s.slot,
                    len: total_len,
                    capacity: cache.capacity(),
                });
            }
            places.extend((start..total_len).map(|position| Place {
                slot: s.slot,
                position,
                total_len,
            }));
        }
        Ok(places)
    }

    /// The residual stream `[tokens, hidden]` after the last layer.
    fn layers_pass(&self, cache: &mut KvCache, tokens: &[u32], places: &[Place]) -> Vec<f32> {
        let cfg = &self.config;
        let (d, n) = (cfg.hidden_size, tokens.len());
        let mut x = vec![0f32; n * d];
        let emb = &self.weights.embed;
        let scale_emb = cfg.scale_emb as f32;
        for_each_row(&mut x, d, |i, row| {
            emb.row_f32(tokens[i] as usize, row);
            row.iter_mut().for_each(|v| *v *= scale_emb);
        });
        let rotations = self.rotations(cache, places);
        let runs = attention::runs(places.iter().map(|p| (p.slot, p.position)));
        let block = Block {
            places,
            rotations: &rotations,
            runs: &runs,
        };
        let mut scratch = Scratch::new(self, n);
        for (i, layer) in self.weights.layers.iter().enumerate() {
            self.attention_block(i, layer, cache, &mut x, &block, &mut scratch);
            self.mlp_block(layer, &mut x, &mut scratch);
        }
        x
    }

    /// Each new token's rotation, from the frequencies of its sequence's length after this pass.
    /// Where those depend on the length (dynamic NTK), a sequence's cached keys rotated with
    /// other frequencies are rotated again first (see [`KvCache`]).
    fn rotations(&self, cache: &mut KvCache, places: &[Place]) -> Vec<Rotation> {
        let cfg = &self.config;
        let mut rotations = Vec::with_capacity(places.len());
        let mut freqs: Option<Frequencies> = None;
        for (i, p) in places.iter().enumerate() {
            let starts_sequence = i == 0 || places[i - 1].slot != p.slot;
            if !starts_sequence {
                let f = freqs.as_ref().expect("set at the sequence's first place");
                rotations.push(Rotation::new(f, p.position));
                continue;
            }
            let f = Frequencies::new(cfg, p.total_len);
            if let Some(before) = cache.rotated_for(p.slot) {
                if p.position > 0 && !same_frequencies(cfg, before, p.total_len) {
                    let (hd, layout) = (cfg.head_dim(), self.rope_layout);
                    cache.rotate_again(p.slot, p.position, |position, key| {
                        Rotation::new(&f, position).apply(key, hd, layout)
                    });
                }
                cache.set_rotated_for(p.slot, p.total_len);
            }
            rotations.push(Rotation::new(&f, p.position));
            freqs = Some(f);
        }
        rotations
    }

    fn attention_block(
        &self,
        index: usize,
        layer: &Layer,
        cache: &mut KvCache,
        x: &mut [f32],
        b: &Block,
        s: &mut Scratch,
    ) {
        let (places, rotations, runs) = (b.places, b.rotations, b.runs);
        let cfg = &self.config;
        let n = places.len();
        let hd = cfg.head_dim();
        rms_norm(x, &layer.input_norm, cfg.rms_norm_eps, &mut s.h);
        let qkv = [&layer.q, &layer.k, &layer.v];
        Matrix::matmul_each(&qkv, &s.h, n, &mut [&mut s.q, &mut s.k, &mut s.v]);
        let layout = self.rope_layout;
        let q_dim = s.q.len() / n;
        let kv_dim = s.k.len() / n;
        if cache.keeps_unrotated() {
            for (t, p) in places.iter().enumerate() {
                let k = &s.k[t * kv_dim..(t + 1) * kv_dim];
                cache.write_unrotated(p.slot, index, p.position, k);
            }
        }
        for_each_row(&mut s.q, q_dim, |t, row| {
            rotations[t].apply(row, hd, layout)
        });
        for_each_row(&mut s.k, kv_dim, |t, row| {
            rotations[t].apply(row, hd, layout)
        });
        for (t, p) in places.iter().enumerate() {
            let k = &s.k[t * kv_dim..(t + 1) * kv_dim];
            let v = &s.v[t * kv_dim..(t + 1) * kv_dim];
            cache.write(p.slot, index, p.position, k, v);
        }
        let shape = attention::Shape {
            heads: cfg.num_attention_heads,
            kv_heads: cfg.num_kv_heads(),
            head_dim: hd,
        };
        attention::attend(cache, index, runs, &s.q, &shape, &mut s.att);
        layer.o.matmul(&s.att, n, &mut s.out);
        add_scaled(x, &s.out, cfg.residual_scale() as f32);
    }

    fn mlp_block(&self, layer: &Layer, x: &mut [f32], s: &mut Scratch) {
        let cfg = &self.config;
        let n = x.len() / cfg.hidden_size;
        rms_norm(x, &layer.post_norm, cfg.rms_norm_eps, &mut s.h);
        match &layer.ffn {
            FeedForward::Dense(mlp) => {
                swiglu_mlp(mlp, &s.h, n, &mut s.gate, &mut s.up, &mut s.out);
            }
            FeedForward::Moe {
                router,
                experts,
                top_k,
            } => moe(router, experts, *top_k, &s.h, n, &mut s.out),
        }
        add_scaled(x, &s.out, cfg.residual_scale() as f32);
    }

    /// Final norm, the muP width division, and the LM head for `n` rows of the residual stream.
    fn logits(&self, x: &[f32], n: usize) -> Vec<f32> {
        let cfg = &self.config;
        let mut h = vec![0f32; x.len()];
        rms_norm(x, &self.weights.norm, cfg.rms_norm_eps, &mut h);
        let width = cfg.scale_width() as f32;
        h.iter_mut().for_each(|v| *v /= width);
        let head = self.weights.head();
        let mut out = vec![0f32; n * head.rows()];
        head.matmul(&h, n, &mut out);
        out
    }
}

/// `out [n, d] = down(silu(gate h) * up h)` with `gate`, `up` as `[n, ff]` scratch.
fn swiglu_mlp(mlp: &Mlp, h: &[f32], n: usize, gate: &mut [f32], up: &mut [f32], out: &mut [f32]) {
    let ff = mlp.gate.rows();
    let (gate, up) = (&mut gate[..n * ff], &mut up[..n * ff]);
    Matrix::matmul_each(&[&mlp.gate, &mlp.up], h, n, &mut [&mut *gate, &mut *up]);
    let up = &*up;
    let backend = Backend::detect();
    for_each_row(gate, ff, |t, g| {
        let mut e: Vec<f32> = g.iter().map(|v| -v).collect();
        exp::exp_in_place(backend, &mut e);
        for ((g, &u), &e) in g.iter_mut().zip(&up[t * ff..(t + 1) * ff]).zip(&e) {
            *g = *g / (1.0 + e) * u;
        }
    });
    mlp.down.matmul(gate, n, &mut out[..n * mlp.down.rows()]);
}

/// The mixture of experts over `h [n, d]` into `out [n, d]`: the router's softmax, each
/// token's top-k experts (the training model's [`Routing`], so both choose alike) with their
/// probabilities renormalised, and each expert run once over the rows routed to it.
fn moe(router: &Matrix, experts: &[Mlp], top_k: usize, h: &[f32], n: usize, out: &mut [f32]) {
    let (d, e) = (router.cols(), router.rows());
    let mut probs = vec![0f32; n * e];
    router.matmul(h, n, &mut probs);
    for row in probs.chunks_exact_mut(e) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        row.iter_mut().for_each(|v| *v = (*v - max).exp());
        let sum: f32 = row.iter().sum();
        row.iter_mut().for_each(|v| *v /= sum);
    }
    let routing = Routing::top_k(&probs, e, top_k);
    let weights: Vec<f32> = routing
        .choice
        .chunks_exact(top_k)
        .enumerate()
        .flat_map(|(t, chosen)| {
            let row = &probs[t * e..(t + 1) * e];
            let total: f32 = chosen.iter().map(|&c| row[c]).sum();
            chosen.iter().map(move |&c| row[c] / total)
        })
        .collect();
    let groups = routing.grouped();
    out[..n * d].iter_mut().for_each(|v| *v = 0.0);
    let ff = experts.first().map_or(0, |m| m.gate.rows());
    for (e, expert) in experts.iter().enumerate() {
        let (mine, count) = (&groups.slots[groups.range(e)], groups.count(e));
        if count == 0 {
            continue;
        }
        let mut x = vec![0f32; count * d];
        for (row, &slot) in x.chunks_exact_mut(d).zip(mine) {
            let t = slot / top_k;
            row.copy_from_slice(&h[t * d..(t + 1) * d]);
        }
        let (mut gate, mut up, mut y) = (
            vec![0f32; count * ff],
            vec![0f32; count * ff],
            vec![0f32; count * d],
        );
        swiglu_mlp(expert, &x, count, &mut gate, &mut up, &mut y);
        for (row, &slot) in y.chunks_exact(d).zip(mine) {
            let t = slot / top_k;
            let w = weights[slot];
            for (o, &v) in out[t * d..(t + 1) * d].iter_mut().zip(row) {
                *o += w * v;
            }
        }
    }
}

/// Activations of one pass, sized once for its token count.
struct Scratch {
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    out: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
}

impl Scratch {
    fn new(m: &InferenceModel, n: usize) -> Scratch {
        let cfg = &m.config;
        let hd = cfg.head_dim();
        let (q_dim, kv_dim) = (cfg.num_attention_heads * hd, cfg.num_kv_heads() * hd);
        let z = |w: usize| vec![0f32; n * w];
        Scratch {
            h: z(cfg.hidden_size),
            q: z(q_dim),
            k: z(kv_dim),
            v: z(kv_dim),
            att: z(q_dim),
            out: z(cfg.hidden_size),
            gate: z(cfg.intermediate_size),
            up: z(cfg.intermediate_size),
        }
    }
}
