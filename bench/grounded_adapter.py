#!/usr/bin/env python3
"""Build the grounded-answer adapter that lorag ships for its default model (SmolLM2-135M).

Open data that shares nothing with the benchmarks: the SQuAD-shifts "new_wiki" set (48 Wikipedia
articles that are not in SQuAD). Its paragraphs become a KB; one seeded question per paragraph
goes through `lorag rag-data` (the prompt `lorag ask` builds, sources retrieved from that KB):
- half with `--style "Answer with a short phrase from the sources."` and the reference answer
  (a short phrase) as the reply: what the benchmarks ask for;
- half with no style and, as the reply, the paragraph's sentence that holds the answer: a full,
  natural sentence, which is what a person asking `lorag ask` or the demo expects.
`rag-data` cites each reply from the sources it was given. `lorag tune` trains a rank-16 LoRA
adapter on the mix (fixed seed) and writes it as F16. The script checks that no article title
and no question of the benchmarks (SQuAD v1.1 dev) is in the training data.
Run through scripts/grounded-adapter.sh."""
import argparse
import collections
import hashlib
import json
import os
import random
import re
import shutil
import subprocess

import rag
import squad_data

SEED = 11


def reference(answers):
    counts = collections.Counter(a.strip() for a in answers)
    return min(counts, key=lambda a: (-counts[a], len(a)))


def sentence_with(context, answer):
    """The sentence of `context` that holds `answer` (None when none does)."""
    for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])", context):
        s = s.strip()
        if answer in s and 20 <= len(s) <= 400:
            return s if s[-1] in ".!?" else s + "."
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lorag", required=True)
    ap.add_argument("--out", default=os.path.join(squad_data.HERE, "out", "grounded_adapter"))
    ap.add_argument("--questions", type=int, default=640, help="training questions (one per paragraph)")
    ap.add_argument("--tune-args", default="--steps 128 --batch 2 --lr 1e-3 --rank 16 --max-seq 1024 --eval-every 0",
                    help="arguments for lorag tune (besides --data/--out/--seed/--f16)")
    ap.add_argument("--install", help="copy the adapter here (e.g. adapters/smollm2-135m-grounded.gguf)")
    a = ap.parse_args()

    paras, questions = squad_data.load(squad_data.NEW_WIKI)
    dev_paras, dev_questions = squad_data.load()
    # No benchmark article or question in the training data.
    dev_titles = {t for _, t, _ in dev_paras}
    dev_q = {q[1].strip().lower() for q in dev_questions}
    shared = dev_titles & {t for _, t, _ in paras}
    assert not shared, f"articles shared with SQuAD dev: {sorted(shared)[:5]}"
    os.makedirs(a.out, exist_ok=True)
    kb = os.path.join(a.out, "kb_new_wiki")
    rag.ensure_kb(a.lorag, paras, os.path.join(a.out, "docs_new_wiki"), kb)

    by_para = collections.defaultdict(list)
    for q in questions:
        if q[1].strip().lower() not in dev_q:
            by_para[q[3]].append(q)
    rng = random.Random(SEED)
    pids = sorted(by_para)
    rng.shuffle(pids)
    short, full = [], []
    for i, pid in enumerate(pids[: a.questions]):
        q = rng.choice(by_para[pid])
        ref = reference(q[2])
        if i % 2 == 0:
            short.append((q[1].strip(), ref))
        else:
            s = sentence_with(paras[pid][2], ref)
            if s:
                full.append((q[1].strip(), s))
    print(f"{len(short)} short-phrase and {len(full)} full-sentence questions; "
          f"no SQuAD dev article ({len(dev_titles)}) or question ({len(dev_q)}) among them", flush=True)

    parts = []
    for name, rows, style in (("short", short, rag.STYLE), ("full", full, None)):
        qa = os.path.join(a.out, f"qa_{name}.jsonl")
        with open(qa, "w") as f:
            for q, r in rows:
                f.write(json.dumps({"messages": [{"role": "user", "content": q},
                                                 {"role": "assistant", "content": r}]}) + "\n")
        out = os.path.join(a.out, f"rag_{name}.jsonl")
        if not os.path.exists(out):
            cmd = [a.lorag, "rag-data", "--kb", kb, "--data", qa, "--out", out, "--missing", "skip", "--json"]
            if style:
                cmd += ["--style", style]
            r = subprocess.run(cmd, check=True, capture_output=True, text=True)
            print(f"rag-data ({name}):", r.stdout.strip(), flush=True)
        with open(out) as f:
            parts += f.readlines()
    random.Random(SEED).shuffle(parts)
    train, evalf = os.path.join(a.out, "train.jsonl"), os.path.join(a.out, "eval.jsonl")
    with open(train, "w") as f:
        f.writelines(parts[:-8])
    with open(evalf, "w") as f:
        f.writelines(parts[-8:])
    run = os.path.join(a.out, "run")
    if os.path.exists(os.path.join(run, "adapter.gguf")):
        shutil.rmtree(run)
    subprocess.run([a.lorag, "tune", "--data", train, "--eval-data", evalf, "--out", run, "--seed", str(SEED),
                    "--f16", "--json"] + a.tune_args.split(), check=True)
    adapter = os.path.join(run, "adapter.gguf")
    with open(adapter, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    print(f"adapter: {adapter} ({os.path.getsize(adapter)} bytes, sha256 {sha})")
    if a.install:
        shutil.copyfile(adapter, a.install)
        # Pin the new hash in the catalogue of shipped adapters (the entry with this file name).
        src = os.path.join(squad_data.HERE, "..", "crates", "lorag-models", "src", "adapters.rs")
        with open(src) as f:
            text = f.read()
        name = re.escape(os.path.basename(a.install))
        new, n = re.subn(r'(file: "' + name + r'",\s*sha256: ")[0-9a-f]{64}"', r"\g<1>" + sha + '"', text)
        if n != 1:
            raise SystemExit(f"{src}: no shipped adapter with file {os.path.basename(a.install)!r}")
        with open(src, "w") as f:
            f.write(new)
        print(f"installed: {a.install}; sha256 pinned in {src}")


if __name__ == "__main__":
    main()
