#!/usr/bin/env bash
# The chat model at demo scale (docs/SCIENCE.md, "SFT and DPO on the demo model"): SFT of the
# demo model on the demo corpus's conversations, on-policy preference pairs from the SFT model,
# then DPO; held-out answer loss and held-out pair accuracy at each stage.
#
# Needs `minicpm demo` first (its data directory and run). Everything is seeded; rerunning
# skips the stages that finished.
set -euo pipefail

B=${B:-target/release/minicpm}
DATA=${DATA:-data/demo}
BASE=${BASE:-runs/demo}
OUT=${OUT:-runs/chat}
SFT_STEPS=${SFT_STEPS:-600}
DPO_STEPS=${DPO_STEPS:-300}
# DPO's peak learning rates, one run each (the demo uses 3e-5).
DPO_LRS=${DPO_LRS:-"3e-5 1e-4 3e-4"}
PAIRS=${PAIRS:-3000}
SEED=${SEED:-1}

conv=$OUT/conversations
mkdir -p "$OUT"
[ -f "$conv/valid.jsonl" ] || "$B" data conversations --data "$DATA" --out "$conv"
[ -d "$OUT/sft" ] || "$B" sft --model "$BASE" --data "$conv/train.jsonl" --valid "$conv/valid.jsonl" \
    --steps "$SFT_STEPS" --out "$OUT/sft" --set seed="$SEED" --quiet 2>&1 | tee "$OUT/sft.log"
mkdir -p "$OUT/pairs"
[ -f "$OUT/pairs/train.jsonl" ] || "$B" data pairs --conversations "$conv/train.jsonl" \
    --model "$OUT/sft" --limit "$PAIRS" --seed "$SEED" --out "$OUT/pairs/train.jsonl"
[ -f "$OUT/pairs/valid.jsonl" ] || "$B" data pairs --conversations "$conv/valid.jsonl" \
    --model "$OUT/sft" --seed "$SEED" --out "$OUT/pairs/valid.jsonl"
for lr in $DPO_LRS; do
    [ -d "$OUT/dpo-lr$lr" ] || "$B" dpo --model "$OUT/sft" --data "$OUT/pairs/train.jsonl" \
        --valid "$OUT/pairs/valid.jsonl" --steps "$DPO_STEPS" --lr "$lr" --beta 0.1 \
        --out "$OUT/dpo-lr$lr" --set seed="$SEED" --set train.eval_every=50 --quiet \
        2>&1 | tee "$OUT/dpo-lr$lr.log"
done

# The held-out curves; each run's log has its starting model's evaluation ("at the start").
dpo_runs=$(for lr in $DPO_LRS; do echo "$OUT/dpo-lr$lr"; done)
"$B" plot loss --eval "$OUT/sft" --out "$OUT/sft_eval_loss"
# shellcheck disable=SC2086
"$B" plot loss --eval $dpo_runs --out "$OUT/dpo_eval_loss"
# shellcheck disable=SC2086
"$B" plot accuracy --eval $dpo_runs --out "$OUT/dpo_eval_accuracy"
grep -H "held-out" "$OUT"/*.log
