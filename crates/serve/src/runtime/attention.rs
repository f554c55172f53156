//! Causal softmax attention of a pass's queries over the KV cache, in blocks: for each run of
//! consecutive tokens of one sequence (at most [`TILE`] of them) and each KV head, the queries
//! of every head that shares it form one matrix, its scores against the head's cached keys are
//! one matrix product and the weighted sum of values another (the runtime's f32 panel kernels,
//! on the cache where it lies). A token sees the positions up to its own.

use super::cache::KvCache;
use super::kernels::exp;
use super::kernels::panels::{self, Panels};
use super::kernels::Backend;
use rayon::prelude::*;

/// Tokens per block: bounds the score matrix at `TILE * group * context` floats.
const TILE: usize = 64;

/// One block of queries: tokens `start..start + len` of the pass, of cache slot `slot`, the
/// first at position `position`.
#[derive(Clone, Copy)]
pub struct Run {
    pub start: usize,
    pub len: usize,
    pub slot: usize,
    pub position: usize,
}

/// Cuts a pass's tokens, given as (slot, position) in order, into blocks of consecutive
/// positions of one slot, at most [`TILE`] long.
pub fn runs(places: impl Iterator<Item = (usize, usize)>) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for (i, (slot, position)) in places.enumerate() {
        match out.last_mut() {
            Some(r) if r.slot == slot && r.position + r.len == position && r.len < TILE => {
                r.len += 1
            }
            _ => out.push(Run {
                start: i,
                len: 1,
                slot,
                position,
            }),
        }
    }
    out
}

pub struct Shape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// `att [tokens, heads * head_dim]` from `q [tokens, heads * head_dim]` (already rotated) and
/// layer `layer` of `cache`, which already holds this pass's keys and values.
pub fn attend(
    cache: &KvCache,
    layer: usize,
    runs: &[Run],
    q: &[f32],
    shape: &Shape,
    att: &mut [f32],
) {
    let (heads, hd) = (shape.heads, shape.head_dim);
    let group = heads / shape.kv_heads;
    let q_dim = heads * hd;
    let tasks: Vec<(usize, usize)> = (0..runs.len())
        .flat_map(|r| (0..shape.kv_heads).map(move |h| (r, h)))
        .collect();
    let blocks: Vec<(usize, usize, Vec<f32>)> = tasks
        .into_par_iter()
        .map(|(r, kv_head)| {
            let run = runs[r];
            let len = run.position + run.len;
            let (keys, values) = cache.head(run.slot, layer, kv_head, len);
            // Query rows in the order (token, head of the group).
            let rows = run.len * group;
            let mut qs = Vec::with_capacity(rows * hd);
            for t in 0..run.len {
                let row = &q[(run.start + t) * q_dim..(run.start + t + 1) * q_dim];
                qs.extend_from_slice(&row[kv_head * group * hd..(kv_head + 1) * group * hd]);
            }
            let out = block(&qs, rows, group, &keys, &values, run.position, hd);
            (r, kv_head, out)
        })
        .collect();
    for (r, kv_head, out) in blocks {
        let run = runs[r];
        for t in 0..run.len {
            let dst = &mut att[(run.start + t) * q_dim + kv_head * group * hd..][..group * hd];
            dst.copy_from_slice(&out[t * group * hd..(t + 1) * group * hd]);
        }
    }
}

/// Attention of `rows` query rows (`group` per token, tokens at positions `first`, `first + 1`,
/// ...) over a head's cached `keys` and `values` (see [`KvCache`]); returns `[rows, hd]`.
fn block(
    qs: &[f32],
    rows: usize,
    group: usize,
    keys: &Panels,
    values: &Panels,
    first: usize,
    hd: usize,
) -> Vec<f32> {
    let len = keys.rows; // keys the last token sees
    debug_assert_eq!(len, first + rows / group);
    let backend = Backend::detect();
    let mut scores = vec![0f32; rows * len];
    panels::product(backend, keys, qs, rows, &mut scores);
    let scale = 1.0 / (hd as f32).sqrt();
    for (i, s) in scores.chunks_exact_mut(len).enumerate() {
        let (seen, unseen) = s.split_at_mut(first + i / group + 1);
        let max = seen
            .iter()
            .fold(f32::NEG_INFINITY, |m, &x| m.max(x * scale));
        seen.iter_mut().for_each(|x| *x = *x * scale - max);
        exp::exp_in_place(backend, seen);
        let inv = 1.0 / seen.iter().sum::<f32>();
        seen.iter_mut().for_each(|x| *x *= inv);
        unseen.fill(0.0);
    }
    let mut out = vec![0f32; rows * hd];
    panels::product(backend, values, &scores, rows, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cut_at_a_new_slot_a_gap_in_positions_and_the_tile() {
        let places = (0..70)
            .map(|p| (0, 5 + p))
            .chain([(1, 0), (1, 1), (0, 75), (2, 9)]);
        let got: Vec<(usize, usize, usize, usize)> = runs(places)
            .iter()
            .map(|r| (r.start, r.len, r.slot, r.position))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, TILE, 0, 5),
                (64, 6, 0, 69),
                (70, 2, 1, 0),
                (72, 1, 0, 75),
                (73, 1, 2, 9)
            ]
        );
    }
}
