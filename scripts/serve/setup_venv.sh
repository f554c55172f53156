#!/usr/bin/env bash
# Creates the Python environment that talks to `minicpm serve`: lm-evaluation-harness (lm_eval,
# with its API extra for the local-completions model), the official openai client and
# transformers for lm_eval's tokenizer; every package pinned in requirements.txt beside this
# script. torch is not needed and not installed (transformers loads tokenizers without it).
#
#   scripts/serve/setup_venv.sh
#
# Environment: MINICPM_BENCH_CACHE (default ~/.cache/minicpm-bench); the venv is
# $MINICPM_BENCH_CACHE/serve-venv. PYTHON (default python3, 3.10 or newer).
# Idempotent: nothing is installed when the venv already holds what requirements.txt pins (a
# stamp records the file's hash); a changed requirements.txt is installed over the old venv.
# On success the last line of output is the venv's directory (its bin/ has lm_eval and python).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${MINICPM_BENCH_CACHE:-$HOME/.cache/minicpm-bench}"
venv="$cache/serve-venv"
python="${PYTHON:-python3}"
reqs="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$reqs" | cut -d' ' -f1)"

if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$cache"
    "$python" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
    "$venv/bin/python" -m pip install -q -r "$reqs" >&2
    echo "$want" >"$stamp"
fi

# transformers warns about the missing torch on import; the check below silences only that.
TRANSFORMERS_VERBOSITY=error "$venv/bin/python" - >&2 <<'PY'
from importlib.metadata import version
import lm_eval.models.openai_completions  # noqa: F401  (registers local-completions)
import openai, transformers  # noqa: F401
print("serve-venv: " + ", ".join(f"{p} {version(p)}" for p in
      ("lm_eval", "openai", "transformers", "tokenizers", "datasets")))
PY
echo "$venv"
