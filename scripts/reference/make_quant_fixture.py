#!/usr/bin/env python3
"""Reference bytes for llama.cpp's Q8_0 and Q4_0 blocks, from the `gguf` package's quantizer
(gguf-py's numpy port of ggml-quants.c, bit-exact with it: round half away from zero, f16 scales
rounded to nearest even).

Writes crates/serve/tests/fixtures/quant/:
    input.f32           the rows, 64 blocks of 32 little-endian float32
    q8_0.bin, q4_0.bin  the quantized blocks (scale as f16, then the codes)
    q8_0.f32, q4_0.f32  those blocks dequantized
    q4_k.bin            16 Q4_K super-blocks (144 bytes each) of random scales, minimums and codes
    q4_k.f32            gguf-py's dequantization of them (bit-exact with ggml's)

gguf-py cannot quantize Q4_K, so the Q4_K fixture checks decoding only: its blocks are random
bytes with f16 super-scales of sensible size (1e-4 to 10, positive and zero), which exercises
every bit of the packed 6-bit scales and minimums.

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
    k = q4_k_blocks()
    k.tofile(os.path.join(OUT, "q4_k.bin"))
    dequantize(k, GGMLQuantizationType.Q4_K).astype(np.float32).tofile(os.path.join(OUT, "q4_k.f32"))
    print(f"q4_k: {k.nbytes} bytes, {k.shape[0]} super-blocks")


def q4_k_blocks() -> np.ndarray:
    rng = np.random.default_rng(20261201)
    n = 16
    d = (10.0 ** rng.uniform(-4, 1, n)).astype(np.float16)
    dmin = (10.0 ** rng.uniform(-4, 1, n)).astype(np.float16)
    d[3] = 0.0
    dmin[5] = 0.0
    rest = rng.integers(0, 256, (n, 12 + 128), dtype=np.uint8)
    head = np.stack([d, dmin], axis=1).view(np.uint8)
    return np.concatenate([head, rest], axis=1)


if __name__ == "__main__":
    main()
