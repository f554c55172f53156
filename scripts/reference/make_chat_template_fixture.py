#!/usr/bin/env python3
"""Chat-template renderings by transformers' `apply_chat_template`, the reference for
crates/data/src/chat_template.rs.

Two templates: MiniCPM's released one (`<用户>...<AI>`, as the MiniCPM-2B sft/dpo tokenizers carry
it and llama.cpp's tests/test-chat-template.cpp quotes it) and ChatML (llama.cpp's `chatml`, the
OpenHermes template). Each conversation is rendered with and without the generation prompt.

Writes crates/data/tests/fixtures/chat/renderings.json:
    {"templates": {name: jinja}, "cases": [{"messages": [...], "template": name,
      "add_generation_prompt": bool, "text": rendered}]}

Usage: scripts/reference/.venv/bin/python scripts/reference/make_chat_template_fixture.py
"""

import json
import os

from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(REPO_ROOT, "crates", "data", "tests", "fixtures", "chat")

TEMPLATES = {
    "minicpm": "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{'<用户>' + message['content'].strip() + '<AI>'}}{% else %}"
    "{{message['content'].strip()}}{% endif %}{% endfor %}",
    "chatml": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}",
}


def m(role: str, content: str) -> dict:
    return {"role": role, "content": content}


CONVERSATIONS = [
    # llama.cpp's test conversation.
    [
        m("system", "You are a helpful assistant"),
        m("user", "Hello"),
        m("assistant", "Hi there"),
        m("user", "Who are you"),
        m("assistant", "   I am an assistant   "),
        m("user", "Another question"),
    ],
    [m("user", "山东省最高的山是哪座山, 它比黄山高还是矮？差距多少？")],
    [m("user", "什么是成语？"), m("assistant", "成语是汉语中长期习用的固定短语。"), m("user", "举个例子")],
    # Whitespace Python's str.strip() removes: tabs, newlines, no-break and ideographic spaces,
    # and the ASCII separators 0x1c-0x1f; a zero-width space it keeps.
    [m("user", "\t\n  padded \n"), m("assistant", "\u00a0\u3000answer\u3000\u00a0")],
    [m("user", "\x1c\x1fseparators\x1e"), m("assistant", "\u200bzero width\u200b")],
    [m("user", ""), m("assistant", "")],
    [m("assistant", "I speak first."), m("user", "Then I answer.")],
    [m("system", "One."), m("system", "Two."), m("user", "Which?")],
    [m("user", "line one\nline two\r\nline three")],
]


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({"<unk>": 0}, unk_token="<unk>")))
    cases = []
    for name, template in TEMPLATES.items():
        for messages in CONVERSATIONS:
            for add in [False, True]:
                text = tok.apply_chat_template(
                    messages, chat_template=template, tokenize=False, add_generation_prompt=add
                )
                cases.append(
                    {"template": name, "add_generation_prompt": add, "messages": messages, "text": text}
                )
    path = os.path.join(OUT, "renderings.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"templates": TEMPLATES, "cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(cases)} renderings -> {path}")


if __name__ == "__main__":
    main()
