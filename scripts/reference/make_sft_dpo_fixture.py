#!/usr/bin/env python3
"""Generate the SFT and DPO reference fixture for the Rust train crate.

A tiny MiniCPM (the `gqa_untied` shape of make_fixtures.py: vocab 64, hidden 32, 2 layers, 4 heads /
2 KV heads, untied lm_head) is built with HF transformers' GraniteForCausalLM and run in float32:

    crates/train/tests/fixtures/sft_dpo/config.json                 MiniCPM HF config
    crates/train/tests/fixtures/sft_dpo/model.safetensors           policy / SFT model, HF names
    crates/train/tests/fixtures/sft_dpo/reference_model.safetensors DPO reference model (other seed)
    crates/train/tests/fixtures/sft_dpo/sft.safetensors
        padded.input_ids     int64   [2, 12]  one conversation per row, right-padded with id 0
        padded.labels        int64   [2, 12]  unshifted: answer ids + EOS (2), -100 elsewhere
        padded.loss          float32 [1]      HF causal-LM loss, plain causal attention, no mask
        padded.grad.<name>   float32          its gradient, every tensor in model.safetensors
        packed.input_ids     int64   [2, 16]  3 conversations in row 0, 2 + 3 pads in row 1
        packed.position_ids  int64   [2, 16]  0.. from each conversation's first token; the
                                              trailing pads are one more segment (0, 1, 2)
        packed.labels        int64   [2, 16]  as padded.labels (-100 on every segment's first token)
        packed.loss          float32 [1]      the loss with block-diagonal causal attention and
                                              RoPE at position_ids
        packed.grad.<name>   float32
        metadata "reference": JSON (conventions, versions)
    crates/train/tests/fixtures/sft_dpo/dpo.safetensors
        chosen_input_ids, rejected_input_ids   int64 [3, T]  prompt + completion as TRL tokenized
                                                              them, right-padded with 0
        chosen_labels, rejected_labels         int64 [3, T]  unshifted: the ids TRL scores, -100
                                                              elsewhere
        ref_chosen_logps, ref_rejected_logps   float32 [3]   TRL's precomputed reference log-probs
        chosen_logps, rejected_logps           float32 [3]   the policy's (sums over completions)
        sigmoid.loss [1], sigmoid.chosen_rewards [3], sigmoid.rejected_rewards [3],
        sigmoid.grad.<name>                                  TRL DPOTrainer, loss_type "sigmoid"
        ipo.loss [1], ipo.grad.<name>, ipo.chosen_logps, ipo.rejected_logps, ipo.ref_chosen_logps,
        ipo.ref_rejected_logps [3]                           loss_type "ipo"; the log-probs divided
                                                              by the completion length, as TRL's IPO
                                                              uses them
        metadata "reference": JSON (beta, loss types, versions, IPO normalisation)

Every number is checked before anything is written: the packed SFT loss and gradients against a
plain-torch MiniCPM forward (make_fixtures.minicpm_forward with position ids and a block mask) and
against each conversation run alone through Granite; the DPO losses against the paper formulas
from the recorded log-probs, the log-probs against a direct Granite computation, and the DPO
gradients against the gradient of the formula through a separate copy of the policy.

Usage: scripts/reference/.venv/bin/python scripts/reference/make_sft_dpo_fixture.py [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import warnings

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

import datasets  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers, processors  # noqa: E402
from transformers import GraniteForCausalLM, PreTrainedTokenizerFast  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402

DEFAULT_OUT = os.path.join(mf.REPO_ROOT, "crates", "train", "tests", "fixtures", "sft_dpo")

CASE = dataclasses.replace(next(c for c in mf.CASES if c.name == "gqa_untied"), name="sft_dpo")
POLICY_SEED = 10
REFERENCE_SEED = 11
DATA_SEED = 4321

PAD, BOS, EOS = 0, 1, 2
FIRST_WORD = 3  # ordinary tokens are ids 3..63
IGNORE = -100

# SFT conversations: (prompt words, answer words); each is BOS + prompt + answer + EOS.
PADDED_LEN = 12
PADDED_ROWS = [(4, 3), (2, 7)]  # 9 and 11 tokens
PACKED_LEN = 16
PACKED_ROWS = [[(2, 1), (1, 3), (2, 1)], [(3, 1), (2, 3)]]  # 5+6+5 = 16; 6+7 = 13, 3 pads

# DPO preference pairs: (prompt words, chosen words, rejected words, shared completion prefix).
PAIRS = [(3, 2, 4, 0), (5, 3, 1, 1), (1, 4, 3, 0)]
BETA = 0.1
LOSS_TYPES = ["sigmoid", "ipo"]

LOGIT_TOL = 1e-5
LOSS_TOL = 1e-5
LOGP_TOL = 1e-5
GRAD_RTOL = 1e-4

MAX_DIFF: dict[str, float] = {}


def record(check: str, value: float, tol: float) -> None:
    assert value <= tol, f"{check}: difference {value:.3e} exceeds {tol:.1e}"
    MAX_DIFF[check] = max(MAX_DIFF.get(check, 0.0), value)


def grad_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (relative to the tensor's scale)."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def check_grads(check: str, got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for name in got:
        assert torch.isfinite(got[name]).all(), name
        record(check, grad_rel(got[name], want[name]), GRAD_RTOL)


# ---------------------------------------------------------------------------------------------
# Models


def build_model(seed: int) -> tuple[GraniteForCausalLM, dict[str, torch.nn.Parameter]]:
    """A fresh Granite model with make_fixtures' muP-style initialisation from `seed`."""
    cfg = mf.minicpm_config(CASE)
    torch.manual_seed(seed)
    model = GraniteForCausalLM(mf.granite_config(cfg)).to(torch.float32)
    model.train(False)  # no dropout anywhere; gradients still flow
    return model, mf.init_weights(model, cfg, seed)


