"""The official `openai` Python client against a running `lorag serve` (driven by tests/serve.rs).

Usage: serve_client.py BASE_URL CONFIG.json
CONFIG: {"key", "other_key" (may read no KB), "model", "lora", "kb", "embedder",
         "question", "expect_source", "reference": {"texts": [...], "vectors": [[...]]}}
Exits non-zero with the failing check's message; prints one line per passed check.
"""

import asyncio
import base64
import json
import struct
import sys
import time
import urllib.request

import httpx
import openai
from openai import AsyncOpenAI, OpenAI

base, cfg_path = sys.argv[1], sys.argv[2]
cfg = json.load(open(cfg_path))
client = OpenAI(base_url=base + "/v1", api_key=cfg["key"], max_retries=0, timeout=120)


def ok(name):
    print(f"ok {name}", flush=True)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


# models.list
ids = [m.id for m in client.models.list()]
for want in [cfg["model"], cfg["lora"], "kb:" + cfg["kb"], cfg["embedder"]]:
    check(want in ids, f"models.list lacks {want}: {ids}")
ok("models.list")

# chat, non-streaming, base model
msgs = [{"role": "user", "content": "Say hello in three words."}]
r = client.chat.completions.create(model=cfg["model"], messages=msgs, max_tokens=16, temperature=0)
c = r.choices[0]
check(c.message.role == "assistant" and c.message.content.strip(), f"empty reply {r}")
check(c.finish_reason in ("stop", "length"), f"finish_reason {c.finish_reason}")
check(r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= 16, f"usage {r.usage}")
check(r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, "total_tokens")
ok("chat base non-streaming")

# the same request streamed gives the same text (greedy), and usage when asked
s = client.chat.completions.create(
    model=cfg["model"], messages=msgs, max_tokens=16, temperature=0, stream=True,
    stream_options={"include_usage": True},
)
parts, finish, usage = [], None, None
for chunk in s:
    if chunk.usage:
        usage = chunk.usage
    if chunk.choices:
        d = chunk.choices[0].delta
        if d.content:
            parts.append(d.content)
        if chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
check("".join(parts) == c.message.content, f"stream {''.join(parts)!r} != {c.message.content!r}")
check(finish in ("stop", "length") and usage and usage.completion_tokens == r.usage.completion_tokens,
      f"stream finish {finish} usage {usage}")
check(len(parts) > 1, "the stream came in one piece")
ok("chat base streaming")

# text parts, stop strings, max_completion_tokens
r2 = client.chat.completions.create(
    model=cfg["model"], max_completion_tokens=5, temperature=0,
    messages=[{"role": "user", "content": [{"type": "text", "text": "Count: 1, 2, 3,"}]}],
)
check(r2.usage.completion_tokens <= 5, f"max_completion_tokens: {r2.usage}")
ok("chat text parts and max_completion_tokens")

# an adapter, by model id and by extra_body
ra = client.chat.completions.create(model=cfg["lora"], messages=msgs, max_tokens=16, temperature=0)
rb = client.chat.completions.create(
    model=cfg["model"], messages=msgs, max_tokens=16, temperature=0,
    extra_body={"lora": [{"name": cfg["lora"], "scale": 1.0}]},
)
check(ra.choices[0].message.content == rb.choices[0].message.content, "adapter by id != by extra_body")
check(ra.choices[0].message.content != c.message.content, "the adapter changed nothing")
ok("chat on an adapter")

# kb:NAME, non-streaming: citations
q = [{"role": "user", "content": cfg["question"]}]
rk = client.chat.completions.create(model="kb:" + cfg["kb"], messages=q, max_tokens=48, temperature=0)
extra = rk.model_extra or {}
check(extra.get("refused") is False, f"refused: {extra.get('refused')} answer {rk.choices[0].message.content!r}")
cites = extra.get("citations") or []
check(cites, f"no citations: {rk.choices[0].message.content!r}")
check(any(cfg["expect_source"] in x["source"] for x in extra.get("sources", [])),
      f"the right document was not retrieved: {[x['source'] for x in extra.get('sources', [])]}")
for x in cites:
    for f in ("n", "source", "title", "page", "section", "start", "end", "text"):
        check(f in x, f"citation lacks {f}: {x}")
    check(f"[{x['n']}]" in rk.choices[0].message.content, f"citation {x['n']} not in the answer")
ok("chat on kb: citations")

# kb streamed: same text as the non-streamed answer; citations on the last chunk
s = client.chat.completions.create(model="kb:" + cfg["kb"], messages=q, max_tokens=48, temperature=0, stream=True)
parts, last = [], None
for chunk in s:
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
    last = chunk
check("".join(parts) == rk.choices[0].message.content,
      f"streamed {''.join(parts)!r} != final {rk.choices[0].message.content!r}")
check((last.model_extra or {}).get("citations"), "no citations on the last chunk")
ok("chat on kb streaming: stream == final")

# kb through extra_body, with a follow-up (rewritten query)
rf = client.chat.completions.create(
    model=cfg["model"], max_tokens=32, temperature=0, extra_body={"kb": cfg["kb"], "k": 2},
    messages=q + [{"role": "assistant", "content": rk.choices[0].message.content},
                  {"role": "user", "content": "and why is that?"}],
)
check((rf.model_extra or {}).get("lorag", {}).get("query"), "no query reported")
ok("chat kb via extra_body with a follow-up")

