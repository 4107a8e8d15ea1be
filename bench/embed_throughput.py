#!/usr/bin/env python3
"""Sentence embeddings/s: lorag-embed (candle, through its embed_bench example) against
sentence-transformers (PyTorch) on the same model folder, the same texts, the same batch size and
the same threads, on CPU.

Texts: the questions and answers (fields q and a) of the construction-law FAQ, repeated to --texts.
Each run times ours (a fresh process; load and one warm-up batch are not timed) and then the peer
(loaded once, warmed up once). Prints min/median/max embeddings/s over the runs and the ratio
ours/peer, the time each side spends tokenizing, and the smallest cosine between our vector and
the peer's for the same text.

Run through bench/embed.sh, which installs the peer and builds the example.
"""
import argparse
import json
import os
import statistics
import subprocess
import time

import numpy as np
import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer


def load_texts(faq, n):
    base = []
    with open(faq, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                base += [rec["q"], rec["a"]]
    texts = (base * (n // len(base) + 1))[:n]
    return base, texts


def summary(xs):
    xs = sorted(xs)
    return f"{xs[0]:8.1f} {statistics.median(xs):8.1f} {xs[-1]:8.1f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", required=True, help="the embed_bench example binary")
    ap.add_argument("--model", required=True, help="the sentence-transformers model folder")
    ap.add_argument("--faq", required=True, help="faq-en.jsonl")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--texts", type=int, default=2000)
    a = ap.parse_args()

    base, texts = load_texts(a.faq, a.texts)
    os.makedirs("bench/out/embed", exist_ok=True)
    texts_path = "bench/out/embed/texts.json"
    vec_path = "bench/out/embed/ours.f32"
    with open(texts_path, "w", encoding="utf-8") as f:
        json.dump(texts, f, ensure_ascii=False)

    torch.set_num_threads(a.threads)
    peer = SentenceTransformer(a.model, device="cpu")
    peer.encode(texts[: a.batch_size], batch_size=a.batch_size)  # warm-up
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))

    ours_eps, peer_eps, ours_tok, peer_tok = [], [], [], []
    ours_info = None
    min_cos = None
    for r in range(a.runs):
        args = [a.ours, "--model", a.model, "--texts", texts_path, "--batch-size", str(a.batch_size)]
        if r == 0:
            args += ["--vectors", vec_path]
        ours_info = json.loads(subprocess.run(args, check=True, capture_output=True, text=True,
                                              env=env).stdout)
        ours_eps.append(ours_info["runs"][0]["embeddings_per_s"])
        ours_tok.append(ours_info["tokenize_s"])

        t0 = time.perf_counter()
        theirs = peer.encode(texts, batch_size=a.batch_size, normalize_embeddings=True,
                             convert_to_numpy=True)
        peer_eps.append(len(texts) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        peer.tokenizer(texts, truncation=True, max_length=peer.max_seq_length)
        peer_tok.append(time.perf_counter() - t0)

        if r == 0:
            ours = np.fromfile(vec_path, dtype="<f4").reshape(len(texts), -1)
            min_cos = float(np.min(np.sum(ours * theirs, axis=1)))
        print(f"run {r + 1}/{a.runs} done", flush=True)

    print(f"\nmodel {ours_info['model']}, {len(texts)} texts ({len(base)} distinct FAQ questions and "
          f"answers, {ours_info['tokens']} tokens), batch {a.batch_size}, {a.threads} threads "
          f"(ours {ours_info['threads']}, torch {torch.get_num_threads()}), {a.runs} runs")
    print(f"(lorag-embed ours vs sentence-transformers {sentence_transformers.__version__} / "
          f"torch {torch.__version__} peer)")
    print(f"{'metric':24} {'ours min/med/max':>26}   {'peer min/med/max':>26}   ratio ours/peer (med)")
    print(f"{'embeddings/s':24} {summary(ours_eps)}   {summary(peer_eps)}   "
          f"{statistics.median(ours_eps) / statistics.median(peer_eps):6.2f}")
    print(f"{'tokenize all, ms':24} {summary([x * 1e3 for x in ours_tok])}   "
          f"{summary([x * 1e3 for x in peer_tok])}   "
          f"{statistics.median(ours_tok) / statistics.median(peer_tok):6.2f}")
    print(f"\nsmallest cosine between our vector and the peer's, over all {len(texts)} texts: {min_cos:.6f}")
    print("(for times in ms, lower is better: a ratio below 1 means ours is faster)")


if __name__ == "__main__":
    main()
