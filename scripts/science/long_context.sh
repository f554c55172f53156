#!/usr/bin/env bash
# Context extension at CPU scale (docs/SCIENCE.md, "Long context"), MiniCPM-128K's recipe on the
# demo model: a base trained on rows of 256 tokens with passkey documents in its mixture
# (configs/science/long-context.toml), extended from its final checkpoint to 16x, 4,096 tokens,
# four ways with the same extra tokens and the same data (the base mixture with long passkey
# documents of 512-4,096 tokens as three quarters of it):
#   (a) no RoPE change, (b) ABF (theta 1e4 -> 1e6), (c) dynamic NTK x16,
#   (d) ABF with dynamic NTK x4 in one run with a length curriculum: rows of 1,024 (below
#       NTK's threshold: ABF alone) for half the updates, then of 4,096 (ABF with NTK);
# and a control that continues on 256-token rows with the same tokens and schedule.
# Each model is then measured by passkey retrieval at 256-4K tokens (heat maps) with held-out
# bits per byte at each length, 256 being the short context.
# Runs go to runs/science/long-context/; rerunning skips finished steps.
#
#   scripts/science/long_context.sh          # about 40 minutes on 2 cores
# EXTRA_TOKENS, LONG_SHARE and LONG_DATA (directories, space-separated) set the extension's data;
# the earlier runs in docs/SCIENCE.md name theirs.
set -euo pipefail
cd "$(dirname "$0")/../.."
minicpm="${MINICPM:-target/release/minicpm}"
config=configs/science/long-context.toml
out=runs/science/long-context
figs=docs/figures
tokens="${EXTRA_TOKENS:-1572864}"
long_share="${LONG_SHARE:-0.75}"
long=data/demo/shards-long
read -r -a long_data <<< "${LONG_DATA:-$long/passkey-long/train}"
long_args=()
for d in "${long_data[@]}"; do long_args+=(--long-data "$d"); done
[ -x "$minicpm" ] || cargo build --release -p minicpm-cli
[ -d data/demo/shards ] || { echo 'no data/demo/shards: run "minicpm demo" first'; exit 1; }
mkdir -p "$out"

# Passkey documents: short ones for the base, long ones for the extensions.
if [ ! -d "$long/passkey-long/train" ]; then
    "$minicpm" data passkey --tokenizer data/demo/tokenizer.json --docs 4000 \
        --min-length 128 --max-length 256 --seed 1 --out "$out/passkey-short.jsonl"
    "$minicpm" data passkey --tokenizer data/demo/tokenizer.json --docs 800 \
        --min-length 512 --max-length 4096 --seed 2 --out "$out/passkey-long.jsonl"
    "$minicpm" data prepare --tokenizer data/demo/tokenizer.json --out "$long" \
        --input "$out/passkey-short.jsonl" "$out/passkey-long.jsonl" > /dev/null
fi

# The extensions start from the base's last checkpoint (update 2,000, after its decay).
stable="$out/base/checkpoints/step-0002000"
[ -f "$stable/model.safetensors" ] ||
    "$minicpm" train --quiet --config "$config" --out "$out/base" > "$out/base.log" 2>&1

extend() { # name, from, length, rope, tokens, extra arguments
    local dir="$out/$1"
    [ -f "$dir/run.toml" ] && return 0
    "$minicpm" extend --quiet --from "$2" --length "$3" --rope "$4" --tokens "$5" "${@:6}" \
        "${long_args[@]}" --long-share "$long_share" --out "$dir" > "$dir.log" 2>&1
}

extend control "$stable" 256 none "$tokens"
extend none "$stable" 4096 none "$tokens"
extend abf "$stable" 4096 abf:theta=1e6 "$tokens"
extend ntk "$stable" 4096 ntk:factor=16 "$tokens"
# MiniCPM-128K's two stages as one run: theta 1e6 with dynamic NTK x4, which grows the base only
# past 4096 / 4 = 1,024 tokens, on rows of 1,024 (ABF alone) for the first half of the updates
# and of 4,096 (ABF with NTK) for the second.
extend abf-ntk "$stable" 4096 abf:theta=1e6,ntk:factor=4 "$tokens" --curriculum 1024:0.5

valid=(data/demo/shards/sotu/valid data/demo/shards/shakespeare/valid
       data/demo/shards/web-bible/valid data/demo/shards/python-stdlib/valid)
data_args=()
for v in "${valid[@]}"; do data_args+=(--data "$v"); done
for model in base control none abf ntk abf-ntk; do
    dir="$out/eval-$model"
    [ -f "$dir/passkey.json" ] && continue
    path="$out/$model"
    [ "$model" = base ] && path="$stable"
    "$minicpm" eval passkey --model "$path" --lengths 256,512,1k,2k,4k --depths 5 \
        --trials 8 "${data_args[@]}" --data-tokens 32768 --out "$dir" | tee "$dir.txt"
done
mkdir -p "$figs"
for model in base control none abf ntk abf-ntk; do
    cp "$out/eval-$model/passkey.png" "$figs/long-context-passkey-$model.png"
done
