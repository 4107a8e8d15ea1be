"""Load generator for bench/serve.sh: streamed chat completions at a fixed concurrency against an
OpenAI-compatible server; prints one JSON line of aggregate figures.

Usage: serve_load.py URL --concurrency C --requests N [--max-tokens T] [--model M]
"""
import argparse
import asyncio
import json
import statistics
import time

import httpx

PROMPTS = [
    "Explain what a building permit is.",
    "Write a short story about a lighthouse keeper.",
    "List five uses of a hammer.",
    "Describe the water cycle.",
    "What is the capital of France, and why is it famous?",
    "Give advice to a new gardener.",
    "Explain how a bicycle works.",
    "Describe a sunny day at the beach.",
]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def one(client, url, model, i, max_tokens, out):
    body = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
        "temperature": 0,
        "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)] + f" (request {i})"}],
    }
    t0 = time.perf_counter()
    ttft = None
    tokens = 0
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            ev = json.loads(line[6:])
            if ev.get("choices") and ev["choices"][0].get("delta", {}).get("content"):
                ttft = ttft or time.perf_counter() - t0
            if ev.get("usage"):
                tokens = ev["usage"]["completion_tokens"]
    out.append({"ttft": ttft or (time.perf_counter() - t0), "total": time.perf_counter() - t0, "tokens": tokens})


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--concurrency", type=int, required=True)
    ap.add_argument("--requests", type=int, required=True)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    a = ap.parse_args()
    out = []
    queue = list(range(a.requests))
    # A new connection per request: llama-server closes a connection after a streamed reply.
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        # Warm-up (not measured).
        await one(client, a.url, a.model, 999, 8, [])

        async def worker():
            while queue:
                i = queue.pop()
                await one(client, a.url, a.model, i, a.max_tokens, out)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(a.concurrency)))
        wall = time.perf_counter() - t0
    toks = sum(r["tokens"] for r in out)
    print(json.dumps({
        "concurrency": a.concurrency, "requests": len(out), "completion_tokens": toks,
        "seconds": round(wall, 3), "tok_per_s": round(toks / wall, 2),
        "ttft_p50": round(statistics.median(r["ttft"] for r in out), 3),
        "ttft_p95": round(pct([r["ttft"] for r in out], 95), 3),
        "latency_p50": round(statistics.median(r["total"] for r in out), 3),
        "latency_p95": round(pct([r["total"] for r in out], 95), 3),
    }))


asyncio.run(main())
