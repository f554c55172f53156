#!/usr/bin/env python3
"""One MiniCPM training step in PyTorch eager, timed like `minicpm bench train`.

Reads the same run config (TOML) as the Rust command and builds the same model with HF
transformers' GraniteForCausalLM (which computes MiniCPM exactly, see scripts/reference/README.md),
in float32, with the same muP initialisation, AdamW parameter groups (matrices at lr / scale_width,
no weight decay on norms), global-norm clipping, and uniformly random token ids. Prints tokens/s,
the phase split and peak RSS, and with --json one JSON object on stdout.

Usage: scripts/reference/.venv/bin/python scripts/bench/train_torch.py --config configs/bench-d256.toml
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
import tomllib

import torch
import torch.nn.functional as F
from transformers import GraniteForCausalLM

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
from make_fixtures import granite_config  # noqa: E402  (the one MiniCPM -> Granite mapping)


def hf_config(model: dict) -> dict:
    """The MiniCPM HF config.json fields that granite_config reads, from a run config's [model]."""
    return {
        "vocab_size": model["vocab_size"],
        "hidden_size": model["hidden_size"],
        "intermediate_size": model["intermediate_size"],
        "num_hidden_layers": model["num_hidden_layers"],
        "num_attention_heads": model["num_attention_heads"],
        "num_key_value_heads": model.get("num_key_value_heads", model["num_attention_heads"]),
        "hidden_act": "silu",
        "max_position_embeddings": model.get("max_position_embeddings", 4096),
        "initializer_range": model.get("initializer_range", 0.1),
        "rms_norm_eps": model.get("rms_norm_eps", 1e-5),
        "rope_theta": model.get("rope_theta", 10000.0),
        "tie_word_embeddings": model.get("tie_word_embeddings", True),
        "bos_token_id": 1,
        "eos_token_id": 2,
        "scale_emb": model.get("scale_emb", 1.0),
        "scale_depth": model.get("scale_depth", 1.0),
        "dim_model_base": model.get("dim_model_base", model["hidden_size"]),
    }


def build(cfg: dict, attn: str, seed: int) -> GraniteForCausalLM:
    gc = granite_config(cfg)
    gc._attn_implementation = attn
    torch.manual_seed(seed)
    model = GraniteForCausalLM(gc).to(torch.float32)
    scale_width = cfg["hidden_size"] / cfg["dim_model_base"]
    std = cfg["initializer_range"]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name in ("model.embed_tokens.weight", "lm_head.weight"):
                p.normal_(0.0, std)
            else:
                p.normal_(0.0, std / math.sqrt(scale_width))
    return model


def optimizer(model: GraniteForCausalLM, cfg: dict, optim: dict) -> torch.optim.AdamW:
    lr = optim.get("lr", 0.01)
    scale_width = cfg["hidden_size"] / cfg["dim_model_base"]
    groups = {"matrices": [], "norms": [], "embedding": []}
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            groups["norms"].append(p)
        elif name in ("model.embed_tokens.weight", "lm_head.weight"):
            groups["embedding"].append(p)
        else:
            groups["matrices"].append(p)
    wd = optim.get("weight_decay", 0.1)
    return torch.optim.AdamW(
        [
            {"params": groups["matrices"], "lr": lr / scale_width, "weight_decay": wd},
            {"params": groups["embedding"], "lr": lr, "weight_decay": wd},
            {"params": groups["norms"], "lr": lr, "weight_decay": 0.0},
        ],
        betas=(optim.get("beta1", 0.9), optim.get("beta2", 0.95)),
        eps=optim.get("eps", 1e-8),
    )


def train_flops_per_token(cfg: dict, seq: int) -> float:
    """The model FLOPs formula of `minicpm bench train` (crates/train/src/flops.rs)."""
    d, ff, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = d // heads
    attention = d * heads * hd + 2 * d * kv * hd + heads * hd * d
    matmul = layers * (attention + 3 * d * ff) + cfg["vocab_size"] * d
    return 6.0 * matmul + 6.0 * layers * heads * hd * seq


def gemm_peak(m: int, k: int, n: int, device: str, seconds: float = 2.0) -> float:
    """Best f32 FLOP/s of torch.matmul at [m, k] x [k, n] (the MLP's shape), as the Rust bench does."""
    a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
    a @ b
    sync(device)
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2.0 * m * k * n / best


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    with open(args.config, "rb") as f:
        run = tomllib.load(f)
    cfg = hf_config(run["model"])
    train = run["train"]
    rows, seq = train["micro_batch"], train["seq_len"]
    accum = train["batch_tokens"] // (rows * seq)
    clip = run.get("optim", {}).get("grad_clip", 1.0)
    dev = args.device
    model = build(cfg, args.attn, run.get("seed", 42)).to(dev)
    opt = optimizer(model, cfg, run.get("optim", {}))
    gen = torch.Generator().manual_seed(run.get("seed", 42))

    phases = dict.fromkeys(("data", "forward", "backward", "optimizer"), 0.0)
    loss_value = float("nan")
    start = time.perf_counter()
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            phases = dict.fromkeys(phases, 0.0)
            start = time.perf_counter()
        for _ in range(accum):
            t0 = time.perf_counter()
            window = torch.randint(0, cfg["vocab_size"], (rows, seq + 1), generator=gen).to(dev)
            inputs, targets = window[:, :-1].contiguous(), window[:, 1:].contiguous()
            sync(dev)
            t1 = time.perf_counter()
            logits = model(input_ids=inputs).logits
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
            loss = loss / accum
            sync(dev)
            t2 = time.perf_counter()
            loss.backward()
            sync(dev)
            t3 = time.perf_counter()
            loss_value = loss.item() * accum
            phases["data"] += t1 - t0
            phases["forward"] += t2 - t1
            phases["backward"] += t3 - t2
        t4 = time.perf_counter()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(dev)
        phases["optimizer"] += time.perf_counter() - t4
    elapsed = time.perf_counter() - start

    tokens_per_s = args.steps * train["batch_tokens"] / elapsed
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    total = sum(phases.values())
    flops = train_flops_per_token(cfg, seq) * tokens_per_s
    peak = gemm_peak(rows * seq, cfg["hidden_size"], cfg["intermediate_size"], dev)
    print(
        f"pytorch {torch.__version__} eager ({args.attn} attention) on {dev}, {torch.get_num_threads()} threads\n"
        f"tokens/s       {tokens_per_s:.0f}\n"
        f"step time      {1e3 * elapsed / args.steps:.1f} ms/update\n"
        f"achieved       {flops / 1e9:.1f} GFLOP/s\n"
        f"GEMM peak      {peak / 1e9:.1f} GFLOP/s (torch.matmul f32, measured now)\n"
        f"MFU            {100 * flops / peak:.1f}% of the GEMM peak\n"
        f"peak memory    {peak_rss / 2**20:.0f} MiB (peak RSS)\n"
        + "".join(
            f"  {k:<12} {1e3 * v / args.steps:8.1f} ms/update {100 * v / total:5.1f}%\n"
            for k, v in phases.items()
        )
        + f"last loss      {loss_value:.4f}",
        file=sys.stderr,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "tokens_per_s": tokens_per_s,
                    "step_ms": 1e3 * elapsed / args.steps,
                    "peak_rss_bytes": peak_rss,
                    "achieved_flops": flops,
                    "gemm_peak_flops": peak,
                    "mfu": flops / peak,
                    "phase_ms": {k: 1e3 * v / args.steps for k, v in phases.items()},
                    "last_loss": loss_value,
                }
            )
        )


if __name__ == "__main__":
    main()
