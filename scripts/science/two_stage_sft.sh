#!/usr/bin/env bash
# MiniCPM's Table 1 at CPU scale (docs/SCIENCE.md, "Two-stage pre-training, then SFT"): from the
# same stable checkpoint, (a) decay on pre-training data only, then SFT; (b) decay with the
# high-quality sources and SFT-format conversations mixed in, then the same SFT. Compared on
# held-out answer loss and the multiple-choice evaluation tasks, for two seeds.
#
# Needs `minicpm demo` first (data/demo and runs/demo, whose run.toml is the base config), and
# the evaluation tasks (`minicpm data eval-tasks --data data/demo --out data/demo/eval`).
set -euo pipefail

B=${B:-target/release/minicpm}
DATA=${DATA:-data/demo}
BASE_CONFIG=${BASE_CONFIG:-runs/demo/run.toml}
OUT=${OUT:-runs/two-stage}
SFT_STEPS=${SFT_STEPS:-600}
SEEDS=${SEEDS:-"1 2"}
# Share of the decay mixture (b) gives the rendered SFT conversations.
SFT_SHARE=${SFT_SHARE:-0.2}
mkdir -p "$OUT"

conv=$OUT/conversations
[ -f "$conv/valid.jsonl" ] || "$B" data conversations --data "$DATA" --out "$conv"
[ -d "$OUT/sft-shards/sft" ] || "$B" data prepare --tokenizer "$DATA/tokenizer.json" \
    --input "$conv/train.text.jsonl" --out "$OUT/sft-shards"

# Phase `decay-sft`: the demo's decay mixture (pre-training + high-quality sources) scaled to
# 1 - SFT_SHARE, plus the SFT conversations.
mixture=$(python3 - "$BASE_CONFIG" "$SFT_SHARE" <<'PY'
import sys, tomllib
cfg = tomllib.load(open(sys.argv[1], "rb"))
share = float(sys.argv[2])
for name, w in cfg["data"]["mixture"]["decay"].items():
    print(f"--set data.mixture.decay-sft.{name}={w * (1 - share)!r}")
print(f"--set data.mixture.decay-sft.sft={share!r}")
PY
)

for seed in $SEEDS; do
    base=$OUT/base-$seed
    # shellcheck disable=SC2086
    [ -d "$base/checkpoints" ] || "$B" train --config "$BASE_CONFIG" --out "$base" --quiet \
        --set seed="$seed" --set data.sources.sft="$OUT/sft-shards/sft/train" $mixture
    for arm in stable decay-sft; do
        branch=$base/branches/$arm
        [ -d "$branch" ] || "$B" decay --from "$base/checkpoints/step-0000750" --fraction 0.1 \
            --mixture "$arm" --name "$arm" --quiet
        sft=$OUT/sft-$seed-$arm
        [ -d "$sft" ] || "$B" sft --model "$branch" --data "$conv/train.jsonl" \
            --valid "$conv/valid.jsonl" --steps "$SFT_STEPS" --set seed="$seed" --out "$sft" \
            --quiet 2>&1 | tee "$sft.log"
        for model in "$branch" "$sft"; do
            "$B" eval --model "$model" --task "$DATA/eval/wordnet-definitions.jsonl" \
                --task "$DATA/eval/idiom-meanings.jsonl" --json "$model.eval.json" > /dev/null
        done
    done
done

# shellcheck disable=SC2046
"$B" plot loss --eval $(for seed in $SEEDS; do echo "$OUT/sft-$seed-stable $OUT/sft-$seed-decay-sft"; done) \
    --out "$OUT/two_stage_sft_eval_loss"
echo "seed arm: held-out answer loss before -> after SFT; acc wordnet, idioms before -> after SFT"
for seed in $SEEDS; do
    for arm in stable decay-sft; do
        sft=$OUT/sft-$seed-$arm
        python3 - "$sft.log" "$OUT/base-$seed/branches/$arm.eval.json" "$sft.eval.json" "$seed $arm" <<'PY'
import json, re, sys
log = open(sys.argv[1]).read()
start, end = (float(x) for x in re.findall(r"held-out loss [a-z ]+: ([0-9.]+)", log)[:2])
def acc(path):
    tasks = json.load(open(path))["tasks"]
    return " ".join(f"{t['acc']:.3f}" for t in tasks)
print(f"{sys.argv[4]}: {start:.4f} -> {end:.4f}; {acc(sys.argv[2])} -> {acc(sys.argv[3])}")
PY
    done
done
