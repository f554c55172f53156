//! Tensor names: HF's (`model.layers.3.self_attn.q_proj.weight`) and llama.cpp's
//! (`blk.3.attn_q.weight`), and the row order of the q and k projections, which llama.cpp's
//! converter permutes so that each head's rotary pairs are adjacent rows.

/// Per-layer tensors: HF suffix after `model.layers.{i}.`, llama.cpp suffix after `blk.{i}.`.
const LAYER: [(&str, &str); 10] = [
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("post_attention_layernorm.weight", "ffn_norm.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
    ("mlp.gate.weight", "ffn_gate_inp.weight"),
];

/// An MoE layer's experts: HF's per-expert weight (after `mlp.experts.{e}.`) and the llama.cpp
/// tensor that stacks it over the experts, `[experts, rows, cols]`.
const EXPERTS: [(&str, &str); 3] = [
    ("w1.weight", "ffn_gate_exps.weight"),
    ("w3.weight", "ffn_up_exps.weight"),
    ("w2.weight", "ffn_down_exps.weight"),
];

/// Whole-model tensors.
const GLOBAL: [(&str, &str); 3] = [
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
];

/// Where an MoE expert's HF weight lives in llama.cpp's file: the stacked tensor and the
/// expert's index in it; `None` for any other tensor.
pub fn stacked_expert(hf: &str) -> Option<(String, usize)> {
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once(".mlp.experts.")?;
    let layer: usize = layer.parse().ok()?;
    let (expert, weight) = rest.split_once('.')?;
    let expert: usize = expert.parse().ok()?;
    let (_, g) = EXPERTS.iter().find(|(h, _)| *h == weight)?;
    Some((format!("blk.{layer}.{g}"), expert))
}

/// llama.cpp's name of an HF tensor; `None` for tensors its `minicpm` architecture does not have
/// as such (an MoE expert's weight is a slice of a stacked tensor: [`stacked_expert`]).
pub fn hf_to_gguf(hf: &str) -> Option<String> {
    if let Some((_, g)) = GLOBAL.iter().find(|(h, _)| *h == hf) {
        return Some(g.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (_, g) = LAYER.iter().find(|(h, _)| *h == suffix)?;
    Some(format!("blk.{layer}.{g}"))
}

/// The HF name of a llama.cpp tensor; the inverse of [`hf_to_gguf`].
pub fn gguf_to_hf(gguf: &str) -> Option<String> {
    if let Some((h, _)) = GLOBAL.iter().find(|(_, g)| *g == gguf) {
        return Some(h.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (h, _) = LAYER.iter().find(|(_, g)| *g == suffix)?;
    Some(format!("model.layers.{layer}.{h}"))
}

/// How many heads the rows of an HF tensor hold when it is a q or k projection (q: the query
/// heads, k: the KV heads), else `None`: the tensors whose rows llama.cpp permutes.
pub fn rope_heads(hf: &str, heads: usize, kv_heads: usize) -> Option<usize> {
    if hf.ends_with(".self_attn.q_proj.weight") {
        Some(heads)
    } else if hf.ends_with(".self_attn.k_proj.weight") {
        Some(kv_heads)
    } else {
        None
    }
}

/// The rows of `[rows, cols]` (row-major) in llama.cpp's RoPE layout, as its converter's
/// `LlamaModel.permute` writes them (`reshape(heads, 2, head_dim / 2, cols).swapaxes(1, 2)`): within
/// each head, output row `2j + s` is HF row `s * head_dim / 2 + j`, so the pair that HF's
/// `rotate_half` rotates together (`j`, `j + head_dim / 2`) becomes adjacent.
pub fn permute_rows(values: &[f32], cols: usize, heads: usize) -> Vec<f32> {
    reorder_rows(values, cols, heads, false)
}

/// The inverse of [`permute_rows`]: llama.cpp's layout back to HF's.
pub fn unpermute_rows(values: &[f32], cols: usize, heads: usize) -> Vec<f32> {
    reorder_rows(values, cols, heads, true)
}

fn reorder_rows(values: &[f32], cols: usize, heads: usize, inverse: bool) -> Vec<f32> {
    let rows = values.len() / cols;
    assert_eq!(rows * cols, values.len(), "whole rows");
    assert_eq!(
        rows % (2 * heads),
        0,
        "{rows} rows in {heads} heads of pairs"
    );
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let mut out = vec![0f32; values.len()];
    for h in 0..heads {
        for j in 0..half {
            for s in 0..2 {
                let llama = h * head_dim + 2 * j + s;
                let hf = h * head_dim + s * half + j;
                let (to, from) = if inverse { (hf, llama) } else { (llama, hf) };
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&values[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        for (hf, gguf) in [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("model.norm.weight", "output_norm.weight"),
            ("lm_head.weight", "output.weight"),
            (
                "model.layers.0.input_layernorm.weight",
                "blk.0.attn_norm.weight",
            ),
            (
                "model.layers.12.self_attn.o_proj.weight",
                "blk.12.attn_output.weight",
            ),
            (
                "model.layers.3.post_attention_layernorm.weight",
                "blk.3.ffn_norm.weight",
            ),
            (
                "model.layers.3.mlp.down_proj.weight",
                "blk.3.ffn_down.weight",
            ),
        ] {
            assert_eq!(hf_to_gguf(hf).as_deref(), Some(gguf));
            assert_eq!(gguf_to_hf(gguf).as_deref(), Some(hf));
        }
        assert_eq!(hf_to_gguf("model.layers.0.mlp.experts.1.w1.weight"), None);
        assert_eq!(
            stacked_expert("model.layers.2.mlp.experts.5.w1.weight"),
            Some(("blk.2.ffn_gate_exps.weight".into(), 5))
        );
        assert_eq!(
            stacked_expert("model.layers.0.mlp.experts.0.w2.weight"),
            Some(("blk.0.ffn_down_exps.weight".into(), 0))
        );
        assert_eq!(
            hf_to_gguf("model.layers.3.mlp.gate.weight").as_deref(),
            Some("blk.3.ffn_gate_inp.weight")
        );
        assert_eq!(stacked_expert("model.layers.0.mlp.gate_proj.weight"), None);
        assert_eq!(hf_to_gguf("model.layers.x.mlp.up_proj.weight"), None);
        assert_eq!(gguf_to_hf("blk.0.ffn_gate_exps.weight"), None);
    }

    #[test]
    fn one_head_of_four_dims_pairs_0_2_and_1_3() {
        // Rows 0..4 of one head: HF pairs (0, 2) and (1, 3); llama.cpp wants them adjacent.
        let v = [0., 1., 2., 3.];
        assert_eq!(permute_rows(&v, 1, 1), vec![0., 2., 1., 3.]);
        let w: Vec<f32> = (0..24).map(|x| x as f32).collect();
        assert_eq!(unpermute_rows(&permute_rows(&w, 3, 2), 3, 2), w);
        assert_eq!(
            permute_rows(&w, 2, 2)[..8],
            [0., 1., 6., 7., 2., 3., 8., 9.],
            "rows move whole: head 0 of 6 dims takes HF rows 0, 3, 1, 4"
        );
    }
}
