#!/usr/bin/env python3
"""One MiniCPM training step in PyTorch eager, timed like `minicpm bench train`.

Reads the same run config (TOML) as the Rust command and builds the same model, in float32, with
the same muP initialisation, AdamW parameter groups (matrices at lr / scale_width, no weight decay
on norms), global-norm clipping, and uniformly random token ids. Two models compute it:

- `--model granite`: HF transformers' GraniteForCausalLM (which computes MiniCPM exactly, see
  scripts/reference/README.md), with `--attn sdpa` or `eager`;
- `--model plain`: MiniCPM written out in plain PyTorch modules (MiniCpm below) with
  `scaled_dot_product_attention`, the fastest eager PyTorch step we know on the CPU.

Prints tokens/s, the phase split and peak RSS, and with --json one JSON object on stdout.

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


class RmsNorm(torch.nn.Module):
    def __init__(self, width: int, eps: float):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Layer(torch.nn.Module):
    """One decoder layer: pre-norm attention with RoPE and SwiGLU, muP-scaled residual branches."""

    def __init__(self, cfg: dict):
        super().__init__()
        d, ff = cfg["hidden_size"], cfg["intermediate_size"]
        self.heads, self.kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.head_dim = d // self.heads
        linear = lambda i, o: torch.nn.Linear(i, o, bias=False)  # noqa: E731
        self.input_layernorm = RmsNorm(d, cfg["rms_norm_eps"])
        self.q_proj, self.o_proj = linear(d, d), linear(d, d)
        self.k_proj = linear(d, self.kv_heads * self.head_dim)
        self.v_proj = linear(d, self.kv_heads * self.head_dim)
        self.post_attention_layernorm = RmsNorm(d, cfg["rms_norm_eps"])
        self.gate_proj, self.up_proj, self.down_proj = linear(d, ff), linear(d, ff), linear(ff, d)
        self.residual_scale = cfg["scale_depth"] / math.sqrt(cfg["num_hidden_layers"])

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        h = self.input_layernorm(x)
        heads = lambda y, n: y.view(b, t, n, self.head_dim).transpose(1, 2)  # noqa: E731
        q = rope(heads(self.q_proj(h), self.heads), cos, sin)
        k = rope(heads(self.k_proj(h), self.kv_heads), cos, sin)
        v = heads(self.v_proj(h), self.kv_heads)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=self.heads != self.kv_heads
        )
        x = x + self.o_proj(y.transpose(1, 2).reshape(b, t, -1)) * self.residual_scale
        h = self.post_attention_layernorm(x)
        mlp = self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))
        return x + mlp * self.residual_scale


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class MiniCpm(torch.nn.Module):
    """MiniCPM in plain PyTorch, with the parameter names of the HF checkpoint."""

    def __init__(self, cfg: dict, seq: int):
        super().__init__()
        d = cfg["hidden_size"]
        self.embed_tokens = torch.nn.Embedding(cfg["vocab_size"], d)
        self.layers = torch.nn.ModuleList(Layer(cfg) for _ in range(cfg["num_hidden_layers"]))
        self.norm = RmsNorm(d, cfg["rms_norm_eps"])
        self.lm_head = None
        if not cfg["tie_word_embeddings"]:
            self.lm_head = torch.nn.Linear(d, cfg["vocab_size"], bias=False)
        self.scale_emb = cfg["scale_emb"]
        self.logit_scale = d / cfg["dim_model_base"]
        head_dim = d // cfg["num_attention_heads"]
        inv = cfg["rope_theta"] ** (-torch.arange(0, head_dim, 2).float() / head_dim)
        angles = torch.outer(torch.arange(seq).float(), inv).repeat(1, 2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(ids) * self.scale_emb
        for layer in self.layers:
            x = layer(x, self.cos, self.sin)
        x = self.norm(x) / self.logit_scale
        head = self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        return x @ head.t()


# The input and output embeddings of either model: AdamW's `embedding` group, initialised at std.
EMBEDDINGS = ("model.embed_tokens.weight", "lm_head.weight", "embed_tokens.weight")


def build(cfg: dict, which: str, attn: str, seed: int, seq: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    if which == "plain":
        model = MiniCpm(cfg, seq)
    else:
        gc = granite_config(cfg)
        gc._attn_implementation = attn
        model = GraniteForCausalLM(gc)
    model = model.to(torch.float32)
    scale_width = cfg["hidden_size"] / cfg["dim_model_base"]
    std = cfg["initializer_range"]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name in EMBEDDINGS:
                p.normal_(0.0, std)
            else:
                p.normal_(0.0, std / math.sqrt(scale_width))
    return model


def optimizer(model: torch.nn.Module, cfg: dict, optim: dict) -> torch.optim.AdamW:
    lr = optim.get("lr", 0.01)
    scale_width = cfg["hidden_size"] / cfg["dim_model_base"]
    groups = {"matrices": [], "norms": [], "embedding": []}
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            groups["norms"].append(p)
        elif name in EMBEDDINGS:
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


def gemm_peak(
    m: int, k: int, n: int, device: str, dtype: torch.dtype = torch.float32, seconds: float = 2.0
) -> float:
    """Best FLOP/s of torch.matmul at [m, k] x [k, n] (the MLP's shape) in `dtype`, as the Rust
    bench measures its own product in the run's precision."""
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
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
    ap.add_argument("--model", default="granite", choices=["granite", "plain"])
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"], help="granite's attention")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--compile", action="store_true", help="torch.compile the forward pass")
    ap.add_argument(
        "--bf16",
        action="store_true",
        help="forward pass under torch.autocast(dtype=torch.bfloat16): bf16 matmuls with f32 "
        "weights and optimizer, PyTorch's counterpart of `train.matmul = \"bf16\"`",
    )
    ap.add_argument(
        "--procs",
        type=int,
        default=1,
        help="data-parallel processes (DDP over gloo on loopback), sharing --threads and each "
        "micro-batch's rows: PyTorch's counterpart of `train.lanes`",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with open(args.config, "rb") as f:
        run = tomllib.load(f)
    rows = run["train"]["micro_batch"]
    if args.procs < 1 or rows % args.procs:
        sys.exit(f"error: --procs {args.procs} does not divide train.micro_batch = {rows}")
    if args.procs > 1:
        import torch.multiprocessing as mp

        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
        mp.spawn(train_ranks, args=(args, run), nprocs=args.procs)
    else:
        train_ranks(0, args, run)


def train_ranks(rank: int, args: argparse.Namespace, run: dict) -> None:
    """The timed updates of config `run` on one of `args.procs` processes; rank 0 reports."""
    procs = args.procs
    if procs > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo", rank=rank, world_size=procs)
    torch.set_num_threads(max(1, args.threads // procs))
    cfg = hf_config(run["model"])
    train = run["train"]
    rows, seq = train["micro_batch"], train["seq_len"]
    rows //= procs
    accum = train["batch_tokens"] // (rows * seq * procs)
    clip = run.get("optim", {}).get("grad_clip", 1.0)
    dev = args.device
    model = build(cfg, args.model, args.attn, run.get("seed", 42), seq).to(dev)
    if procs > 1:
        # Averages the ranks' gradients in every backward pass, as the update's mean needs.
        model = torch.nn.parallel.DistributedDataParallel(model)
    forward = model if args.model == "plain" else (lambda ids: model(input_ids=ids).logits)
    if args.compile:
        forward = torch.compile(forward)
    opt = optimizer(model, cfg, run.get("optim", {}))
    gen = torch.Generator().manual_seed(run.get("seed", 42) + rank)

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
            with torch.autocast(device_type=dev, dtype=torch.bfloat16, enabled=args.bf16):
                logits = forward(inputs)
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
    if procs > 1:
        rss = [0] * procs
        dist.all_gather_object(rss, peak_rss)
        dist.destroy_process_group()
        if rank > 0:
            return
        peak_rss = sum(rss)
        torch.set_num_threads(args.threads)
    total = sum(phases.values())
    flops = train_flops_per_token(cfg, seq) * tokens_per_s
    # At a whole micro-batch's rows, as in one process.
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    peak = gemm_peak(rows * procs * seq, cfg["hidden_size"], cfg["intermediate_size"], dev, dtype)
    label = "plain modules + sdpa" if args.model == "plain" else f"Granite ({args.attn} attention)"
    mode = "torch.compile" if args.compile else "eager"
    if args.bf16:
        mode += ", autocast bf16"
    print(
        f"pytorch {torch.__version__} {mode}, {label} on {dev}, {args.threads} threads"
        f"{f' in {procs} processes' if procs > 1 else ''}\n"
        f"tokens/s       {tokens_per_s:.0f}\n"
        f"step time      {1e3 * elapsed / args.steps:.1f} ms/update\n"
        f"achieved       {flops / 1e9:.1f} GFLOP/s\n"
        f"GEMM peak      {peak / 1e9:.1f} GFLOP/s (torch.matmul {'bf16' if args.bf16 else 'f32'}, measured now)\n"
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
