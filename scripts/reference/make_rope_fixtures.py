#!/usr/bin/env python3
"""Generate the RoPE-scaling parity fixture for the Rust model crate: one small random MiniCPM run
by transformers' Granite (make_fixtures.py explains why Granite computes MiniCPM) under each RoPE
scaling MiniCPM's long-context recipe uses (docs/MODEL.md section 13):

    abf           no scaling, rope_theta 1e6 (ABF: "adjusted base frequency")
    linear        {"type": "linear", "factor": 4}
    dynamic       {"type": "dynamic", "factor": 4}, run past max_position_embeddings so the base
                  grows with the length
    yarn          {"type": "yarn", "factor": 4, "original_max_position_embeddings": 32}
    yarn_options  YaRN with every option set: beta_fast 16, beta_slow 2, truncate false,
                  mscale 1 / mscale_all_dim 0.5 (the attention factor as their ratio), factor 8

The weights are shared; the model is 2 layers, hidden 64, 2 query heads of 32 dimensions (16
rotary frequencies, so YaRN's ramp spans several of them) sharing 1 KV head, and
max_position_embeddings 32, so the 96-token input runs three times past it. The query and key
projections are 4x make_fixtures.py's initialisation, so attention is sharp enough for the modes'
logits to differ by about 1% of their scale. Written to
crates/model/tests/fixtures/rope_scaling/:

    model.safetensors         weights, HF MiniCPM tensor names
    <mode>.json               the MiniCPM config.json of each mode
    reference.safetensors
        input_ids             int64   [1, 96]
        logits.<mode>         float32 [1, 96, V]   GraniteForCausalLM, eager attention, float32
        positions             int64   [P]          sampled positions up to 131071
        cos.<mode>, sin.<mode> float32 [P, 32]     GraniteRotaryEmbedding's tables at those
                                                   positions, for a sequence of 131072 tokens
                                                   (dynamic NTK takes its base from that length)
        metadata "reference": JSON (versions, modes)

transformers computes each type in modeling_rope_utils.py (ROPE_INIT_FUNCTIONS, and
dynamic_rope_update for "dynamic"); Granite multiplies its cos and sin by the returned
attention factor. The "abf" run is cross-checked against make_fixtures.py's plain-torch forward
before anything is written.

Usage: scripts/reference/.venv/bin/python scripts/reference/make_rope_fixtures.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os

import torch
import transformers
from safetensors.torch import save_file
from transformers import GraniteConfig, GraniteForCausalLM

from make_fixtures import DEFAULT_OUT, granite_kwargs, init_weights, minicpm_forward

VOCAB = 64
SEQ = 96
MAX_POS = 32
LONG = 131072
SEED = 7
INPUT_SEED = 4321
QK_GAIN = 4.0

MODES = {
    "abf": (1e6, None),
    "linear": (1e4, {"type": "linear", "factor": 4.0}),
    "dynamic": (1e4, {"type": "dynamic", "factor": 4.0}),
    "yarn": (1e4, {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}),
    "yarn_options": (
        1e4,
        {
            "type": "yarn",
            "factor": 8.0,
            "original_max_position_embeddings": 32,
            "beta_fast": 16.0,
            "beta_slow": 2.0,
            "truncate": False,
            "mscale": 1.0,
            "mscale_all_dim": 0.5,
        },
    ),
}


def minicpm_config(theta: float, scaling: dict | None) -> dict:
    return {
        "architectures": ["MiniCPMForCausalLM"],
        "model_type": "minicpm",
        "vocab_size": VOCAB,
        "hidden_size": 64,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "hidden_act": "silu",
        "max_position_embeddings": MAX_POS,
        "initializer_range": 0.1,
        "rms_norm_eps": 1e-5,
        "rope_theta": theta,
        "rope_scaling": scaling,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "scale_emb": 12.0,
        "scale_depth": 1.4,
        "dim_model_base": 16,
        "torch_dtype": "float32",
    }


def granite_config(cfg: dict) -> GraniteConfig:
    kwargs = granite_kwargs(cfg)
    params = {"rope_type": "default", "rope_theta": cfg["rope_theta"]}
    if cfg["rope_scaling"] is not None:
        params.update({k: v for k, v in cfg["rope_scaling"].items() if k != "type"})
        params["rope_type"] = cfg["rope_scaling"]["type"]
    kwargs["rope_parameters"] = params
    gc = GraniteConfig(**kwargs, mlp_bias=False)
    gc._attn_implementation = "eager"
    assert gc.rope_parameters["rope_type"] == params["rope_type"], gc.rope_parameters
    return gc


def sampled_positions() -> torch.Tensor:
    picks = {0, 1, 2, 31, 32, 33, 95, 96, 127, 128, 1000, 4095, 4096, 16383, 65535, LONG - 1}
    return torch.tensor(sorted(picks), dtype=torch.int64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(DEFAULT_OUT, "rope_scaling"))
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    os.makedirs(args.out, exist_ok=True)

    ids = torch.randint(0, VOCAB, (1, SEQ), generator=torch.Generator().manual_seed(INPUT_SEED))
    positions = sampled_positions()
    ref = {"input_ids": ids, "positions": positions}
    weights = None
    for mode, (theta, scaling) in MODES.items():
        cfg = minicpm_config(theta, scaling)
        torch.manual_seed(SEED)
        model = GraniteForCausalLM(granite_config(cfg)).to(torch.float32)
        model.train(False)
        w = init_weights(model, cfg, SEED)
        with torch.no_grad():  # sharper attention, so that the rotation angles matter more
            for n, p in w.items():
                if n.endswith(("q_proj.weight", "k_proj.weight")):
                    p.mul_(QK_GAIN)
        if weights is None:
            weights = {n: p.detach().clone().contiguous() for n, p in w.items()}
        for n, p in w.items():
            assert torch.equal(p, weights[n]), n
        with torch.no_grad():
            logits = model(input_ids=ids, use_cache=False).logits
            rotary = model.model.rotary_emb
            # A fresh rotary module per table, so dynamic NTK sees only this length.
            fresh = type(rotary)(config=model.config)
            full = torch.arange(LONG, dtype=torch.int64)[None]
            cos, sin = fresh(logits, full)
        assert torch.isfinite(logits).all()
        if mode == "abf":
            plain = minicpm_forward({n: p.detach() for n, p in w.items()}, cfg, ids)
            diff = (plain - logits).abs().max().item()
            assert diff < 1e-5, f"granite vs plain torch: {diff}"
            print(f"abf: granite vs plain-torch forward {diff:.2e}")
        ref[f"logits.{mode}"] = logits.contiguous()
        ref[f"cos.{mode}"] = cos[0, positions].contiguous()
        ref[f"sin.{mode}"] = sin[0, positions].contiguous()
        scale = getattr(fresh, "attention_scaling", 1.0)
        print(f"{mode:<13} max|logit| {logits.abs().max().item():.4f}  attention factor {scale:.6f}")
        with open(os.path.join(args.out, f"{mode}.json"), "w") as f:
            json.dump(cfg, f, indent=2)
            f.write("\n")

    meta = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "modes": list(MODES),
        "seq": SEQ,
        "table_length": LONG,
    }
    save_file(weights, os.path.join(args.out, "model.safetensors"), metadata={"format": "pt"})
    save_file(ref, os.path.join(args.out, "reference.safetensors"), metadata={"reference": json.dumps(meta)})
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"wrote {args.out} ({total / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
