#!/usr/bin/env python3
"""ANN benchmark: the store's HNSW index (usearch, M=16, ef_construction=128, ef_search=96, cosine)
against hnswlib with the same parameters, on the same vectors, in one run. Both build on one
thread and answer queries on one thread. Prints build seconds, queries/s and recall@10 against
exact search, and the ratio ours / peer. Data sets:
  - synthetic: N vectors of 384 dims from 1,000 Gaussian clusters (seeded), 1,000 queries;
  - squad: the real all-MiniLM-L6-v2 chunk vectors of the SQuAD KB (bench/retrieval.sh builds it),
    10% of them held out as queries (the rest is the index).
Run through bench/ann.sh."""
import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import tempfile
import time

import numpy as np
import hnswlib

HERE = os.path.dirname(os.path.abspath(__file__))
K = 10


def synthetic(n, dim=384, nq=1000, seed=7):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((1000, dim)).astype(np.float32)
    def draw(m):
        c = centers[rng.integers(0, len(centers), m)]
        return (c + 1.0 * rng.standard_normal((m, dim)).astype(np.float32)).astype(np.float32)
    return draw(n), draw(nq)


def squad(kb):
    db = sqlite3.connect(f"file:{os.path.join(kb, 'kb.sqlite')}?mode=ro", uri=True)
    vecs = np.stack([np.frombuffer(b, dtype="<f4") for (b,) in db.execute("SELECT embedding FROM chunks ORDER BY id")])
    rng = np.random.default_rng(3)
    idx = rng.permutation(len(vecs))
    nq = len(vecs) // 10
    return np.ascontiguousarray(vecs[idx[nq:]]), np.ascontiguousarray(vecs[idx[:nq]])


def exact(base, queries):
    b = base / np.linalg.norm(base, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    return np.argsort(-(q @ b.T), axis=1)[:, :K]


def peer(base, queries, truth):
    dim = base.shape[1]
    t0 = time.perf_counter()
    p = hnswlib.Index(space="cosine", dim=dim)
    p.init_index(max_elements=len(base), M=16, ef_construction=128, random_seed=1)
    p.set_num_threads(1)
    p.add_items(base, np.arange(len(base)))
    build = time.perf_counter() - t0
    p.set_ef(96)
    t0 = time.perf_counter()
    labels = [p.knn_query(q, k=K)[0][0] for q in queries]  # one query at a time, as ours
    qps = len(queries) / (time.perf_counter() - t0)
    recall = sum(len(set(l) & set(t)) for l, t in zip(labels, truth)) / (len(queries) * K)
    return {"build_s": build, "qps": qps, "recall": recall}


def ours(binary, base, queries):
    with tempfile.TemporaryDirectory() as d:
        bf, qf = os.path.join(d, "base.f32"), os.path.join(d, "queries.f32")
        base.astype("<f4").tofile(bf)
        queries.astype("<f4").tofile(qf)
        out = subprocess.run([binary, bf, qf, str(base.shape[1]), str(K)], check=True, capture_output=True, text=True)
        return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="the ann_bench example binary")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--kb", default=os.path.join(HERE, "out", "squad", "kb"))
    a = ap.parse_args()
    sets = [(f"synthetic {a.n:,}x384", *synthetic(a.n))]
    if os.path.exists(os.path.join(a.kb, "kb.sqlite")):
        sets.append(("squad chunks (real MiniLM)", *squad(a.kb)))
    else:
        print(f"(no SQuAD KB at {a.kb}: run bench/retrieval.sh first for the real-vector set)")
    print(f"{'data':28} {'metric':10} {'ours min/med/max':>26} {'peer min/med/max':>26}  ratio (med)")
    for name, base, queries in sets:
        truth = exact(base, queries)
        o, p = [], []
        for _ in range(a.runs):
            o.append(ours(a.bin, base, queries))
            p.append(peer(base, queries, truth))
        for m in ["build_s", "qps", "recall"]:
            ov, pv = sorted(x[m] for x in o), sorted(x[m] for x in p)
            fmt = lambda v: f"{v[0]:8.3f} {statistics.median(v):8.3f} {v[-1]:8.3f}"
            print(f"{name:28} {m:10} {fmt(ov)} {fmt(pv)}  {statistics.median(ov) / statistics.median(pv):6.2f}")
    print("(build_s: lower is better; qps and recall@10: higher is better)")


if __name__ == "__main__":
    main()
