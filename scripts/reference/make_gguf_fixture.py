#!/usr/bin/env python3
"""A small GGUF file written by the `gguf` package's GGUFWriter (llama.cpp's own Python writer),
the reference for crates/serve/src/gguf.rs: the Rust writer must produce the same bytes from the
same content, and the Rust reader must read this file back.

Writes crates/serve/tests/fixtures/gguf/reference.gguf: metadata of every value type the format
has (integers of each width, floats, a bool, strings with non-ASCII text, arrays of strings,
integers and floats), and tensors in F32, F16, Q8_0 and Q4_0 whose values are given by formulas
the Rust test repeats.

Usage: scripts/reference/.venv/bin/python scripts/reference/make_gguf_fixture.py
"""

import os

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, quantize

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(REPO_ROOT, "crates", "serve", "tests", "fixtures", "gguf")


def values(n: int, scale: float) -> np.ndarray:
    """The test's weights, exact in f32 and f16 so both languages make the same bits:
    ((7 i mod 23) - 11) * scale / 8 for i = 0..n."""
    i = np.arange(n, dtype=np.int64)
    return (((7 * i) % 23 - 11).astype(np.float32) * np.float32(scale) / np.float32(8)).astype(np.float32)


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "reference.gguf")
    w = GGUFWriter(path, arch="minicpm")
    w.add_string("general.name", "test model 测试")
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("minicpm.block_count", 2)
    w.add_int32("test.i32", -2_000_000_000)
    w.add_float32("minicpm.embedding_scale", 12.0)
    w.add_float32("minicpm.residual_scale", 1.4)
    w.add_bool("test.bool", True)
    w.add_uint64("test.u64", 2**40 + 7)
    w.add_int64("test.i64", -(2**40))
    w.add_float64("test.f64", 0.1)
    w.add_array("tokenizer.ggml.tokens", ["<unk>", "<s>", "</s>", "<用户>", "<AI>", "▁the"])
    w.add_array("tokenizer.ggml.scores", [0.0, -1.5, 2.25])
    w.add_array("tokenizer.ggml.token_type", [2, 3, 3, 1, 1, 1])
    w.add_tensor("token_embd.weight", values(6 * 4, 1.0).reshape(6, 4))
    w.add_tensor("output_norm.weight", values(4, 0.5))
    w.add_tensor("blk.0.attn_q.weight", values(3 * 5, 2.0).astype(np.float16).reshape(3, 5))
    q8 = quantize(values(2 * 64, 3.0).reshape(2, 64), GGMLQuantizationType.Q8_0)
    w.add_tensor("blk.0.ffn_up.weight", q8, raw_dtype=GGMLQuantizationType.Q8_0)
    q4 = quantize(values(1 * 32, 0.25).reshape(1, 32), GGMLQuantizationType.Q4_0)
    w.add_tensor("blk.0.ffn_down.weight", q4, raw_dtype=GGMLQuantizationType.Q4_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{os.path.getsize(path)} bytes -> {path}")


if __name__ == "__main__":
    main()
