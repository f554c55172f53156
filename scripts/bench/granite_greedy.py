#!/usr/bin/env python3
"""Greedy decoding of an HF MiniCPM directory with transformers' Granite model (which computes
MiniCPM exactly; scripts/reference/README.md), printing the same JSON as llama_greedy.c: the
generated ids and, per step, the two largest logits. The independent reference for llama.cpp
running our GGUF export (gguf_parity.sh) while our own runtime cannot yet read GGUF.

Usage: python granite_greedy.py MODEL_DIR IDS N [--ignore-eos]   (IDS used exactly as given)
"""

import json
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import GraniteForCausalLM

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
from make_fixtures import granite_config  # noqa: E402  (the one MiniCPM -> Granite mapping)


def main() -> None:
    model_dir, ids, n = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], int(sys.argv[3])
    ignore_eos = "--ignore-eos" in sys.argv[4:]
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    cfg.setdefault("num_key_value_heads", cfg["num_attention_heads"])
    cfg.setdefault("tie_word_embeddings", True)
    cfg.setdefault("initializer_range", 0.1)
    cfg.setdefault("hidden_act", "silu")
    model = GraniteForCausalLM(granite_config(cfg)).to(torch.float32).eval()
    state = load_file(os.path.join(model_dir, "model.safetensors"))
    if cfg["tie_word_embeddings"]:
        state.setdefault("lm_head.weight", state["model.embed_tokens.weight"])
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    eos = cfg.get("eos_token_id", 2)
    eos = set(eos if isinstance(eos, list) else [eos])
    seq, out, top2 = list(ids), [], []
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([seq])).logits[0, -1]
            v, i = torch.topk(logits, 2)
            top2.append([int(i[0]), float(v[0]), int(i[1]), float(v[1])])
            nxt = int(i[0])
            out.append(nxt)
            seq.append(nxt)
            if nxt in eos and not ignore_eos:
                break
    print(json.dumps({"model": model_dir, "prompt": ids, "ids": out, "top2": top2}))


if __name__ == "__main__":
    main()
