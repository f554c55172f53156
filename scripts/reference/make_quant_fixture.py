#!/usr/bin/env python3
"""Reference bytes for llama.cpp's Q8_0 and Q4_0 blocks, from the `gguf` package's quantizer
(gguf-py's numpy port of ggml-quants.c, bit-exact with it: round half away from zero, f16 scales
rounded to nearest even).

Writes crates/serve/tests/fixtures/quant/:
    input.f32           the rows, 64 blocks of 32 little-endian float32
    q8_0.bin, q4_0.bin  the quantized blocks (scale as f16, then the codes)
    q8_0.f32, q4_0.f32  those blocks dequantized

The blocks mix scales from 1e-6 to 1e4, an all-zero block, blocks whose largest magnitude is
negative, and blocks of exact halves, where the rounding rule decides the code.

Usage: scripts/reference/.venv/bin/python scripts/reference/make_quant_fixture.py
"""

import os

import numpy as np
from gguf import GGMLQuantizationType, quantize, dequantize

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(REPO_ROOT, "crates", "serve", "tests", "fixtures", "quant")


def blocks() -> np.ndarray:
    rng = np.random.default_rng(20261130)
    rows = []
    for scale in [1e-6, 1e-3, 0.02, 0.1, 1.0, 3.0, 100.0, 1e4]:
        for _ in range(6):
            rows.append(rng.normal(0.0, scale, 32))
    rows.append(np.zeros(32))
    # The largest magnitude negative (Q4_0's scale takes its sign from it).
    for _ in range(4):
        b = rng.normal(0.0, 1.0, 32)
        b[rng.integers(32)] = -5.0
        rows.append(b)
    # Exact halves of the Q8_0 step: amax 127 gives d = 1, so k + 0.5 lies on a tie.
    for _ in range(4):
        b = rng.integers(-126, 126, 32) + 0.5
        b[0] = 127.0
        rows.append(b)
    # One non-zero value, and a block of equal values.
    one = np.zeros(32)
    one[7] = 0.75
    rows.append(one)
    rows.append(np.full(32, -2.5))
    while len(rows) < 64:
        rows.append(rng.uniform(-1.0, 1.0, 32))
    return np.stack(rows).astype(np.float32)


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    x = blocks()
    assert x.shape == (64, 32)
    x.tofile(os.path.join(OUT, "input.f32"))
    for name, qtype in [("q8_0", GGMLQuantizationType.Q8_0), ("q4_0", GGMLQuantizationType.Q4_0)]:
        q = quantize(x, qtype)
        q.tofile(os.path.join(OUT, f"{name}.bin"))
        dequantize(q, qtype).astype(np.float32).tofile(os.path.join(OUT, f"{name}.f32"))
        print(f"{name}: {q.nbytes} bytes for {x.size} weights")


if __name__ == "__main__":
    main()