# embeddings: float and base64 (the client's default), compared with lorag-embed's own vectors
ref = cfg["reference"]
ef = client.embeddings.create(model=cfg["embedder"], input=ref["texts"], encoding_format="float")
eb = client.embeddings.create(model=cfg["embedder"], input=ref["texts"])  # base64 on the wire
for e1, e2, want in zip(ef.data, eb.data, ref["vectors"]):
    check(len(e1.embedding) == len(want), "dimension")
    dot = sum(a * b for a, b in zip(e1.embedding, want))
    check(dot > 0.9999, f"float embedding differs from lorag-embed: cos {dot}")
    check(max(abs(a - b) for a, b in zip(e1.embedding, e2.embedding)) < 1e-6, "base64 != float")
raw = httpx.post(base + "/v1/embeddings", headers={"Authorization": "Bearer " + cfg["key"]},
                 json={"input": "x", "encoding_format": "base64"}).json()
b = base64.b64decode(raw["data"][0]["embedding"])
check(len(b) == 4 * len(ref["vectors"][0]), "base64 length")
one = client.embeddings.create(model=cfg["embedder"], input=ref["texts"][0], encoding_format="float")
check(len(one.data) == 1, "single string input")
ok("embeddings float and base64")

# errors, as the client raises them
def raises(exc, f):
    try:
        f()
    except exc as e:
        return e
    raise AssertionError(f"expected {exc.__name__}")

e = raises(openai.NotFoundError, lambda: client.chat.completions.create(model="nope", messages=msgs))
check(e.body and e.body.get("param") == "model", f"404 body {e.body}")
e = raises(openai.BadRequestError, lambda: client.chat.completions.create(model=cfg["model"], messages=msgs, n=2))
check("n" == (e.body or {}).get("param"), f"n=2 body {e.body}")
bad = OpenAI(base_url=base + "/v1", api_key="lorag-wrong", max_retries=0)
raises(openai.AuthenticationError, lambda: bad.models.list())
other = OpenAI(base_url=base + "/v1", api_key=cfg["other_key"], max_retries=0)
raises(openai.PermissionDeniedError,
       lambda: other.chat.completions.create(model="kb:" + cfg["kb"], messages=q, max_tokens=8))
check("kb:" + cfg["kb"] not in [m.id for m in other.models.list()], "a KB the key may not read is listed")
long = [{"role": "user", "content": "word " * 20000}]
e = raises(openai.BadRequestError, lambda: client.chat.completions.create(model=cfg["model"], messages=long))
check((e.body or {}).get("code") == "context_length_exceeded", f"context error body {e.body}")
ok("errors: 404 model, 400 n, 401 key, 403 kb, 400 context")


def metric(name):
    text = httpx.get(base + "/metrics").text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"metric {name} missing")


# a client that disconnects mid-stream frees its slot
before = metric("lorag_cancelled_total")
with httpx.stream("POST", base + "/v1/chat/completions", headers={"Authorization": "Bearer " + cfg["key"]},
                  json={"model": cfg["model"], "stream": True, "max_tokens": 2000, "temperature": 0,
                        "messages": [{"role": "user", "content": "Count from 1 to 2000, separated by commas."}]},
                  timeout=60) as resp:
    n = 0
    for line in resp.iter_lines():
        if line.startswith("data: "):
            n += 1
        if n >= 4:
            break
deadline = time.time() + 20
while time.time() < deadline and (metric("lorag_busy_slots") > 0 or metric("lorag_cancelled_total") <= before):
    time.sleep(0.1)
check(metric("lorag_cancelled_total") > before, "the disconnected request was not cancelled")
check(metric("lorag_busy_slots") == 0, "a slot stayed busy after its client left")
r = client.chat.completions.create(model=cfg["model"], messages=msgs, max_tokens=4, temperature=0)
check(r.choices[0].message.content is not None, "next request after a disconnect")
ok("disconnect frees the slot")


# load: 32 concurrent clients x 5 short completions
async def load():
    ac = AsyncOpenAI(base_url=base + "/v1", api_key=cfg["key"], max_retries=0, timeout=300)
    errors = []

    async def user(i):
        for j in range(5):
            try:
                r = await ac.chat.completions.create(
                    model=cfg["model"], max_tokens=8, temperature=0.5, seed=i * 10 + j,
                    messages=[{"role": "user", "content": f"Give me a word that rhymes with number {i}-{j}."}],
                )
                if not (r.choices and r.choices[0].finish_reason in ("stop", "length") and r.usage.completion_tokens >= 1):
                    errors.append(f"invalid response {r}")
            except Exception as e:  # noqa: BLE001 - every failure counts
                errors.append(f"{type(e).__name__}: {e}")

    t = time.time()
    await asyncio.gather(*(user(i) for i in range(32)))
    await ac.close()
    return errors, time.time() - t


calls0, toks0 = metric("lorag_decode_calls_total"), metric("lorag_completion_tokens_total")
errors, secs = asyncio.run(load())
calls = metric("lorag_decode_calls_total") - calls0
toks = metric("lorag_completion_tokens_total") - toks0
check(not errors, f"{len(errors)} failed requests under load: {errors[:3]}")
h = urllib.request.urlopen(base + "/health")
check(h.status == 200 and json.load(h)["status"] == "ok", "health after load")
text = httpx.get(base + "/metrics").text
check('lorag_requests_total{route="/v1/chat/completions",status="200"}' in text, "request counter")
# /health answers 503 while the model loads (the test polls it then); nothing else may be a 5xx.
fives = [l for l in text.splitlines()
         if l.startswith('lorag_requests_total') and 'status="5' in l and 'route="/health"' not in l]
check(not fives, f"a 5xx was served: {fives}")
check(calls < toks, f"decoding was not batched: {calls} llama_decode calls for {toks} tokens")
ok(f"load 32x5 in {secs:.1f}s ({toks:.0f} tokens in {calls:.0f} batched decode calls), no 5xx, health ok")
print("all ok")
