#!/usr/bin/env python3
"""Generate small MiniCPM parity fixtures for the Rust model crate.

Each case builds a tiny random MiniCPM model with HF transformers' GraniteForCausalLM
(Granite computes exactly the MiniCPM forward pass once its four multipliers are set, see
README.md), runs it in float32 and writes

    crates/model/tests/fixtures/<case>/config.json          MiniCPM HF config
    crates/model/tests/fixtures/<case>/model.safetensors    weights, HF MiniCPM tensor names
    crates/model/tests/fixtures/<case>/reference.safetensors
        input_ids  int64   [B, T]
        logits     float32 [B, T, V]
        loss       float32 [1]          (gradient cases only)
        grad.<name> float32 (shape of <name>) for every tensor in model.safetensors
                                        (gradient cases only)

Granite's logits (and, for gradient cases, its loss and gradients) are cross-checked against a
short plain-torch implementation of the MiniCPM forward pass before anything is written.

Usage: scripts/reference/.venv/bin/python scripts/reference/make_fixtures.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file
from transformers import GraniteConfig, GraniteForCausalLM

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "crates", "model", "tests", "fixtures")

# Shared shape / hyper-parameters of every case.
VOCAB = 64
HIDDEN = 32
INTERMEDIATE = 80
LAYERS = 2
SCALE_EMB = 12.0
SCALE_DEPTH = 1.4
DIM_MODEL_BASE = 8
MAX_POS = 64
RMS_EPS = 1e-5
ROPE_THETA = 10000.0
BATCH = 2
SEQ = 8

# muP initialisation (docs/MODEL.md section 3), with a larger embedding std so activations are
# not tiny, and perturbed norm weights so the norm scales are exercised.
INIT_STD_MATRIX = 0.1
INIT_STD_EMBED = 0.5
INIT_STD_LM_HEAD = 0.1
NORM_JITTER = 0.1

INPUT_SEED = 1234
WEIGHT_SEED = 0

LOGIT_TOL = 1e-5
GRAD_RTOL = 1e-4
GRAD_ATOL = 1e-6


@dataclass(frozen=True)
class Case:
    name: str
    heads: int
    kv_heads: int
    tied: bool
    grads: bool
    seed: int


CASES = [
    Case("mha_tied", heads=4, kv_heads=4, tied=True, grads=True, seed=WEIGHT_SEED + 1),
    Case("gqa_untied", heads=4, kv_heads=2, tied=False, grads=True, seed=WEIGHT_SEED + 2),
    Case("gqa_tied", heads=4, kv_heads=2, tied=True, grads=False, seed=WEIGHT_SEED + 3),
]


def minicpm_config(case: Case) -> dict:
    """config.json in the MiniCPM HF format."""
    return {
        "architectures": ["MiniCPMForCausalLM"],
        "model_type": "minicpm",
        "vocab_size": VOCAB,
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": case.heads,
        "num_key_value_heads": case.kv_heads,
        "hidden_act": "silu",
        "max_position_embeddings": MAX_POS,
        "initializer_range": 0.1,
        "rms_norm_eps": RMS_EPS,
        "rope_theta": ROPE_THETA,
        "rope_scaling": None,
        "tie_word_embeddings": case.tied,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "scale_emb": SCALE_EMB,
        "scale_depth": SCALE_DEPTH,
        "dim_model_base": DIM_MODEL_BASE,
        "torch_dtype": "float32",
    }


def granite_kwargs(cfg: dict) -> dict:
    """The Granite (and GraniteMoe) config arguments that compute the MiniCPM forward pass of
    `cfg`: the shape, and the four multipliers that make Granite compute MiniCPM."""
    head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    return dict(
        vocab_size=cfg["vocab_size"],
        hidden_size=cfg["hidden_size"],
        intermediate_size=cfg["intermediate_size"],
        num_hidden_layers=cfg["num_hidden_layers"],
        num_attention_heads=cfg["num_attention_heads"],
        num_key_value_heads=cfg["num_key_value_heads"],
        hidden_act=cfg["hidden_act"],
        max_position_embeddings=cfg["max_position_embeddings"],
        initializer_range=cfg["initializer_range"],
        rms_norm_eps=cfg["rms_norm_eps"],
        rope_parameters={"rope_type": "default", "rope_theta": cfg["rope_theta"]},
        attention_bias=False,
        attention_dropout=0.0,
        tie_word_embeddings=cfg["tie_word_embeddings"],
        bos_token_id=cfg["bos_token_id"],
        eos_token_id=cfg["eos_token_id"],
        pad_token_id=None,
        embedding_multiplier=cfg["scale_emb"],
        residual_multiplier=cfg["scale_depth"] / math.sqrt(cfg["num_hidden_layers"]),
        logits_scaling=cfg["hidden_size"] / cfg["dim_model_base"],
        attention_multiplier=1.0 / math.sqrt(head_dim),
    )


def granite_config(cfg: dict) -> GraniteConfig:
    """The GraniteConfig that computes the MiniCPM forward pass of `cfg`."""
    gc = GraniteConfig(**granite_kwargs(cfg), mlp_bias=False)
    gc._attn_implementation = "eager"
    assert gc.rope_parameters["rope_type"] == "default"
    assert gc.rope_parameters["rope_theta"] == cfg["rope_theta"]
    assert gc.tie_word_embeddings == cfg["tie_word_embeddings"]
    assert gc.num_key_value_heads == cfg["num_key_value_heads"]
    return gc


def tensor_names(cfg: dict) -> list[str]:
    """HF MiniCPM tensor names in a fixed order (also the initialisation order)."""
    names = ["model.embed_tokens.weight"]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}"
        names += [
            f"{p}.input_layernorm.weight",
            f"{p}.self_attn.q_proj.weight",
            f"{p}.self_attn.k_proj.weight",
            f"{p}.self_attn.v_proj.weight",
            f"{p}.self_attn.o_proj.weight",
            f"{p}.post_attention_layernorm.weight",
            f"{p}.mlp.gate_proj.weight",
            f"{p}.mlp.up_proj.weight",
            f"{p}.mlp.down_proj.weight",
        ]
    names.append("model.norm.weight")
    if not cfg["tie_word_embeddings"]:
        names.append("lm_head.weight")
    return names


def init_weights(model: GraniteForCausalLM, cfg: dict, seed: int) -> dict[str, torch.nn.Parameter]:
    """muP-style initialisation; returns name -> parameter for every file tensor."""
    params = dict(model.named_parameters())
    names = tensor_names(cfg)
    # Every parameter of the model is a file tensor and vice versa (tied lm_head is shared).
    assert sorted(params) == sorted(names), (sorted(params), sorted(names))
    if cfg["tie_word_embeddings"]:
        assert model.lm_head.weight is model.model.embed_tokens.weight
    else:
        assert model.lm_head.weight is not model.model.embed_tokens.weight

    scale_width = cfg["hidden_size"] / cfg["dim_model_base"]
    matrix_std = INIT_STD_MATRIX / math.sqrt(scale_width)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in names:
            p = params[name]
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name == "model.embed_tokens.weight":
                p.copy_(noise * INIT_STD_EMBED)
            elif name == "lm_head.weight":
                p.copy_(noise * INIT_STD_LM_HEAD)
            elif name.endswith("norm.weight"):
                p.copy_(1.0 + NORM_JITTER * noise)
            else:
                p.copy_(noise * matrix_std)
    return {n: params[n] for n in names}


# ---------------------------------------------------------------------------------------------
# Plain-torch MiniCPM forward pass (docs/MODEL.md section 1), independent of transformers.


def _rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float() if x.dtype != torch.float64 else x
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w


def _rope(x: torch.Tensor, theta: float, position_ids: torch.Tensor | None = None) -> torch.Tensor:
    """rotate_half RoPE on [B, H, T, D]; positions 0..T-1 unless `position_ids` [B, T] is given."""
    _, _, t, d = x.shape
    inv_freq = theta ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    if position_ids is None:
        ang = torch.arange(t, dtype=torch.float32)[:, None] * inv_freq[None, :]  # [T, D/2]
    else:
        ang = position_ids.to(torch.float32)[:, None, :, None] * inv_freq  # [B, 1, T, D/2]
    ang = torch.cat([ang, ang], dim=-1).to(x.dtype)
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    rot = torch.cat([-x2, x1], dim=-1)
    return x * cos + rot * sin


def minicpm_forward(
    w: dict[str, torch.Tensor],
    cfg: dict,
    ids: torch.Tensor,
    position_ids: torch.Tensor | None = None,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits [B, T, V]. By default plain causal attention at positions 0..T-1; `position_ids`
    [B, T] sets the RoPE positions and `allowed` (bool, broadcastable to [B, heads, T, T], True
    where query t may attend to key s) replaces the causal mask, e.g. block-diagonal for packing."""
    L = cfg["num_hidden_layers"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = cfg["hidden_size"]
    hd = d // nh
    eps = cfg["rms_norm_eps"]
    res_scale = cfg["scale_depth"] / math.sqrt(L)
    b, t = ids.shape

    h = w["model.embed_tokens.weight"][ids] * cfg["scale_emb"]
    if allowed is None:
        allowed = torch.ones(t, t, dtype=torch.bool).tril()
    for i in range(L):
        p = f"model.layers.{i}"
        x = _rms_norm(h, w[f"{p}.input_layernorm.weight"], eps)
        q = (x @ w[f"{p}.self_attn.q_proj.weight"].T).view(b, t, nh, hd).transpose(1, 2)
        k = (x @ w[f"{p}.self_attn.k_proj.weight"].T).view(b, t, nkv, hd).transpose(1, 2)
        v = (x @ w[f"{p}.self_attn.v_proj.weight"].T).view(b, t, nkv, hd).transpose(1, 2)
        q, k = _rope(q, cfg["rope_theta"], position_ids), _rope(k, cfg["rope_theta"], position_ids)
        k = k.repeat_interleave(nh // nkv, dim=1)
        v = v.repeat_interleave(nh // nkv, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        s = s.masked_fill(~allowed, float("-inf"))
        a = s.softmax(-1) @ v  # [B, H, T, hd]
        a = a.transpose(1, 2).reshape(b, t, d) @ w[f"{p}.self_attn.o_proj.weight"].T
        h = h + a * res_scale

        x = _rms_norm(h, w[f"{p}.post_attention_layernorm.weight"], eps)
        m = F.silu(x @ w[f"{p}.mlp.gate_proj.weight"].T) * (x @ w[f"{p}.mlp.up_proj.weight"].T)
        m = m @ w[f"{p}.mlp.down_proj.weight"].T
        h = h + m * res_scale

    h = _rms_norm(h, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return (h / (d / cfg["dim_model_base"])) @ head.T


def causal_lm_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    v = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, v).float(), ids[:, 1:].reshape(-1))


# ---------------------------------------------------------------------------------------------


def input_ids() -> torch.Tensor:
    g = torch.Generator().manual_seed(INPUT_SEED)
    return torch.randint(0, VOCAB, (BATCH, SEQ), generator=g, dtype=torch.int64)


def run_case(case: Case, out_root: str) -> dict:
    cfg = minicpm_config(case)
    torch.manual_seed(case.seed)
    model = GraniteForCausalLM(granite_config(cfg)).to(torch.float32)
    model.train(False)  # no dropout anywhere; gradients still flow
    weights = init_weights(model, cfg, case.seed)
    ids = input_ids()

    # Granite forward (+ HF's own causal-LM loss with labels = input_ids).
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, labels=ids if case.grads else None, use_cache=False)
    logits = out.logits.detach().clone()
    assert logits.dtype == torch.float32 and logits.shape == (BATCH, SEQ, VOCAB)
    assert torch.isfinite(logits).all()

    # Independent plain-torch forward on copies of the same weights.
    ref_w = {n: p.detach().clone().requires_grad_(case.grads) for n, p in weights.items()}
    ref_logits = minicpm_forward(ref_w, cfg, ids)
    logit_diff = (ref_logits.detach() - logits).abs().max().item()
    assert logit_diff < LOGIT_TOL, f"{case.name}: granite vs plain torch logits differ by {logit_diff}"

    # Float64 run of the plain implementation, to report the float32 rounding level.
    w64 = {n: p.detach().double() for n, p in weights.items()}
    diff64 = (minicpm_forward(w64, cfg, ids) - logits.double()).abs().max().item()

    ref = {"input_ids": ids.contiguous(), "logits": logits.contiguous()}
    summary = {
        "case": case.name,
        "max_abs_logit": logits.abs().max().item(),
        "logit_diff_vs_plain": logit_diff,
        "logit_diff_vs_plain_f64": diff64,
    }

    if case.grads:
        loss = out.loss
        hand_loss = causal_lm_loss(logits, ids)
        assert abs(loss.item() - hand_loss.item()) < 1e-6, (loss.item(), hand_loss.item())
        loss.backward()

        ref_loss = causal_lm_loss(ref_logits, ids)
        ref_loss.backward()
        assert abs(loss.item() - ref_loss.item()) < 1e-5

        ref["loss"] = loss.detach().reshape(1).to(torch.float32).clone()
        max_grad_rel = 0.0
        for name, p in weights.items():
            assert p.grad is not None, name
            gr = p.grad.detach().clone()
            assert torch.isfinite(gr).all(), name
            other = ref_w[name].grad
            # For tied embeddings p.grad already holds embedding + head contributions (one
            # shared parameter); the plain implementation uses one tensor for both too.
            torch.testing.assert_close(gr, other, rtol=GRAD_RTOL, atol=GRAD_ATOL, msg=name)
            rel = ((gr - other).abs().max() / other.abs().max().clamp_min(1e-30)).item()
            max_grad_rel = max(max_grad_rel, rel)
            ref[f"grad.{name}"] = gr.contiguous()
        summary["loss"] = loss.item()
        summary["grad_rel_diff_vs_plain"] = max_grad_rel
        summary["max_abs_grad"] = max(p.grad.abs().max().item() for p in weights.values())

    case_dir = os.path.join(out_root, case.name)
    os.makedirs(case_dir, exist_ok=True)
    with open(os.path.join(case_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    model_tensors = {n: p.detach().clone().contiguous() for n, p in weights.items()}
    save_file(model_tensors, os.path.join(case_dir, "model.safetensors"), metadata={"format": "pt"})
    save_file(ref, os.path.join(case_dir, "reference.safetensors"), metadata={"format": "pt"})

    summary["files"] = {
        fn: os.path.getsize(os.path.join(case_dir, fn))
        for fn in ("config.json", "model.safetensors", "reference.safetensors")
    }
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT, help="fixture root (default: %(default)s)")
    args = ap.parse_args()

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")

    total = 0
    for case in CASES:
        s = run_case(case, args.out)
        size = sum(s["files"].values())
        total += size
        line = (
            f"{s['case']:<11} max|logit| {s['max_abs_logit']:.4f}  "
            f"granite-vs-plain {s['logit_diff_vs_plain']:.2e} (f64 {s['logit_diff_vs_plain_f64']:.2e})"
        )
        if "loss" in s:
            line += (
                f"  loss {s['loss']:.6f}  max|grad| {s['max_abs_grad']:.4f}"
                f"  grad rel diff {s['grad_rel_diff_vs_plain']:.2e}"
            )
        print(line)
        for fn, n in s["files"].items():
            print(f"    {fn:<24} {n:>8} bytes")
    print(f"total fixture size {total} bytes ({total / 1024:.1f} KiB); ln(V) = {math.log(VOCAB):.4f}")


if __name__ == "__main__":
    main()
