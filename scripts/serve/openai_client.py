#!/usr/bin/env python3
"""Talks to an OpenAI-compatible server (`minicpm serve`) with the official openai client and
checks the shape of every answer: models, legacy completions (text, token ids, lists of prompts,
n with a seed, echo with logprobs as lm-eval asks, stop, streaming), chat completions (plain,
streamed, with logprobs) and errors.

    openai_client.py --base-url http://127.0.0.1:PORT/v1 [--model ID] [--tokenizer tokenizer.json]
                     [--api-key KEY]

--model defaults to the first id /v1/models lists. --tokenizer (an HF tokenizer.json) gives the
token-id prompts real ids and lets a text prompt be compared with the same prompt as ids;
without it fixed small ids are sent. --api-key defaults to $MINICPM_API_KEY (or "none").
Prints one line per check and a summary; exits 1 if any check failed.
"""
import argparse
import math
import os
import sys
import time
import traceback

import openai

RESULTS = []
NOTES = []


def check(name):
    def wrap(fn):
        def run(*a, **kw):
            t0 = time.monotonic()
            try:
                fn(*a, **kw)
                RESULTS.append((name, True, ""))
                print(f"PASS {name} ({time.monotonic() - t0:.2f}s)", flush=True)
            except Exception as e:  # noqa: BLE001 - any failure is the check's failure
                msg = f"{type(e).__name__}: {e}"
                if not isinstance(e, (AssertionError, openai.OpenAIError)):
                    msg += "\n" + traceback.format_exc(limit=3)
                RESULTS.append((name, False, msg))
                print(f"FAIL {name}: {msg}", flush=True)

        return run

    return wrap


def note(msg):
    NOTES.append(msg)
    print(f"note: {msg}", flush=True)


def is_logprob(x):
    return isinstance(x, float) and math.isfinite(x) and x <= 1e-6


def check_usage(usage, max_completion=None):
    assert usage is not None, "no usage"
    assert usage.prompt_tokens > 0, f"prompt_tokens {usage.prompt_tokens}"
    assert usage.completion_tokens >= 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens, usage
    if max_completion is not None:
        assert usage.completion_tokens <= max_completion, (usage.completion_tokens, max_completion)


def check_completion(resp, n_choices, max_tokens=None):
    assert resp.object == "text_completion", resp.object
    assert resp.id, "empty id"
    assert isinstance(resp.created, int)
    assert len(resp.choices) == n_choices, f"{len(resp.choices)} choices, wanted {n_choices}"
    assert sorted(c.index for c in resp.choices) == list(range(n_choices)), [c.index for c in resp.choices]
    for c in resp.choices:
        assert isinstance(c.text, str)
        assert c.finish_reason in ("stop", "length"), c.finish_reason
    check_usage(resp.usage, None if max_tokens is None else max_tokens * n_choices)


