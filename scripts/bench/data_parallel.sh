#!/usr/bin/env bash
# Data-parallel training throughput on this machine (docs/MODEL.md section 14): `minicpm bench
# train` on one update (the config's batch_tokens), as 2 ranks x 1 thread (mpirun), 1 process x
# 1 thread and 1 process x 2 threads, in turn ROUNDS times, with the all-reduce time per update
# and the ratios of the two-rank launch against the one-process columns of the same round.
#
#   scripts/bench/data_parallel.sh d256|d512|CONFIG.toml [STEPS] [WARMUP]
#
# The update is split into 2 micro-batches (train.micro_batch halved) so that each rank has one;
# the one-process columns run that split too, and the 2-thread one also the config's own
# micro-batch (the whole update in one pass), and the ratio against 2 threads is against the
# faster of the two.
# Environment: MINICPM (a binary built with --features mpi; default: a release build made here),
# ROUNDS (default 2).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
shape="${1:?usage: data_parallel.sh d256|d512|CONFIG.toml [STEPS] [WARMUP]}"
steps="${2:-6}"
warmup="${3:-2}"
case "$shape" in
    *.toml) config="$shape" ;;
    *) config="$root/configs/bench-$shape.toml" ;;
esac
[ -f "$config" ] || { echo "error: $config: no such config" >&2; exit 2; }
command -v mpirun >/dev/null || { echo "error: no mpirun; install Open MPI (Debian: openmpi-bin libopenmpi-dev)" >&2; exit 2; }
if [ -z "${MINICPM:-}" ]; then
    (cd "$root" && cargo build --release -q -p minicpm-cli --features mpi)
    MINICPM="${CARGO_TARGET_DIR:-$root/target}/release/minicpm"
fi
rounds="${ROUNDS:-2}"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "error: ROUNDS=$rounds: expected a positive whole number" >&2; exit 2; }

micro=$(sed -n 's/^micro_batch *= *\([0-9]*\).*/\1/p' "$config")
[ -n "$micro" ] && [ $((micro % 2)) -eq 0 ] || { echo "error: $config: train.micro_batch must be even" >&2; exit 2; }
bench=(bench train --config "$config" --set "train.micro_batch=$((micro / 2))" --steps "$steps" --warmup "$warmup" --json)
results=()
for round in $(seq "$rounds"); do
    echo "== round $round of $rounds, $(date -u +%FT%TZ), $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    echo "== 2 ranks x 1 thread: mpirun -np 2 minicpm ${bench[*]}" >&2
    results+=("$(mpirun --allow-run-as-root --bind-to core -np 2 -x RAYON_NUM_THREADS=1 "$MINICPM" "${bench[@]}")")
    echo "== 1 process x 1 thread" >&2
    results+=("$(RAYON_NUM_THREADS=1 "$MINICPM" "${bench[@]}")")
    echo "== 1 process x 2 threads" >&2
    results+=("$(RAYON_NUM_THREADS=2 "$MINICPM" "${bench[@]}")")
    echo "== 1 process x 2 threads, micro_batch $micro" >&2
    results+=("$(RAYON_NUM_THREADS=2 "$MINICPM" bench train --config "$config" --steps "$steps" --warmup "$warmup" --json)")
done
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "${results[@]}" <<'PY'
import json, statistics, sys
runs = [json.loads(a) for a in sys.argv[1:]]
vs1, vs2 = [], []
for i in range(0, len(runs), 4):
    ranks, one, two, whole = runs[i:i + 4]
    print(f"-- round {i // 4 + 1}")
    for name, r in (("2 ranks x 1 thread", ranks), ("1 process x 1 thread", one),
                    ("1 process x 2 threads", two), ("  same, 1 micro-batch", whole)):
        p = r["phase_ms"]
        print(f"{name:<22} {r['tokens_per_s']:7.0f} tok/s  {r['step_ms']:7.0f} ms/update  "
              f"(forward {p['forward']:.0f}, backward {p['backward']:.0f}, optimizer {p['optimizer']:.0f}, "
              f"all-reduce {p['reduce']:.0f} ms)  peak RSS {r['peak_rss_bytes'] / 2**20:.0f} MiB")
    vs1.append(ranks["tokens_per_s"] / one["tokens_per_s"])
    vs2.append(ranks["tokens_per_s"] / max(two["tokens_per_s"], whole["tokens_per_s"]))
    print(f"2 ranks: {vs1[-1]:.2f}x 1 process x 1 thread, {vs2[-1]:.2f}x 1 process x 2 threads")
if len(vs1) > 1:
    print(f"over {len(vs1)} rounds: median {statistics.median(vs1):.2f}x (1 thread), "
          f"{statistics.median(vs2):.2f}x (2 threads)")
PY
