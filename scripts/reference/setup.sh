#!/usr/bin/env bash
# Creates scripts/reference/.venv with the Python packages that make_fixtures.py needs.
# Safe to run repeatedly: an existing venv is reused and pip skips what is already installed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "creating virtual environment in $venv"
    "$python" -m venv "$venv"
fi

"$venv/bin/python" -m pip install --upgrade pip
"$venv/bin/python" -m pip install \
    "torch" \
    "transformers>=5,<6" \
    "safetensors" \
    "gguf" \
    "jinja2" \
    "numpy" \
    "trl" \
    "datasets" \
    "accelerate" \
    "tokenizers"

"$venv/bin/python" - <<'PY'
import numpy, safetensors, torch, transformers, trl
print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
      f"safetensors {safetensors.__version__}, numpy {numpy.__version__}, trl {trl.__version__}")
PY