def by_index(choices):
    return sorted(choices, key=lambda c: c.index)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", required=True, help="up to /v1, e.g. http://127.0.0.1:8000/v1")
    ap.add_argument("--model", default=None)
    ap.add_argument("--tokenizer", default=None, help="an HF tokenizer.json")
    ap.add_argument("--api-key", default=os.environ.get("MINICPM_API_KEY") or "none")
    ap.add_argument("--bos-id", type=int, default=1)
    args = ap.parse_args()

    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=120)
    model = args.model
    prompt = "Once upon a time, there was a little"

    tok = None
    if args.tokenizer:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(args.tokenizer)
    ids = ([args.bos_id] + tok.encode(prompt).ids) if tok else [args.bos_id, 100, 200, 300, 400]

    @check("models.list")
    def _():
        nonlocal model
        page = client.models.list()
        data = list(page)
        assert data, "no models"
        for m in data:
            assert m.object == "model", m.object
            assert isinstance(m.id, str) and m.id
        if model is None:
            model = data[0].id
        assert model in [m.id for m in data], (model, [m.id for m in data])

    _()
    if model is None:
        print("FAIL: no model id; cannot go on", file=sys.stderr)
        return 1

    greedy = {}

    @check("completions: text prompt")
    def _():
        r = client.completions.create(model=model, prompt=prompt, max_tokens=8, temperature=0)
        check_completion(r, 1, 8)
        greedy["text"] = r.choices[0].text
        assert r.model == model, r.model

    _()

    @check("completions: token-id prompt")
    def _():
        r = client.completions.create(model=model, prompt=ids, max_tokens=8, temperature=0)
        check_completion(r, 1, 8)
        assert r.usage.prompt_tokens == len(ids), f"prompt_tokens {r.usage.prompt_tokens} for {len(ids)} ids"
        if tok and "text" in greedy and r.choices[0].text != greedy["text"]:
            note("a text prompt and the same prompt as [BOS] + its ids complete differently at "
                 f"temperature 0 ({greedy['text']!r} vs {r.choices[0].text!r}): is BOS added to text prompts?")

    _()

    @check("completions: list of prompts (text and token ids)")
    def _():
        r = client.completions.create(model=model, prompt=[prompt, "The sun"], max_tokens=4, temperature=0)
        check_completion(r, 2, 4)
        first = by_index(r.choices)[0].text
        r1 = client.completions.create(model=model, prompt=prompt, max_tokens=4, temperature=0)
        assert first == r1.choices[0].text, (first, r1.choices[0].text)
        r = client.completions.create(model=model, prompt=[ids, ids[:3]], max_tokens=4, temperature=0)
        check_completion(r, 2, 4)
        assert r.usage.prompt_tokens == len(ids) + 3, r.usage

    _()

    @check("completions: n=2 with a seed is reproducible")
    def _():
        kw = dict(model=model, prompt=prompt, max_tokens=12, temperature=1.0, top_p=1.0, n=2, seed=42)
        a = client.completions.create(**kw)
        b = client.completions.create(**kw)
        check_completion(a, 2, 12)
        ta, tb = [c.text for c in by_index(a.choices)], [c.text for c in by_index(b.choices)]
        assert ta == tb, f"same seed, different samples: {ta} vs {tb}"
        if ta[0] == ta[1]:
            note(f"n=2 gave two identical samples at temperature 1: {ta[0]!r}")

    _()

    @check("completions: echo, logprobs=3, max_tokens=1")
    def _():
        r = client.completions.create(model=model, prompt=prompt, max_tokens=1, temperature=0, echo=True, logprobs=3)
        check_completion(r, 1, 1)
        c = r.choices[0]
        lp = c.logprobs
        assert lp is not None, "no logprobs"
        n = r.usage.prompt_tokens + r.usage.completion_tokens
        for field in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
            v = getattr(lp, field)
            assert v is not None and len(v) == n, f"{field}: {None if v is None else len(v)} entries, wanted {n}"
        assert lp.token_logprobs[0] is None, f"token_logprobs[0] = {lp.token_logprobs[0]!r}, wanted None"
        assert all(is_logprob(x) for x in lp.token_logprobs[1:]), lp.token_logprobs
        for i, top in enumerate(lp.top_logprobs[1:], 1):
            # up to logprobs alternatives, plus the sampled token when it is not among them
            assert isinstance(top, dict) and 1 <= len(top) <= 4, (i, top)
            assert all(is_logprob(v) for v in top.values()), (i, top)
            # a token's own log-probability never beats the best alternative
            assert lp.token_logprobs[i] <= max(top.values()) + 1e-6, (i, lp.token_logprobs[i], top)
        # the generated token is the argmax at temperature 0: lm-eval's is_greedy is exact equality
        assert lp.token_logprobs[-1] == max(lp.top_logprobs[-1].values()), (lp.token_logprobs[-1], lp.top_logprobs[-1])
        assert c.text.startswith(prompt), f"echo: text {c.text!r} does not start with the prompt"
        if "".join(lp.tokens) != c.text:
            note(f"echo: the tokens join to {''.join(lp.tokens)!r}, the text is {c.text!r}")
        offs = lp.text_offset
        assert all(a <= b for a, b in zip(offs, offs[1:])), f"text_offset decreases: {offs}"

    _()

    @check("completions: lm-eval's loglikelihood request (token ids, echo, logprobs=1)")
    def _():
        # exactly what lm-eval's local-completions sends for a loglikelihood request
        r = client.completions.create(model=model, prompt=[ids, ids[:-1]], max_tokens=1, temperature=0,
                                      echo=True, logprobs=1, seed=1234)
        check_completion(r, 2, 1)
        for c, p in zip(by_index(r.choices), [ids, ids[:-1]]):
            lp = c.logprobs
            assert len(lp.token_logprobs) == len(p) + 1, f"{len(lp.token_logprobs)} logprobs for {len(p)} + 1 tokens"
            assert lp.token_logprobs[0] is None
            cont = lp.token_logprobs[1:-1]
            assert all(is_logprob(x) for x in cont), cont
            for t, top in zip(cont, lp.top_logprobs[1:-1]):
                assert isinstance(top, dict) and len(top) >= 1, top
        a, b = by_index(r.choices)
        # the shorter prompt's logprobs are a prefix of the longer one's (same causal model)
        for x, y in zip(a.logprobs.token_logprobs[1:len(ids) - 1], b.logprobs.token_logprobs[1:len(ids) - 1]):
            assert abs(x - y) < 1e-4, (x, y)

    _()

    @check("completions: stop")
    def _():
        base = client.completions.create(model=model, prompt=prompt, max_tokens=24, temperature=0)
        text = base.choices[0].text
        if len(text.strip()) < 4:
            note(f"stop not exercised: the greedy continuation {text!r} is too short")
            return
        cut = len(text) // 2
        stop = text[cut:cut + 2]
        r = client.completions.create(model=model, prompt=prompt, max_tokens=24, temperature=0, stop=[stop, "\n\n\n\n"])
        check_completion(r, 1, 24)
        c = r.choices[0]
        want = text[: text.index(stop)]
        assert c.text == want, f"stop {stop!r}: text {c.text!r}, wanted {want!r}"
        assert c.finish_reason == "stop", c.finish_reason

    _()

    @check("completions: stream")
    def _():
        kw = dict(model=model, prompt=prompt, max_tokens=12, temperature=0)
        whole = client.completions.create(**kw).choices[0].text
        parts, finish = [], None
        for chunk in client.completions.create(stream=True, **kw):
            assert chunk.object == "text_completion", chunk.object
            for c in chunk.choices:
                parts.append(c.text)
                if c.finish_reason is not None:
                    finish = c.finish_reason
        assert "".join(parts) == whole, ("".join(parts), whole)
        assert finish in ("stop", "length"), finish

    _()

    messages = [{"role": "user", "content": "Tell me a story about a cat."}]
    chat = {}

    @check("chat.completions: plain")
    def _():
        r = client.chat.completions.create(model=model, messages=messages, max_tokens=16, temperature=0)
        assert r.object == "chat.completion", r.object
        assert len(r.choices) == 1 and r.choices[0].index == 0
        m = r.choices[0].message
        assert m.role == "assistant", m.role
        assert isinstance(m.content, str), m.content
        assert r.choices[0].finish_reason in ("stop", "length"), r.choices[0].finish_reason
        check_usage(r.usage, 16)
        chat["text"] = m.content

    _()

    @check("chat.completions: stream")
    def _():
        parts, chunks, ids_seen = [], [], set()
        for chunk in client.chat.completions.create(model=model, messages=messages, max_tokens=16,
                                                    temperature=0, stream=True):
            assert chunk.object == "chat.completion.chunk", chunk.object
            ids_seen.add(chunk.id)
            chunks.append(chunk)
            for c in chunk.choices:
                if c.delta.content:
                    parts.append(c.delta.content)
        assert chunks, "no chunks"
        assert len(ids_seen) == 1, f"chunk ids differ: {ids_seen}"
        with_choices = [c for c in chunks if c.choices]
        assert with_choices[0].choices[0].delta.role in (None, "assistant")
        last = with_choices[-1].choices[0]
        assert last.finish_reason in ("stop", "length"), f"last chunk's finish_reason {last.finish_reason!r}"
        assert all(c.choices[0].finish_reason is None for c in with_choices[:-1]), "finish_reason before the end"
        text = "".join(parts)
        if "text" in chat:
            assert text == chat["text"], f"streamed {text!r}, plain {chat['text']!r}"

    _()

    @check("chat.completions: logprobs, top_logprobs=2")
    def _():
        r = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0,
                                           logprobs=True, top_logprobs=2)
        lp = r.choices[0].logprobs
        assert lp is not None and lp.content is not None, "no logprobs"
        n = r.usage.completion_tokens
        # an end-of-sequence token may be counted without an entry of its own
        ok = len(lp.content) == n or (r.choices[0].finish_reason == "stop" and len(lp.content) == n - 1)
        assert ok, f"{len(lp.content)} logprob entries for {n} completion tokens" 
        for t in lp.content:
            assert isinstance(t.token, str) and is_logprob(t.logprob), t
            assert len(t.top_logprobs) == 2, t.top_logprobs
            assert all(is_logprob(a.logprob) for a in t.top_logprobs)
            assert t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob, t.top_logprobs
            # temperature 0: the chosen token is the best one
            assert abs(t.logprob - t.top_logprobs[0].logprob) < 1e-6, (t.logprob, t.top_logprobs)
        joined = "".join(t.token for t in lp.content)
        if joined != r.choices[0].message.content:
            note(f"chat logprob tokens join to {joined!r}, the content is {r.choices[0].message.content!r}")

    _()

    @check("errors: unknown model")
    def _():
        try:
            client.completions.create(model="no-such-model", prompt=prompt, max_tokens=1)
        except (openai.NotFoundError, openai.BadRequestError) as e:
            assert e.status_code in (400, 404), e.status_code
            assert str(e.message).strip(), "empty error message"
            print(f"     {e.status_code}: {e.message}")
            return
        raise AssertionError("an unknown model was accepted")

    _()

    @check("errors: invalid request")
    def _():
        try:
            # a field of the wrong type: no server may guess what was meant
            client.completions.create(model=model, prompt=prompt, extra_body={"max_tokens": "many"})
        except (openai.BadRequestError, openai.UnprocessableEntityError) as e:
            assert str(e.message).strip(), "empty error message"
            print(f"     {e.status_code}: {e.message}")
            return
        raise AssertionError('max_tokens "many" was accepted')

    _()

    if args.api_key and args.api_key != "none":

        @check("errors: wrong API key")
        def _():
            bad = openai.OpenAI(base_url=args.base_url, api_key=args.api_key + "x", max_retries=0)
            try:
                bad.models.list()
            except openai.AuthenticationError as e:
                assert e.status_code == 401, e.status_code
                return
            raise AssertionError("a wrong API key was accepted")

        _()

    failed = [r for r in RESULTS if not r[1]]
    print(f"\n{len(RESULTS) - len(failed)} passed, {len(failed)} failed" + (f" ({len(NOTES)} notes)" if NOTES else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
