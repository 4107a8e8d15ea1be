#!/usr/bin/env python3
"""Retrieval quality and ingestion speed on SQuAD v1.1 dev: 2,067 paragraphs, each ingested as a
document (a .txt file), 10,565 questions. For dense, BM25 and hybrid: recall@1/5/10 and MRR@10
(a hit is a result from the question's own paragraph), and ms per query. Also ingestion MB/min of
text, end to end (load, chunk, embed, store, index). Run through bench/retrieval.sh."""
import argparse
import json
import os
import random
import shutil
import subprocess
import time

import squad_data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lorag", required=True)
    ap.add_argument("--out", default=os.path.join(squad_data.HERE, "out", "squad"))
    ap.add_argument("--sample", type=int, default=0, help="questions to use (0 = all 10,565)")
    ap.add_argument("--reuse", action="store_true", help="keep an existing KB instead of re-ingesting")
    a = ap.parse_args()

    paras, questions = squad_data.load()
    if a.sample:
        questions = random.Random(1).sample(questions, a.sample)
    docs = os.path.join(a.out, "paragraphs")
    kb = os.path.join(a.out, "kb")
    if not a.reuse or not os.path.exists(kb):
        shutil.rmtree(a.out, ignore_errors=True)
        os.makedirs(docs)
        for pid, title, ctx in paras:
            with open(os.path.join(docs, f"p{pid:04}.txt"), "w") as f:
                f.write(f"{title}\n\n{ctx}\n")
        text_mb = sum(os.path.getsize(os.path.join(docs, n)) for n in os.listdir(docs)) / 1e6
        t0 = time.time()
        out = subprocess.run([a.lorag, "ingest", docs, "--kb", kb, "--json"], check=True, capture_output=True, text=True)
        wall = time.time() - t0
        r = json.loads(out.stdout)
        print(f"ingest: {r['added']} documents, {r['chunks']} chunks, {len(r['failed'])} failed, "
              f"{text_mb:.2f} MB of text in {wall:.1f} s wall = {text_mb / wall * 60:.2f} MB/min end to end")

    qfile = os.path.join(a.out, "questions.txt")
    with open(qfile, "w") as f:
        for _, q, _, _ in questions:
            f.write(q.replace("\n", " ") + "\n")
    gold = [f"p{pid:04}.txt" for *_, pid in questions]
    rows = {}
    for mode in ["dense", "bm25", "hybrid"]:
        t0 = time.time()
        out = subprocess.run([a.lorag, "search", "--batch", qfile, "--kb", kb, "--mode", mode, "-k", "10", "--json"],
                             check=True, capture_output=True, text=True)
        wall = time.time() - t0
        lines = out.stdout.splitlines()
        assert len(lines) == len(questions), (len(lines), len(questions))
        r1 = r5 = r10 = mrr = 0.0
        ms = []
        for line, g in zip(lines, gold):
            res = json.loads(line)
            ms.append(res["ms"])
            srcs = [os.path.basename(h["source"]) for h in res["results"]]
            rank = next((i + 1 for i, s in enumerate(srcs) if s == g), None)
            if rank:
                r1 += rank <= 1
                r5 += rank <= 5
                r10 += rank <= 10
                mrr += 1.0 / rank
        n = len(questions)
        ms.sort()
        rows[mode] = (r1 / n, r5 / n, r10 / n, mrr / n, ms[len(ms) // 2], wall)
    print(f"\n{len(questions)} questions, {len(paras)} paragraphs")
    print(f"{'mode':8} {'R@1':>7} {'R@5':>7} {'R@10':>7} {'MRR@10':>7} {'ms/q (median)':>14}")
    for mode, (r1, r5, r10, mrr, med, wall) in rows.items():
        print(f"{mode:8} {r1:7.4f} {r5:7.4f} {r10:7.4f} {mrr:7.4f} {med:14.2f}")
    h, d, b = rows["hybrid"][1], rows["dense"][1], rows["bm25"][1]
    print(f"\nhybrid recall@5 {h:.4f} vs dense {d:.4f} and bm25 {b:.4f}: "
          f"{'beats both' if h > d and h > b else 'does NOT beat both'}")


if __name__ == "__main__":
    main()
