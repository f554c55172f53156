#!/usr/bin/env python3
"""A tiny MiniCPM model as an HF directory and as the GGUF files llama.cpp's converter would make
of it, the reference for crates/serve/src/gguf_model (`minicpm export gguf`).

The GGUF side is written with the `gguf` package's GGUFWriter and its `add_*` methods (so key
names and value types are gguf-py's), in the order convert_hf_to_gguf.py's `MiniCPMModel`
writes them (TextModel.set_gguf_parameters, then embedding/residual/logit scale), with the q/k
rows permuted as the converter's `LlamaModel.permute` does (conversion/llama.py):

    weights.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)

with n_head the query heads for q_proj and the KV heads for k_proj (conversion/minicpm.py,
`modify_tensors`). Two deliberate differences from the converter, both documented in the Rust
code: the token embedding and untied output head stay f16 in quantised files (MiniCPM's rule), and
token scores are -(merge rank) instead of LlamaHfVocab's constant -1000, so that llama.cpp's SPM
merging reproduces the BPE.

Writes crates/serve/tests/fixtures/gguf/model/{config.json, model.safetensors, tokenizer.json}
and crates/serve/tests/fixtures/gguf/model-{f32,q8_0}.gguf.

Usage: scripts/reference/.venv/bin/python scripts/reference/make_gguf_model_fixture.py
"""

import json
import os

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, Keys, LlamaFileType, TokenType, quantize
from safetensors.numpy import save_file

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(REPO_ROOT, "crates", "serve", "tests", "fixtures", "gguf")

CONFIG = {
    "architectures": ["MiniCPMForCausalLM"],
    "model_type": "minicpm",
    "vocab_size": 40,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 1,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 128,
    "initializer_range": 0.1,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "scale_emb": 12.0,
    "scale_depth": 1.4,
    "dim_model_base": 16.0,
}

# A SentencePiece-style BPE: specials, two byte tokens, characters, merges.
TOKENIZER = {
    "version": "1.0",
    "truncation": None,
    "padding": None,
    "added_tokens": [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i, t in enumerate(["<unk>", "<s>", "</s>"])
    ],
    "normalizer": {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
    "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": True},
    "post_processor": None,
    "decoder": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
    "model": {
        "type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
        "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": True, "ignore_merges": False,
        "vocab": {t: i for i, t in enumerate(
            ["<unk>", "<s>", "</s>", "<0x0A>", "<0xE4>", "▁", "t", "h", "e", "a", "n", "d",
             "▁t", "he", "▁the", "▁a", "an", "▁and", "nd"])},
        "merges": [["▁", "t"], ["h", "e"], ["▁t", "he"], ["▁", "a"], ["a", "n"], ["▁a", "nd"],
                   ["n", "d"]],
    },
}


def values(n: int, scale: float) -> np.ndarray:
    """((7 i mod 23) - 11) * scale / 8, exact in f32 and f16."""
    i = np.arange(n, dtype=np.int64)
    return (((7 * i) % 23 - 11).astype(np.float32) * np.float32(scale) / np.float32(8)).astype(np.float32)


def hf_tensors() -> dict[str, np.ndarray]:
    c = CONFIG
    d, ff, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    hd = d // c["num_attention_heads"]
    kv = c["num_key_value_heads"] * hd
    shapes = {"model.embed_tokens.weight": (v, d)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (d,),
            p + "self_attn.q_proj.weight": (d, d),
            p + "self_attn.k_proj.weight": (kv, d),
            p + "self_attn.v_proj.weight": (kv, d),
            p + "self_attn.o_proj.weight": (d, d),
            p + "post_attention_layernorm.weight": (d,),
            p + "mlp.gate_proj.weight": (ff, d),
            p + "mlp.up_proj.weight": (ff, d),
            p + "mlp.down_proj.weight": (d, ff),
        })
    shapes["model.norm.weight"] = (d,)
    shapes["lm_head.weight"] = (v, d)
    return {name: values(int(np.prod(s)), 1.0 + 0.25 * k).reshape(s)
            for k, (name, s) in enumerate(shapes.items())}


