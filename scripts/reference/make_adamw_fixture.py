#!/usr/bin/env python3
"""Generate the AdamW reference fixture for the Rust optimizer test.

torch.optim.AdamW runs a few updates of a tiny MiniCPM model's weights, with MiniCPM's parameter
groups and global-norm gradient clipping, on given gradients, and the weights after every update
are written out. The Rust test (crates/train/tests/mup_groups.rs) feeds the same gradients to
its own AdamW and compares.

    crates/train/tests/fixtures/adamw/config.json        MiniCPM HF config of the tiny model
    crates/train/tests/fixtures/adamw/model.safetensors  initial weights, HF names, float32
    crates/train/tests/fixtures/adamw/steps.safetensors
        step{k}.grad.<name>    float32  the gradient fed to update k (k = 1..STEPS), unclipped
        step{k}.weight.<name>  float32  the weights after update k
        metadata "reference", a JSON object: beta1, beta2, eps, weight_decay, grad_clip,
                  scale_width, base_lr (the base learning rate of each update), grad_norm
                  (each update's global gradient norm before clipping), clipped (booleans)

Parameter groups (MiniCPM's muP rules, by tensor name):

    norm weights (`*norm.weight`)           lr = base_lr,               weight decay 0
    embedding and untied lm_head            lr = base_lr,               weight decay 0.1
    hidden matrices (q, k, v, o, gate, ...) lr = base_lr / scale_width, weight decay 0.1

with scale_width = hidden_size / dim_model_base. Hyper-parameters are the trainer's defaults:
betas (0.9, 0.95), eps 1e-8, weight decay 0.1, gradients clipped to global norm 1.0 (PyTorch's
clip_grad_norm_: scale max_norm / (norm + 1e-6) when the norm exceeds max_norm).

The update runs in float64 on the float32 inputs, so the stored weights are the exact AdamW
result rounded once to float32; a float32 implementation should agree to about 1e-7 relative.
The gradient scales alternate so that updates 1, 3 and 5 are clipped and 2 and 4 are not.

Usage: scripts/reference/.venv/bin/python scripts/reference/make_adamw_fixture.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os

import torch
from safetensors.torch import save_file

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "crates", "train", "tests", "fixtures", "adamw")

CONFIG = {
    "architectures": ["MiniCPMForCausalLM"],
    "model_type": "minicpm",
    "vocab_size": 6,
    "hidden_size": 4,
    "intermediate_size": 6,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "hidden_act": "silu",
    "max_position_embeddings": 32,
    "initializer_range": 0.1,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "scale_emb": 12.0,
    "scale_depth": 1.4,
    "dim_model_base": 2,
    "torch_dtype": "float32",
}
SCALE_WIDTH = CONFIG["hidden_size"] / CONFIG["dim_model_base"]  # 2

BETAS = (0.9, 0.95)
EPS = 1e-8
WEIGHT_DECAY = 0.1
GRAD_CLIP = 1.0

# Base learning rate and gradient standard deviation of each update: a warmup, a plateau and a
# decay; the 180 gradient elements of std 0.3, 0.15 and 0.5 have global norms of about 4, 2 and
# 7 (clipped), those of std 0.01 and 0.02 about 0.13 and 0.27 (not clipped).
BASE_LR = [0.002, 0.004, 0.01, 0.01, 0.006]
GRAD_STD = [0.3, 0.01, 0.15, 0.02, 0.5]

SEED = 20240


def shapes() -> dict[str, list[int]]:
    """HF MiniCPM tensor names and PyTorch shapes of the tiny model."""
    c = CONFIG
    h, i, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    kv = c["num_key_value_heads"] * h // c["num_attention_heads"]
    out = {"model.embed_tokens.weight": [v, h]}
    for layer in range(c["num_hidden_layers"]):
        p = f"model.layers.{layer}"
        out |= {
            f"{p}.input_layernorm.weight": [h],
            f"{p}.self_attn.q_proj.weight": [h, h],
            f"{p}.self_attn.k_proj.weight": [kv, h],
            f"{p}.self_attn.v_proj.weight": [kv, h],
            f"{p}.self_attn.o_proj.weight": [h, h],
            f"{p}.post_attention_layernorm.weight": [h],
            f"{p}.mlp.gate_proj.weight": [i, h],
            f"{p}.mlp.up_proj.weight": [i, h],
            f"{p}.mlp.down_proj.weight": [h, i],
        }
    out["model.norm.weight"] = [h]
    out["lm_head.weight"] = [v, h]
    return out


def group_of(name: str) -> tuple[str, float, float]:
    """(group, lr scale, weight decay) of a tensor under MiniCPM's muP rules."""
    if name.endswith("norm.weight"):
        return "norms", 1.0, 0.0
    if name in ("model.embed_tokens.weight", "lm_head.weight"):
        return "embeddings", 1.0, WEIGHT_DECAY
    return "matrices", 1.0 / SCALE_WIDTH, WEIGHT_DECAY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    # Initial weights: norms near 1, everything else small, as float32.
    initial: dict[str, torch.Tensor] = {}
    for name, shape in shapes().items():
        if name.endswith("norm.weight"):
            initial[name] = 1.0 + 0.1 * torch.randn(shape)
        else:
            initial[name] = 0.1 * torch.randn(shape)

    params = {n: torch.nn.Parameter(w.double()) for n, w in initial.items()}
    groups: dict[str, dict] = {}
    for name, p in params.items():
        g, scale, wd = group_of(name)
        groups.setdefault(g, {"params": [], "names": [], "lr_scale": scale, "weight_decay": wd})
        groups[g]["params"].append(p)
        groups[g]["names"].append(name)
    opt = torch.optim.AdamW(
        [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in groups.values()],
        lr=BASE_LR[0],
        betas=BETAS,
        eps=EPS,
        weight_decay=WEIGHT_DECAY,
        foreach=False,
    )

    steps: dict[str, torch.Tensor] = {}
    norms, clipped = [], []
    for k, (base_lr, std) in enumerate(zip(BASE_LR, GRAD_STD), start=1):
        for name, p in params.items():
            g = (std * torch.randn(p.shape)).float()  # the gradient as the Rust side sees it
            steps[f"step{k}.grad.{name}"] = g.clone()
            p.grad = g.double()
        norm = torch.nn.utils.clip_grad_norm_(list(params.values()), GRAD_CLIP)
        norms.append(float(norm))
        clipped.append(float(norm) > GRAD_CLIP)
        for group, spec in zip(opt.param_groups, groups.values()):
            group["lr"] = base_lr * spec["lr_scale"]
        opt.step()
        opt.zero_grad(set_to_none=True)
        for name, p in params.items():
            steps[f"step{k}.weight.{name}"] = p.detach().float().clone()
    assert clipped == [True, False, True, False, True], f"clipping pattern changed: {norms}"

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
        f.write("\n")
    save_file(
        {n: w.contiguous() for n, w in initial.items()},
        os.path.join(args.out, "model.safetensors"),
        metadata={"format": "pt"},
    )
    reference = {
        "beta1": BETAS[0],
        "beta2": BETAS[1],
        "eps": EPS,
        "weight_decay": WEIGHT_DECAY,
        "grad_clip": GRAD_CLIP,
        "scale_width": SCALE_WIDTH,
        "base_lr": BASE_LR,
        "grad_norm": norms,
        "clipped": clipped,
        "generator": f"torch {torch.__version__}: optim.AdamW in float64, nn.utils.clip_grad_norm_",
    }
    # One metadata key: safetensors writes several in no fixed order, one keeps the file
    # byte-identical from run to run.
    save_file(
        {n: t.contiguous() for n, t in steps.items()},
        os.path.join(args.out, "steps.safetensors"),
        metadata={"reference": json.dumps(reference, sort_keys=True)},
    )
    print(f"wrote {args.out}: {len(BASE_LR)} updates, gradient norms {[round(n, 4) for n in norms]}")


if __name__ == "__main__":
    main()
