#!/usr/bin/env python3
"""Prompt and decode throughput: lorag (llama.cpp via llama-cpp-2) against llama-cpp-python
(llama.cpp via Python) on the same GGUF, the same prompts, the same threads, greedy.

Prints each figure's min/median/max over the runs and the ratio ours/peer. Also measures the
second call with the same long system prompt (prefix KV reuse) on both sides.

Run through bench/llm.sh, which installs the peer and builds lorag.
"""
import argparse
import json
import os
import statistics
import subprocess
import time

import llama_cpp

QUESTION = "Write a detailed story about an engineer who builds a bridge over a wide river."
LONG = (
    "Building permits are issued by the municipal building committee. An application must include "
    "site plans, drawings of the facades and sections, a description of the load-bearing structure, "
    "and the energy calculations required by the national building regulations. "
) * 9
SYSTEM = (
    "You are the assistant of a construction company. You answer questions about building permits, "
    "inspections, contracts, materials and safety on site, precisely and briefly, and you say so when "
    "you do not know. "
) * 12


def chatml(system, user):
    s = ""
    if system:
        s += f"<|im_start|>system\n{system}<|im_end|>\n"
    return s + f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def lorag_chat(binary, model, threads, prompt, max_tokens, system=None):
    args = [binary, "chat", prompt, "--model", model, "--json", "--temperature", "0",
            "--repeat-penalty", "1", "--max-tokens", str(max_tokens), "--threads", str(threads)]
    if system:
        args += ["--system", system]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def lorag_two_calls(binary, model, threads, system, q1, q2, max_tokens):
    args = [binary, "chat", "--model", model, "--json", "--temperature", "0", "--repeat-penalty", "1",
            "--max-tokens", str(max_tokens), "--threads", str(threads), "--system", system]
    out = subprocess.run(args, check=True, capture_output=True, text=True,
                         input=f"{q1}\n/reset\n{q2}\n").stdout
    return [json.loads(l) for l in out.splitlines()]


class Peer:
    def __init__(self, model, threads):
        self.llm = llama_cpp.Llama(model_path=model, n_ctx=4096, n_batch=512, n_ubatch=512,
                                   n_threads=threads, n_threads_batch=threads, verbose=False)
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)

    def run(self, prompt, max_tokens, reset_cache=True):
        llm = self.llm
        toks = llm.tokenize(prompt.encode(), add_bos=True, special=True)
        if reset_cache:
            llm.reset()
            llm._ctx.kv_cache_clear() if hasattr(llm._ctx, "kv_cache_clear") else None
        t0 = time.perf_counter()
        t_first = None
        out = []
        for tok in llm.generate(toks, temp=0.0, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0, reset=True):
            if t_first is None:
                t_first = time.perf_counter()
            if llama_cpp.llama_vocab_is_eog(self.vocab, tok):
                break
            out.append(tok)
            if len(out) >= max_tokens:
                break
        t_end = time.perf_counter()
        prompt_s = t_first - t0
        n = len(out)
        return {
            "prompt_tokens": len(toks),
            "completion_tokens": n,
            "prompt_ms": prompt_s * 1e3,
            "prompt_tok_per_s": len(toks) / prompt_s,
            "decode_tok_per_s": (n - 1) / (t_end - t_first) if n > 1 else float("nan"),
            "text": llm.detokenize(out).decode("utf-8", "replace"),
        }


def summary(xs):
    xs = sorted(xs)
    return f"{xs[0]:8.1f} {statistics.median(xs):8.1f} {xs[-1]:8.1f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lorag", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--max-tokens", type=int, default=128)
    a = ap.parse_args()

    peer = Peer(a.model, a.threads)
    rows = {k: ([], []) for k in ["decode tok/s", "prompt tok/s (long)", "1st call prompt ms", "2nd call prompt ms"]}
    common = []
    for r in range(a.runs):
        # Interleave ours and the peer's within each run, so that noise hits both.
        ours = lorag_chat(a.lorag, a.model, a.threads, QUESTION, a.max_tokens)
        theirs = peer.run(chatml(None, QUESTION), a.max_tokens)
        assert ours["prompt_tokens"] == theirs["prompt_tokens"], (ours["prompt_tokens"], theirs["prompt_tokens"])
        a_, b_ = ours["text"].strip(), theirs["text"].strip()
        common.append((len(os.path.commonprefix([a_, b_])), max(len(a_), len(b_))))
        rows["decode tok/s"][0].append(ours["decode_tok_per_s"])
        rows["decode tok/s"][1].append(theirs["decode_tok_per_s"])

        ours = lorag_chat(a.lorag, a.model, a.threads, LONG, 1)
        theirs = peer.run(chatml(None, LONG), 1)
        assert ours["prompt_tokens"] == theirs["prompt_tokens"]
        rows["prompt tok/s (long)"][0].append(ours["prompt_tok_per_s"])
        rows["prompt tok/s (long)"][1].append(theirs["prompt_tok_per_s"])

        first, second = lorag_two_calls(a.lorag, a.model, a.threads, SYSTEM, "What is a permit?", "Who inspects the site?", 8)
        assert second["cached_tokens"] > 0
        p1 = peer.run(chatml(SYSTEM, "What is a permit?"), 8)
        p2 = peer.run(chatml(SYSTEM, "Who inspects the site?"), 8, reset_cache=False)
        rows["1st call prompt ms"][0].append(first["prompt_ms"])
        rows["1st call prompt ms"][1].append(p1["prompt_ms"])
        rows["2nd call prompt ms"][0].append(second["prompt_ms"])
        rows["2nd call prompt ms"][1].append(p2["prompt_ms"])
        print(f"run {r + 1}/{a.runs} done", flush=True)

    print(f"\nmodel {os.path.basename(a.model)}, {a.threads} threads, greedy, {a.runs} runs "
          f"(lorag ours vs llama-cpp-python {llama_cpp.__version__} peer)")
    print(f"{'metric':24} {'ours min/med/max':>26}   {'peer min/med/max':>26}   ratio ours/peer (med)")
    for k, (o, p) in rows.items():
        ratio = statistics.median(o) / statistics.median(p)
        print(f"{k:24} {summary(o)}   {summary(p)}   {ratio:6.2f}")
    o1, o2 = statistics.median(rows["1st call prompt ms"][0]), statistics.median(rows["2nd call prompt ms"][0])
    print(f"\nprefix reuse (ours): second call with the same {second['cached_tokens']}-token system prompt: "
          f"{o1:.1f} ms -> {o2:.1f} ms ({o1 / o2:.1f}x faster)")
    print("greedy text shared with the peer's (common prefix chars / length): "
          + ", ".join(f"{c}/{n}" for c, n in common)
          + "  (greedy paths split where float rounding differs between the builds)")
    print("(for times in ms, lower is better: a ratio below 1 means ours is faster)")


if __name__ == "__main__":
    main()
