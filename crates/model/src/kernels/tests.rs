//! Each fused kernel against the unfused composition of burn operations it replaces, values and
//! gradients, through autodiff.

use super::fused::rope_causal_attention;
use crate::rope;
use crate::ModelConfig;
use burn::tensor::{Device, Distribution, Tensor, TensorData};

fn config(heads: usize, kv_heads: usize, head_dim: usize) -> ModelConfig {
    serde_json::from_value(serde_json::json!({
        "vocab_size": 16, "hidden_size": heads * head_dim, "intermediate_size": 8,
        "num_hidden_layers": 1, "num_attention_heads": heads, "num_key_value_heads": kv_heads
    }))
    .unwrap()
}

/// RoPE + causal attention as the model computes it without the kernel, on `[b, len, n, hd]`.
fn unfused(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, tables: &rope::RopeTables) -> Tensor<4> {
    super::reference::rope_causal_attention(q, k, v, tables, None)
}

fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

/// Position ids of rows packed with sequences of the given lengths.
fn packed_positions(rows: &[&[usize]]) -> Vec<u32> {
    rows.iter()
        .flat_map(|r| r.iter().flat_map(|&n| 0..n as u32))
        .collect()
}

fn check_attention(heads: usize, kv_heads: usize, len: usize) {
    let cfg = config(heads, kv_heads, 8);
    let tables = rope::tables(&cfg, 0, len, &Device::flex().autodiff());
    check_attention_with(&cfg, len, &tables);
}

fn check_attention_with(cfg: &ModelConfig, len: usize, tables: &rope::RopeTables) {
    let device = Device::flex().autodiff();
    let (heads, kv_heads) = (cfg.num_attention_heads, cfg.num_kv_heads());
    let (b, hd) = (2, cfg.head_dim());
    let normal =
        |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let (q, k, v) = (
        normal([b, len, heads, hd]),
        normal([b, len, kv_heads, hd]),
        normal([b, len, kv_heads, hd]),
    );
    // A random linear read-out makes every output element's gradient distinct.
    let readout = normal([b, len, heads, hd]);
    let run = |fused: bool| {
        let (q, k, v) = (
            q.clone().require_grad(),
            k.clone().require_grad(),
            v.clone().require_grad(),
        );
        let y = if fused {
            super::rope_causal_attention(q.clone(), k.clone(), v.clone(), tables, None)
        } else {
            unfused(q.clone(), k.clone(), v.clone(), tables)
        };
        let grads = (y.clone() * readout.clone()).sum().backward();
        let grad = |x: &Tensor<4>| x.grad(&grads).expect("gradient");
        (y.inner(), grad(&q), grad(&k), grad(&v))
    };
    let (y, dq, dk, dv) = run(true);
    let (y_ref, dq_ref, dk_ref, dv_ref) = run(false);
    for (what, diff) in [
        ("output", max_abs_diff(y, y_ref)),
        ("dq", max_abs_diff(dq, dq_ref)),
        ("dk", max_abs_diff(dk, dk_ref)),
        ("dv", max_abs_diff(dv, dv_ref)),
    ] {
        assert!(
            diff < 1e-4,
            "{heads}/{kv_heads} heads, len {len}: {what} differs by {diff}"
        );
    }
}

#[test]
fn fused_attention_matches_the_unfused_composition() {
    // Lengths below, at and across the kernel's 64-row blocks; plain and grouped-query heads.
    check_attention(2, 2, 5);
    check_attention(4, 2, 64);
    check_attention(4, 1, 130);
    check_attention(2, 1, 600);
}

/// Rows packed with several sequences: positions restart, and no query sees another sequence.
#[test]
fn fused_attention_of_packed_rows_matches_the_masked_composition() {
    let cfg = config(4, 2, 8);
    let device = Device::flex().autodiff();
    let positions = packed_positions(&[&[50, 40, 40], &[1, 99, 30]]);
    check_attention_with(
        &cfg,
        130,
        &rope::packed_tables(&cfg, &positions, 2, &device),
    );
    let long = packed_positions(&[&[300, 200, 100], &[1, 599]]);
    check_attention_with(&cfg, 600, &rope::packed_tables(&cfg, &long, 2, &device));
}

/// Random q, k, v of one row of 9 tokens, 2 query heads and 1 KV head of 8.
fn nine_token_qkv(device: &Device) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
    let normal =
        |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device);
    (
        normal([1, 9, 2, 8]),
        normal([1, 9, 1, 8]),
        normal([1, 9, 1, 8]),
    )
}

/// A packed row gives each sequence exactly what it gets alone.
#[test]
fn a_packed_sequence_attends_as_if_it_were_alone() {
    let cfg = config(2, 1, 8);
    let device = Device::flex();
    let (q, k, v) = nine_token_qkv(&device);
    let tables = rope::packed_tables(&cfg, &packed_positions(&[&[4, 5]]), 1, &device);
    let packed = super::rope_causal_attention(q.clone(), k.clone(), v.clone(), &tables, None);
    for (start, n) in [(0, 4), (4, 5)] {
        let part = |x: &Tensor<4>| x.clone().narrow(1, start, n);
        let alone = rope::tables(&cfg, 0, n, &device);
        let y = super::rope_causal_attention(part(&q), part(&k), part(&v), &alone, None);
        assert!(max_abs_diff(y, packed.clone().narrow(1, start, n)) < 1e-6);
    }
}