def grads(weights: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone().contiguous() for n, p in weights.items()}


def plain_weights(seed: int) -> dict[str, torch.Tensor]:
    _, weights = build_model(seed)
    return {n: p.detach().clone().requires_grad_(True) for n, p in weights.items()}


# ---------------------------------------------------------------------------------------------
# SFT


def conversation(g: torch.Generator, prompt: int, answer: int) -> tuple[list[int], list[int]]:
    """BOS + prompt + answer + EOS and its unshifted labels (the answer and EOS only)."""
    words = torch.randint(FIRST_WORD, mf.VOCAB, (prompt + answer,), generator=g).tolist()
    ids = [BOS] + words + [EOS]
    labels = [IGNORE] * (1 + prompt) + words[prompt:] + [EOS]
    return ids, labels


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of logits[:, :-1] against labels[:, 1:], and the count of labels."""
    v = logits.shape[-1]
    lab = labels[:, 1:].reshape(-1)
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, v).float(), lab, ignore_index=IGNORE, reduction="sum")
    return loss, int((lab != IGNORE).sum())


def sft_padded(g: torch.Generator) -> dict[str, torch.Tensor]:
    ids = torch.full((len(PADDED_ROWS), PADDED_LEN), PAD, dtype=torch.int64)
    labels = torch.full_like(ids, IGNORE)
    for r, (p, a) in enumerate(PADDED_ROWS):
        conv_ids, conv_labels = conversation(g, p, a)
        ids[r, : len(conv_ids)] = torch.tensor(conv_ids)
        labels[r, : len(conv_ids)] = torch.tensor(conv_labels)

    model, weights = build_model(POLICY_SEED)
    out = model(input_ids=ids, labels=labels, use_cache=False)
    out.loss.backward()

    # Independent plain-torch forward (plain causal attention) on the same weights.
    cfg = mf.minicpm_config(CASE)
    w = plain_weights(POLICY_SEED)
    logits = mf.minicpm_forward(w, cfg, ids)
    record("sft granite vs plain logits", (logits - out.logits).abs().max().item(), LOGIT_TOL)
    s, n = token_loss_sum(logits, labels)
    (s / n).backward()
    record("sft loss vs plain", abs(out.loss.item() - (s / n).item()), LOSS_TOL)
    check_grads("sft grad vs plain (rel)", grads(weights), {k: t.grad for k, t in w.items()})

    t = {"padded.input_ids": ids, "padded.labels": labels, "padded.loss": out.loss.detach().reshape(1).clone()}
    t.update({f"padded.grad.{k}": v for k, v in grads(weights).items()})
    return t


def sft_packed(g: torch.Generator) -> dict[str, torch.Tensor]:
    rows = len(PACKED_ROWS)
    ids = torch.full((rows, PACKED_LEN), PAD, dtype=torch.int64)
    labels = torch.full_like(ids, IGNORE)
    positions = torch.zeros_like(ids)
    segment = torch.zeros_like(ids)  # segment number within the row; pads are the last segment
    convs = []  # (ids, labels) of every conversation, for the unpacked check
    for r, row in enumerate(PACKED_ROWS):
        at = 0
        for k, (p, a) in enumerate(row):
            conv_ids, conv_labels = conversation(g, p, a)
            n = len(conv_ids)
            ids[r, at : at + n] = torch.tensor(conv_ids)
            labels[r, at : at + n] = torch.tensor(conv_labels)
            positions[r, at : at + n] = torch.arange(n)
            segment[r, at : at + n] = k
            convs.append((conv_ids, conv_labels))
            at += n
        assert at <= PACKED_LEN
        positions[r, at:] = torch.arange(PACKED_LEN - at)
        segment[r, at:] = len(row)
    # No prediction crosses a boundary: every segment's first token is unlabelled.
    first = torch.ones_like(segment, dtype=torch.bool)
    first[:, 1:] = segment[:, 1:] != segment[:, :-1]
    assert (labels[first] == IGNORE).all()
    assert (positions[first] == 0).all()

    # Block-diagonal causal mask: query t sees key s iff s <= t and both are in one segment.
    t_idx = torch.arange(PACKED_LEN)
    allowed = (segment[:, :, None] == segment[:, None, :]) & (t_idx[None, :, None] >= t_idx[None, None, :])
    allowed = allowed[:, None]  # [B, 1, T, T]
    # Granite's eager attention adds a 4D float mask to the scores as is.
    additive = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(~allowed, torch.finfo(torch.float32).min)

    model, weights = build_model(POLICY_SEED)
    out = model(input_ids=ids, attention_mask=additive, position_ids=positions, labels=labels, use_cache=False)
    out.loss.backward()
    packed_grads = grads(weights)

    # (a) plain-torch MiniCPM with the same positions and mask.
    cfg = mf.minicpm_config(CASE)
    w = plain_weights(POLICY_SEED)
    logits = mf.minicpm_forward(w, cfg, ids, position_ids=positions, allowed=allowed)
    record("packed granite vs plain logits", (logits - out.logits).abs().max().item(), LOGIT_TOL)
    s, n = token_loss_sum(logits, labels)
    (s / n).backward()
    record("packed loss vs plain", abs(out.loss.item() - (s / n).item()), LOSS_TOL)
    check_grads("packed grad vs plain (rel)", packed_grads, {k: t.grad for k, t in w.items()})

    # (b) every conversation alone through Granite: summed token losses over the total label count.
    model_b, weights_b = build_model(POLICY_SEED)
    sums, count = [], 0
    for conv_ids, conv_labels in convs:
        o = model_b(input_ids=torch.tensor([conv_ids]), use_cache=False)
        s_k, n_k = token_loss_sum(o.logits, torch.tensor([conv_labels]))
        sums.append(s_k)
        count += n_k
    unpacked = torch.stack(sums).sum() / count
    unpacked.backward()
    assert count == int((labels[:, 1:] != IGNORE).sum())
    record("packed loss vs unpacked", abs(out.loss.item() - unpacked.item()), LOSS_TOL)
    check_grads("packed grad vs unpacked (rel)", packed_grads, grads(weights_b))

    # transformers' own packing detection (position_ids and no mask) gives the same loss too.
    model_c, _ = build_model(POLICY_SEED)
    with torch.no_grad():
        auto = model_c(input_ids=ids, position_ids=positions, labels=labels, use_cache=False).loss
    record("packed loss vs transformers packing", abs(out.loss.item() - auto.item()), LOSS_TOL)

    t = {
        "packed.input_ids": ids,
        "packed.position_ids": positions,
        "packed.labels": labels,
        "packed.loss": out.loss.detach().reshape(1).clone(),
    }
    t.update({f"packed.grad.{k}": v for k, v in packed_grads.items()})
    return t


# ---------------------------------------------------------------------------------------------
# DPO


def tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer: "<pad>" 0, "<s>" 1, "</s>" 2, "t3".."t63" = ids 3..63, BOS prepended."""
    vocab = {"<pad>": PAD, "<s>": BOS, "</s>": EOS, **{f"t{i}": i for i in range(FIRST_WORD, mf.VOCAB)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token=None))  # an unknown word is an error
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.add_special_tokens(["<pad>", "<s>", "</s>"])  # split out of text like "t7</s>"
    # Like MiniCPM's Llama tokenizer (add_bos_token = true, add_eos_token = false).
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", BOS)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, len(tok)) == (PAD, BOS, EOS, mf.VOCAB)
    return tok


