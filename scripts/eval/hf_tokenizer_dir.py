#!/usr/bin/env python3
"""Prints a directory whose tokenizer transformers' AutoTokenizer loads as lm-eval needs it: BOS
and EOS known by name, and BOS prepended when encoding with add_special_tokens=True (what
lm-eval's `add_bos_token=True` asks for).

    hf_tokenizer_dir.py MODEL_DIR SCRATCH_DIR

MODEL_DIR is printed as it is when its tokenizer already behaves so. Otherwise (a training
checkpoint has tokenizer.json but no tokenizer_config.json, and its tokenizer.json has no
post-processor, so AutoTokenizer knows no BOS/EOS and adds nothing) SCRATCH_DIR gets a copy of
tokenizer.json with a post-processor that prepends BOS, and a tokenizer_config.json naming
BOS/EOS/UNK, the ids taken from MODEL_DIR/config.json (bos_token_id, eos_token_id); SCRATCH_DIR
is printed. The vocabulary, normalizer and pre-tokenizer are untouched, so ids are the same.
Run it with the Python that has transformers (scripts/serve/setup_venv.sh's).
"""
import json
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")


def behaves(path: Path, bos_id: int, eos_id: int | None) -> bool:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    ids = tok("a b", add_special_tokens=True).input_ids
    plain = tok("a b", add_special_tokens=False).input_ids
    return (
        tok.bos_token_id == bos_id
        and (eos_id is None or tok.eos_token_id == eos_id)
        and ids == [bos_id] + plain
    )


def first_id(value):
    if isinstance(value, list):
        return value[0] if value else None
    return value


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    model, scratch = Path(sys.argv[1]), Path(sys.argv[2])
    config = json.loads((model / "config.json").read_text())
    bos_id = first_id(config.get("bos_token_id"))
    eos_id = first_id(config.get("eos_token_id"))
    if bos_id is None:
        print(f"error: {model}/config.json has no bos_token_id", file=sys.stderr)
        return 1
    if behaves(model, bos_id, eos_id):
        print(model)
        return 0

    tok_json = json.loads((model / "tokenizer.json").read_text())
    by_id = {t["id"]: t["content"] for t in tok_json.get("added_tokens", [])}
    vocab = tok_json.get("model", {}).get("vocab", {})
    if isinstance(vocab, dict):
        by_id = {**{i: t for t, i in vocab.items()}, **by_id}
    if bos_id not in by_id:
        print(f"error: bos_token_id {bos_id} is not in {model}/tokenizer.json", file=sys.stderr)
        return 1
    bos = by_id[bos_id]
    tok_json["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [
            {"SpecialToken": {"id": bos, "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": bos, "type_id": 1}},
            {"Sequence": {"id": "B", "type_id": 1}},
        ],
        "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
    }
    tok_config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos}
    if eos_id in by_id:
        tok_config["eos_token"] = by_id[eos_id]
    if 0 in by_id and by_id[0].startswith("<") and by_id[0] not in (bos, tok_config.get("eos_token")):
        tok_config["unk_token"] = by_id[0]
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "tokenizer.json").write_text(json.dumps(tok_json, ensure_ascii=False))
    (scratch / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")
    if not behaves(scratch, bos_id, eos_id if eos_id in by_id else None):
        print(f"error: the tokenizer written to {scratch} still does not prepend BOS", file=sys.stderr)
        return 1
    print(scratch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