def permute(weights: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute, in numpy."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
LAYER_NAMES = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(hf: str) -> str:
    if hf in GGUF_NAMES:
        return GGUF_NAMES[hf]
    _, _, layer, rest = hf.split(".", 3)
    return f"blk.{layer}.{LAYER_NAMES[rest.removesuffix('.weight')]}.weight"


def vocab(tok: dict, n_vocab: int):
    model = tok["model"]
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    scores = [-10000.0] * n_vocab
    types = [int(TokenType.UNUSED)] * n_vocab
    for text, i in model["vocab"].items():
        tokens[i], scores[i] = text, 0.0
        is_byte = len(text) == 6 and text.startswith("<0x") and text.endswith(">")
        types[i] = int(TokenType.BYTE if is_byte else TokenType.NORMAL)
    seen = set()
    for rank, (a, b) in enumerate(model["merges"]):
        i = model["vocab"].get(a + b)
        if i is not None and i not in seen:
            seen.add(i)
            scores[i] = 0.0 - rank
    for t in tok["added_tokens"]:
        tokens[t["id"]], scores[t["id"]] = t["content"], 0.0
        types[t["id"]] = int(TokenType.CONTROL if t["special"] else TokenType.USER_DEFINED)
    unk = model["vocab"][model["unk_token"]]
    types[unk] = int(TokenType.UNKNOWN)
    return tokens, scores, types, unk


def write_gguf(path: str, ftype: LlamaFileType, tensors: dict[str, np.ndarray], tok_text: str) -> None:
    c = CONFIG
    w = GGUFWriter(path, arch="minicpm")
    w.add_type("model")
    w.add_name("fixture")
    # TextModel.set_gguf_parameters
    w.add_block_count(c["num_hidden_layers"])
    w.add_context_length(c["max_position_embeddings"])
    w.add_embedding_length(c["hidden_size"])
    w.add_feed_forward_length(c["intermediate_size"])
    w.add_head_count(c["num_attention_heads"])
    w.add_head_count_kv(c["num_key_value_heads"])
    w.add_rope_freq_base(c["rope_theta"])
    w.add_layer_norm_rms_eps(c["rms_norm_eps"])
    w.add_file_type(ftype)
    # MiniCPMModel.set_gguf_parameters
    w.add_embedding_scale(float(c["scale_emb"]))
    w.add_residual_scale(c["scale_depth"] / c["num_hidden_layers"] ** 0.5)
    w.add_logit_scale(c["hidden_size"] / c["dim_model_base"])
    # Read by llama.cpp where present.
    w.add_rope_dimension_count(c["hidden_size"] // c["num_attention_heads"])
    w.add_vocab_size(c["vocab_size"])
    w.add_quantization_version(2)
    # _set_vocab_llama_hf + SpecialVocab.add_to_gguf
    tokens, scores, types, unk = vocab(TOKENIZER, c["vocab_size"])
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(c["bos_token_id"])
    w.add_eos_token_id(c["eos_token_id"])
    w.add_unk_token_id(unk)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(
        "{% for message in messages %}{% if message['role'] == 'user' %}"
        "{{'<用户>' + message['content'].strip() + '<AI>'}}{% else %}"
        "{{message['content'].strip()}}{% endif %}{% endfor %}")
    w.add_string(Keys.Tokenizer.HF_JSON, tok_text)

    for hf, data in tensors.items():
        if hf.endswith("q_proj.weight"):
            data = permute(data, c["num_attention_heads"], c["num_attention_heads"])
        if hf.endswith("k_proj.weight"):
            data = permute(data, c["num_attention_heads"], c["num_key_value_heads"])
        name = gguf_name(hf)
        if data.ndim == 1 or ftype == LlamaFileType.ALL_F32:
            w.add_tensor(name, data.astype(np.float32))
        elif name in ("token_embd.weight", "output.weight") or ftype == LlamaFileType.MOSTLY_F16:
            w.add_tensor(name, data.astype(np.float16))
        else:
            q = quantize(data, GGMLQuantizationType.Q8_0)
            w.add_tensor(name, q, raw_dtype=GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{os.path.getsize(path)} bytes -> {path}")


def main() -> None:
    model_dir = os.path.join(OUT, "model")
    os.makedirs(model_dir, exist_ok=True)
    tensors = hf_tensors()
    save_file(tensors, os.path.join(model_dir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
    tok_text = json.dumps(TOKENIZER, ensure_ascii=False, indent=2)
    with open(os.path.join(model_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(tok_text)
    write_gguf(os.path.join(OUT, "model-f32.gguf"), LlamaFileType.ALL_F32, tensors, tok_text)
    write_gguf(os.path.join(OUT, "model-q8_0.gguf"), LlamaFileType.MOSTLY_Q8_0, tensors, tok_text)


if __name__ == "__main__":
    main()