def preference_dataset(g: torch.Generator) -> datasets.Dataset:
    """Plain-text pairs; TRL appends the EOS text and the tokenizer prepends BOS."""

    def words(n: int) -> list[int]:
        return torch.randint(FIRST_WORD, mf.VOCAB, (n,), generator=g).tolist()

    def text(ids: list[int]) -> str:
        return " ".join(f"t{i}" for i in ids)

    rows = {"prompt": [], "chosen": [], "rejected": []}
    for p, c, r, shared in PAIRS:
        prompt, chosen = words(p), words(c)
        rejected = chosen[:shared] + words(r - shared)
        assert chosen != rejected
        rows["prompt"].append(text(prompt))
        rows["chosen"].append(" " + text(chosen))
        rows["rejected"].append(" " + text(rejected))
    return datasets.Dataset.from_dict(rows)


def completion_logps(model: GraniteForCausalLM, ids: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor):
    """Sum over completion tokens of log-softmax(logits[t-1])[label t], straight from Granite's logits."""
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    lab = labels[:, 1:]
    logp = logits[:, :-1].float().log_softmax(-1).gather(-1, lab.clamp_min(0)[..., None])[..., 0]
    return (logp * (lab != IGNORE)).sum(-1)


def dpo_formula(loss_type, pc, pr, rc, rr, nc, nr) -> torch.Tensor:
    """The paper formulas (IPO with TRL's per-token averaging of the log-ratios)."""
    if loss_type == "sigmoid":
        return (-F.logsigmoid(BETA * ((pc - rc) - (pr - rr)))).mean()
    return (((pc - rc) / nc - (pr - rr) / nr - 1 / (2 * BETA)) ** 2).mean()


