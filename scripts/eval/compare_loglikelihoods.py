#!/usr/bin/env python3
"""Compares the per-choice log-likelihoods lm-evaluation-harness got from `minicpm serve` (its
--log_samples file) with those `minicpm eval` computed itself (its --json file), doc by doc and
choice by choice.

    compare_loglikelihoods.py LM_EVAL_SAMPLES.jsonl MINICPM_EVAL.json [--tol 1e-4] [--task NAME]

LM_EVAL_SAMPLES.jsonl: lm-eval's samples_<task>_<date>.jsonl. Each line is one doc: doc_id, doc,
and filtered_resps, one [loglikelihood, is_greedy] per choice in choice order (lm-eval writes the
numbers as strings; Python's str of a float round-trips exactly), plus that doc's acc and acc_norm.
MINICPM_EVAL.json: {"tasks": [{"task", "acc", "acc_norm", "docs": [{"index", "gold",
"loglikelihoods", "greedy"}]}]}; --task picks the task when there are several (else the first).

Prints the largest absolute difference, how many choices were compared, and acc / acc_norm as each
side reports them (and as recomputed from minicpm's own log-likelihoods: argmax, and argmax of
log-likelihood / the choice's length in characters, as lm-eval does). Exits 1 when any difference
exceeds --tol or the two sides do not cover the same docs, choices and gold answers; 0 otherwise.
A greedy flag that differs is reported but does not fail the comparison: it flips on ties.
"""
import argparse
import json
import math
import sys


def as_float(x):
    return float(x)


def as_bool(x):
    if isinstance(x, bool):
        return x
    return str(x) == "True"


def argmax(xs):
    best = 0
    for i, x in enumerate(xs):
        if x > xs[best]:
            best = i
    return best


def load_lm_eval(path):
    docs = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            s = json.loads(line)
            resps = s["filtered_resps"]
            # filtered_resps: [[ll, is_greedy], ...]; resps: [[[ll, is_greedy]], ...]
            if resps and isinstance(resps[0], list) and resps[0] and isinstance(resps[0][0], list):
                resps = [r[0] for r in resps]
            docs[int(s["doc_id"])] = {
                "lls": [as_float(r[0]) for r in resps],
                "greedy": [as_bool(r[1]) for r in resps],
                "gold": s["doc"].get("gold"),
                "choices": s["doc"].get("choices"),
                "acc": s.get("acc"),
                "acc_norm": s.get("acc_norm"),
            }
    return docs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("lm_eval_samples")
    ap.add_argument("minicpm_json")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--task", default=None)
    args = ap.parse_args()

    theirs = load_lm_eval(args.lm_eval_samples)
    report = json.load(open(args.minicpm_json, encoding="utf-8"))
    tasks = report["tasks"]
    task = next((t for t in tasks if t["task"] == args.task), None) if args.task else tasks[0]
    if task is None:
        print(f"error: no task {args.task!r} in {args.minicpm_json}", file=sys.stderr)
        return 1
    ours = {int(d["index"]): d for d in task["docs"]}

    problems = []
    if set(ours) != set(theirs):
        only_ours = sorted(set(ours) - set(theirs))
        only_theirs = sorted(set(theirs) - set(ours))
        problems.append(f"docs differ: only in minicpm eval {only_ours[:10]}, only in lm-eval {only_theirs[:10]}")

    max_diff, worst, compared, greedy_mismatch = 0.0, None, 0, 0
    acc_ours = acc_norm_ours = 0
    for i in sorted(set(ours) & set(theirs)):
        o, t = ours[i], theirs[i]
        o_lls = [float(x) for x in o["loglikelihoods"]]
        if len(o_lls) != len(t["lls"]):
            problems.append(f"doc {i}: {len(o_lls)} choices in minicpm eval, {len(t['lls'])} in lm-eval")
            continue
        if t["gold"] is not None and int(o["gold"]) != int(t["gold"]):
            problems.append(f"doc {i}: gold {o['gold']} in minicpm eval, {t['gold']} in lm-eval")
        for c, (a, b) in enumerate(zip(o_lls, t["lls"])):
            d = abs(a - b) if math.isfinite(a) and math.isfinite(b) else math.inf
            compared += 1
            if worst is None or d > max_diff:
                max_diff, worst = d, (i, c, a, b)
            if d > args.tol:
                problems.append(f"doc {i} choice {c}: minicpm eval {a!r}, lm-eval {b!r}, |diff| {d:.3g}")
        if "greedy" in o and len(o["greedy"]) == len(t["greedy"]):
            greedy_mismatch += sum(bool(x) != y for x, y in zip(o["greedy"], t["greedy"]))
        gold = int(o["gold"])
        acc_ours += argmax(o_lls) == gold
        if t["choices"]:
            normed = [ll / len(ch) for ll, ch in zip(o_lls, t["choices"])]
            acc_norm_ours += argmax(normed) == gold

    n = len(set(ours) & set(theirs))
    mean = lambda key: sum(float(t[key]) for t in theirs.values() if t[key] is not None) / max(len(theirs), 1)
    print(f"compared {compared} choices over {n} docs; max |loglikelihood difference| {max_diff:.3g}"
          + (f" (doc {worst[0]} choice {worst[1]}: minicpm eval {worst[2]!r}, lm-eval {worst[3]!r})" if worst else ""))
    print(f"acc:      lm-eval {mean('acc'):.4f}  minicpm eval {float(task.get('acc', float('nan'))):.4f}"
          f"  (recomputed from minicpm's log-likelihoods {acc_ours / max(n, 1):.4f})")
    print(f"acc_norm: lm-eval {mean('acc_norm'):.4f}  minicpm eval {float(task.get('acc_norm', float('nan'))):.4f}"
          f"  (recomputed, per character {acc_norm_ours / max(n, 1):.4f})")
    if greedy_mismatch:
        print(f"note: {greedy_mismatch} choices whose is_greedy flag differs (ties can flip it)")
    if compared == 0:
        problems.append("nothing compared")
    if problems:
        print(f"FAIL: {len(problems)} problems (tolerance {args.tol:g}):", file=sys.stderr)
        for p in problems[:20]:
            print("  " + p, file=sys.stderr)
        return 1
    print(f"OK: every log-likelihood agrees within {args.tol:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
