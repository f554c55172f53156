#!/usr/bin/env bash
# Checks that `minicpm eval` and lm-evaluation-harness, the latter scoring through
# `minicpm serve`'s /v1/completions, get the same log-likelihood for every choice of a
# multiple-choice task, to 1e-4 (and reports both sides' acc and acc_norm).
#
#   scripts/eval/lm_eval_agreement.sh MODEL_DIR [TASK.jsonl]
#
# MODEL_DIR: an HF model directory (config.json, model.safetensors, tokenizer.json; a training
# checkpoint will do). lm-eval tokenizes on its own with transformers, so a GGUF file is not
# accepted here.
# TASK.jsonl: lines {"context": "...", "choices": ["...", ...], "gold": 0}. Default:
# scripts/eval/mc_smoke.jsonl beside this script, 20 short docs chosen to hit the tokenization
# corners: a context ending in a space and one ending in a newline (lm-eval moves such trailing
# whitespace into the continuation), multi-byte and byte-fallback choices (acc_norm divides by
# characters, not bytes), digits, and choices of very different lengths.
#
# What runs, all on 127.0.0.1 and offline (HF_HUB_OFFLINE, HF_DATASETS_OFFLINE):
#  1. the client venv (scripts/serve/setup_venv.sh: lm_eval, transformers, no torch);
#  2. a tokenizer directory for lm-eval (scripts/eval/hf_tokenizer_dir.py: MODEL_DIR's own when
#     it prepends BOS, else a copy that does, as `minicpm eval` prepends BOS to the context);
#  3. `minicpm serve --model MODEL_DIR` on a free port, until /health answers;
#  4. lm_eval with the local-completions model on a task YAML written to a temp dir
#     (dataset_path json, output_type multiple_choice, target_delimiter " ", acc and acc_norm),
#     token-id prompts with BOS, --log_samples;
#  5. `minicpm eval --model MODEL_DIR --task TASK.jsonl --json ...`;
#  6. scripts/eval/compare_loglikelihoods.py on lm-eval's samples file and minicpm eval's JSON.
# The server is stopped on every exit. Exit status: the comparer's (1 on any difference over the
# tolerance), or that of the step that failed.
#
# Environment: MINICPM (the binary; default target/release/minicpm of this checkout, not built
# here), OUT (keep the outputs in this directory; default a temp dir removed on exit),
# TOL (default 1e-4), LM_EVAL_BATCH (prompts per request, default 1; above 1 it tests the server's
# list-of-prompts path), MINICPM_API_KEY (passed to the server and, as OPENAI_API_KEY, to lm-eval),
# SERVE_TIMEOUT (seconds to wait for /health, default 180), MINICPM_BENCH_CACHE (where the venv is).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/scripts/eval"
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
fi
model="$(cd "$1" && pwd)"
task_file="$(realpath "${2:-$here/mc_smoke.jsonl}")"
tol="${TOL:-1e-4}"
batch="${LM_EVAL_BATCH:-1}"
[ -f "$model/config.json" ] || { echo "error: $model: not an HF model directory (no config.json)" >&2; exit 2; }
[ -f "$task_file" ] || { echo "error: $task_file: no such task file" >&2; exit 2; }

source "$root/scripts/serve/server_lib.sh"
minicpm="$(minicpm_bin)"
venv="$("$root/scripts/serve/setup_venv.sh" | tail -n1)"
py="$venv/bin/python"

tmp="$(mktemp -d)"
cleanup() {
    stop_server
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
out="${OUT:-$tmp/out}"
mkdir -p "$out"

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export HF_DATASETS_CACHE="$tmp/hf-datasets" TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false
if [ -n "${MINICPM_API_KEY:-}" ]; then export OPENAI_API_KEY="$MINICPM_API_KEY"; fi

# The task: named apart from lm-eval's own (a file called hellaswag.jsonl must not pick theirs).
stem="$(basename "$task_file" .jsonl)"
task="minicpm_agree_$(tr -c 'A-Za-z0-9_\n' '_' <<<"$stem")"
mkdir -p "$tmp/tasks"
cat >"$tmp/tasks/$task.yaml" <<EOF
task: $task
dataset_path: json
dataset_kwargs:
  data_files:
    test: "$task_file"
test_split: test
output_type: multiple_choice
doc_to_text: context
doc_to_choice: choices
doc_to_target: gold
target_delimiter: " "
num_fewshot: 0
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
EOF

tokenizer="$("$py" "$here/hf_tokenizer_dir.py" "$model" "$tmp/tokenizer")"
# lm-eval truncates context + continuation to max_length - 1 tokens; the model's own window.
max_length="$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1])).get("max_position_embeddings", 2048))' "$model/config.json")"

start_server "$model" "$out/serve.log"

echo "== lm-eval ($task, $(wc -l <"$task_file") docs) through $BASE_URL/v1/completions" >&2
model_args="base_url=$BASE_URL/v1/completions,model=$MODEL_ID,tokenizer=$tokenizer"
model_args+=",tokenizer_backend=huggingface,tokenized_requests=True,add_bos_token=True"
model_args+=",num_concurrent=1,max_retries=1,max_length=$max_length,timeout=300"
"$venv/bin/lm_eval" run --model local-completions --model_args "$model_args" \
    --include_path "$tmp/tasks" --tasks "$task" --num_fewshot 0 --batch_size "$batch" \
    --log_samples --output_path "$out/lm-eval" >"$out/lm-eval.log" 2>&1 || {
    echo "error: lm_eval failed; the end of its log ($out/lm-eval.log):" >&2
    tail -n 30 "$out/lm-eval.log" >&2
    exit 1
}
samples="$(find "$out/lm-eval" -name "samples_${task}_*.jsonl" -printf '%T@ %p\n' | sort -n | tail -n1 | cut -d' ' -f2-)"
[ -n "$samples" ] || { echo "error: lm_eval wrote no samples file under $out/lm-eval" >&2; exit 1; }
stop_server

echo "== minicpm eval" >&2
"$minicpm" eval --model "$model" --task "$task_file" --json "$out/minicpm-eval.json" >"$out/minicpm-eval.log" 2>&1 || {
    echo "error: minicpm eval failed; the end of its log ($out/minicpm-eval.log):" >&2
    tail -n 30 "$out/minicpm-eval.log" >&2
    exit 1
}

echo "== comparison" >&2
"$py" "$here/compare_loglikelihoods.py" --tol "$tol" "$samples" "$out/minicpm-eval.json"