def run_dpo(loss_type: str, dataset: datasets.Dataset, workdir: str) -> dict:
    policy, weights = build_model(POLICY_SEED)
    reference, _ = build_model(REFERENCE_SEED)
    args = DPOConfig(
        output_dir=os.path.join(workdir, loss_type),
        beta=BETA,
        loss_type=[loss_type],
        precompute_ref_log_probs=True,
        per_device_train_batch_size=len(PAIRS),
        precompute_ref_batch_size=len(PAIRS),
        max_length=None,
        bf16=False,
        fp16=False,
        activation_checkpointing=False,  # TRL defaults to checkpointing and to bf16
        use_cpu=True,
        seed=0,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
    )
    trainer = DPOTrainer(
        model=policy, ref_model=reference, args=args, train_dataset=dataset, processing_class=tokenizer()
    )
    assert not (args.bf16 or args.fp16 or args.gradient_checkpointing)
    # One batch of all pairs in dataset order, collated by TRL's own collator.
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PAIRS))])
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()

    n = len(PAIRS)
    ids, completion, attn = batch["input_ids"], batch["completion_mask"], batch["attention_mask"]
    labels = ids.masked_fill(completion == 0, IGNORE)  # exactly TRL's labels
    with torch.no_grad():
        pc, pr = trainer.compute_ref_log_probs(trainer.model, batch)  # TRL's log-probs, of the policy
    rc, rr = batch["ref_chosen_logps"], batch["ref_rejected_logps"]
    lengths = completion.sum(-1).to(torch.float32)
    nc, nr = lengths[:n], lengths[n:]

    # The precomputed reference and the policy log-probs against Granite's own logits.
    with torch.no_grad():
        direct_ref = completion_logps(build_model(REFERENCE_SEED)[0], ids, labels, attn)
    record("dpo ref logps vs granite", (torch.cat([rc, rr]) - direct_ref).abs().max().item(), LOGP_TOL)
    direct_model, direct_weights = build_model(POLICY_SEED)
    direct = completion_logps(direct_model, ids, labels, attn)
    record("dpo policy logps vs granite", (torch.cat([pc, pr]) - direct).abs().max().item(), LOGP_TOL)

    # TRL's loss against the paper formula from the recorded numbers, and its gradient against the
    # formula's gradient through a separate copy of the policy.
    formula = dpo_formula(loss_type, pc, pr, rc, rr, nc, nr)
    record(f"dpo {loss_type} loss vs formula", abs(loss.item() - formula.item()), LOSS_TOL)
    if loss_type == "ipo":  # the loss from the per-token averages stored in the fixture
        stored = (((pc / nc - rc / nc) - (pr / nr - rr / nr) - 1 / (2 * BETA)) ** 2).mean()
        record("dpo ipo loss vs stored averages", abs(loss.item() - stored.item()), LOSS_TOL)
    dpo_formula(loss_type, direct[:n], direct[n:], rc, rr, nc, nr).backward()
    check_grads(f"dpo {loss_type} grad vs formula (rel)", grads(weights), grads(direct_weights))

    chosen_rewards, rejected_rewards = BETA * (pc - rc), BETA * (pr - rr)
    logged = trainer._metrics["train"]
    record("dpo rewards vs TRL's logged means", abs(logged["rewards/chosen"][-1] - chosen_rewards.mean().item()), 1e-6)
    record("dpo rewards vs TRL's logged means", abs(logged["rewards/rejected"][-1] - rejected_rewards.mean().item()), 1e-6)
    record("dpo logps vs TRL's logged means", abs(logged["logps/chosen"][-1] - pc.mean().item()), 1e-5)

    return {
        "ids": ids,
        "labels": labels,
        "pc": pc, "pr": pr, "rc": rc, "rr": rr, "nc": nc, "nr": nr,
        "loss": loss.detach().reshape(1).clone(),
        "chosen_rewards": chosen_rewards,
        "rejected_rewards": rejected_rewards,
        "grads": grads(weights),
        "tokens": [trainer.train_dataset[i] for i in range(n)],
    }