#[test]
fn fused_attention_without_autodiff_matches_too() {
    let device = Device::flex();
    let cfg = config(2, 1, 8);
    let tables = rope::tables(&cfg, 0, 9, &device);
    let (q, k, v) = nine_token_qkv(&device);
    let table = |x: &Tensor<4>| x.clone().reshape([9, 8]);
    let none = Tensor::<1>::from_data(TensorData::new(Vec::<f32>::new(), [0]), &device);
    let fused = rope_causal_attention(
        q.clone(),
        k.clone(),
        v.clone(),
        table(&tables.cos),
        table(&tables.sin),
        none,
    );
    assert!(max_abs_diff(fused, unfused(q, k, v, &tables)) < 1e-5);
}

/// Values and gradients of `fused(a, b)` against `unfused(a, b)` under a random linear read-out.
fn check_binary<const A: usize, const B: usize>(
    a: Tensor<A>,
    b: Tensor<B>,
    fused: impl Fn(Tensor<A>, Tensor<B>) -> Tensor<3>,
    unfused: impl Fn(Tensor<A>, Tensor<B>) -> Tensor<3>,
    tolerance: f32,
) {
    let run = |f: &dyn Fn(Tensor<A>, Tensor<B>) -> Tensor<3>| {
        let (a, b) = (a.clone().require_grad(), b.clone().require_grad());
        let y = f(a.clone(), b.clone());
        // A fixed read-out in [-1, 1), the same for both runs.
        let n: usize = y.dims().iter().product();
        let weights: Vec<f32> = (0..n).map(|i| (i * 37 % 101) as f32 / 50.0 - 1.0).collect();
        let readout = Tensor::<3>::from_data(TensorData::new(weights, y.dims()), &y.device());
        let grads = (y.clone() * readout).sum().backward();
        (
            y.inner(),
            a.grad(&grads).expect("first gradient"),
            b.grad(&grads).expect("second gradient"),
        )
    };
    let (y, da, db) = run(&fused);
    let (y_ref, da_ref, db_ref) = run(&unfused);
    for (what, diff) in [
        ("output", max_abs_diff(y, y_ref)),
        ("first gradient", max_abs_diff(da, da_ref)),
        ("second gradient", max_abs_diff(db, db_ref)),
    ] {
        assert!(diff < tolerance, "{what} differs by {diff}");
    }
}

#[test]
fn fused_rms_norm_matches_the_unfused_composition() {
    let device = Device::flex().autodiff();
    // 70 rows: more than one parallel task, the last one ragged.
    let x = Tensor::<3>::random([2, 35, 24], Distribution::Normal(0.0, 3.0), &device);
    let w = Tensor::<1>::random([24], Distribution::Normal(1.0, 0.2), &device);
    let eps = 1e-5;
    check_binary(
        x,
        w,
        |x, w| super::fused::rms_norm(x, w, eps),
        |x, w| super::reference::rms_norm(x, w, eps),
        1e-5,
    );
}

#[test]
fn fused_swiglu_matches_the_unfused_composition() {
    let device = Device::flex().autodiff();
    let gate = Tensor::<3>::random([3, 50, 130], Distribution::Normal(0.0, 3.0), &device);
    let up = Tensor::<3>::random([3, 50, 130], Distribution::Normal(0.0, 1.0), &device);
    check_binary(
        gate,
        up,
        super::fused::swiglu,
        super::reference::swiglu,
        1e-5,
    );
}

#[test]
fn fused_linear_matches_the_unfused_composition() {
    let device = Device::flex().autodiff();
    // Large enough for the products to run on the thread pool, with ragged sizes.
    let x = Tensor::<3>::random([3, 70, 190], Distribution::Normal(0.0, 1.0), &device);
    let w = Tensor::<2>::random([210, 190], Distribution::Normal(0.0, 0.1), &device);
    // A residual branch's scale, applied inside the products.
    let s = 0.37;
    check_binary(
        x,
        w,
        |x, w| super::fused::linear(x, w, s),
        |x, w| super::reference::linear(x, w, s),
        1e-4,
    );
}

#[test]
fn fused_linear_matches_the_unfused_composition_on_one_thread() {
    let device = Device::flex().autodiff();
    let x = Tensor::<3>::random([2, 5, 12], Distribution::Normal(0.0, 1.0), &device);
    let w = Tensor::<2>::random([7, 12], Distribution::Normal(0.0, 0.3), &device);
    check_binary(
        x,
        w,
        |x, w| super::fused::linear(x, w, 1.0),
        |x, w| super::reference::linear(x, w, 1.0),
        1e-5,
    );
}