def dpo(g: torch.Generator) -> tuple[dict[str, torch.Tensor], list]:
    dataset = preference_dataset(g)
    with tempfile.TemporaryDirectory() as workdir:
        runs = {lt: run_dpo(lt, dataset, workdir) for lt in LOSS_TYPES}
    s, i = runs["sigmoid"], runs["ipo"]
    for key in ("ids", "labels", "pc", "pr", "rc", "rr"):
        assert torch.equal(s[key], i[key]), key
    n = len(PAIRS)
    t = {
        "chosen_input_ids": s["ids"][:n],
        "rejected_input_ids": s["ids"][n:],
        "chosen_labels": s["labels"][:n],
        "rejected_labels": s["labels"][n:],
        "ref_chosen_logps": s["rc"],
        "ref_rejected_logps": s["rr"],
        "chosen_logps": s["pc"],
        "rejected_logps": s["pr"],
        "sigmoid.loss": s["loss"],
        "sigmoid.chosen_rewards": s["chosen_rewards"],
        "sigmoid.rejected_rewards": s["rejected_rewards"],
        "ipo.loss": i["loss"],
        "ipo.chosen_logps": i["pc"] / i["nc"],
        "ipo.rejected_logps": i["pr"] / i["nr"],
        "ipo.ref_chosen_logps": i["rc"] / i["nc"],
        "ipo.ref_rejected_logps": i["rr"] / i["nr"],
    }
    t.update({f"sigmoid.grad.{k}": v for k, v in s["grads"].items()})
    t.update({f"ipo.grad.{k}": v for k, v in i["grads"].items()})
    for k, v in t.items():
        assert v.dtype in (torch.int64, torch.float32), (k, v.dtype)
        t[k] = v.detach().clone().contiguous()
    return t, s["tokens"]


# ---------------------------------------------------------------------------------------------


def versions() -> dict:
    return {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT, help="fixture directory (default: %(default)s)")
    args = ap.parse_args()

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    # TRL 1.16 still calls transformers' deprecated `is_gradient_checkpointing`; nothing to act on.
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    print(", ".join(f"{k} {v}" for k, v in versions().items()))

    g = torch.Generator().manual_seed(DATA_SEED)
    sft = {**sft_padded(g), **sft_packed(g)}
    dpo_tensors, tokens = dpo(g)

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(mf.minicpm_config(CASE), f, indent=2)
        f.write("\n")
    for fn, seed in (("model.safetensors", POLICY_SEED), ("reference_model.safetensors", REFERENCE_SEED)):
        _, weights = build_model(seed)
        save_file(
            {n: p.detach().clone().contiguous() for n, p in weights.items()},
            os.path.join(args.out, fn),
            metadata={"format": "pt"},
        )

    # One metadata key per file: safetensors writes several in no fixed order.
    sft_meta = {
        **versions(),
        "labels": "unshifted HF convention: the loss compares logits[:, t-1] with labels[:, t]; -100 is ignored",
        "loss": "mean cross-entropy over all labelled tokens of the batch (HF ForCausalLMLoss)",
        "padded": "plain causal attention, no attention mask, positions 0..T-1",
        "packed": "attention only within a segment (block-diagonal causal), RoPE at position_ids; the "
        "trailing pads of a row form one more segment with positions 0, 1, 2, ... and no labels",
        "pad_id": PAD, "bos_id": BOS, "eos_id": EOS,
    }
    save_file(
        {k: v.detach().clone().contiguous() for k, v in sft.items()},
        os.path.join(args.out, "sft.safetensors"),
        metadata={"reference": json.dumps(sft_meta, sort_keys=True)},
    )
    dpo_meta = {
        **versions(),
        "beta": BETA,
        "loss_types": LOSS_TYPES,
        "trainer": "trl.DPOTrainer, precompute_ref_log_probs=True, ref_model = reference_model.safetensors, "
        "one batch of all pairs, loss from DPOTrainer.compute_loss, no optimizer step",
        "logps": "sum over completion tokens (labels != -100) of log-softmax(logits[t-1])[labels[t]]",
        "sigmoid": "mean(-logsigmoid(beta * ((chosen - ref_chosen) - (rejected - ref_rejected)))); "
        "rewards = beta * (policy - ref) per pair, from the summed log-probs",
        "ipo_length_normalisation": "TRL's IPO divides each completion's summed log-ratio by its number of "
        "completion tokens (EOS included): ipo.* log-probs are the summed log-probs divided by that count, "
        "and ipo.loss = mean(((ipo.chosen - ipo.ref_chosen) - (ipo.rejected - ipo.ref_rejected) - 1/(2 beta))^2)",
        "tokens": "the tokenizer prepends BOS (id 1) to the prompt; TRL appends the EOS text (id 2) to "
        "chosen and rejected; pad id 0; labels are the completion ids and the EOS",
    }
    save_file(
        dpo_tensors,
        os.path.join(args.out, "dpo.safetensors"),
        metadata={"reference": json.dumps(dpo_meta, sort_keys=True)},
    )

    print(f"padded loss {sft['padded.loss'].item():.6f}  packed loss {sft['packed.loss'].item():.6f}")
    for k, row in enumerate(tokens):
        print(f"pair {k}: prompt {row['prompt_ids']} chosen {row['chosen_ids']} rejected {row['rejected_ids']}")
    for k in ("sigmoid.loss", "ipo.loss", "chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps"):
        print(f"{k:<20} {[round(x, 6) for x in dpo_tensors[k].tolist()]}")
    for check, diff in MAX_DIFF.items():
        print(f"  max diff {check:<40} {diff:.2e}")
    for fn in sorted(os.listdir(args.out)):
        print(f"    {fn:<28} {os.path.getsize(os.path.join(args.out, fn)):>8} bytes")


if __name__ == "__main__":
    main()
