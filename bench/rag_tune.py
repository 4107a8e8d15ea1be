#!/usr/bin/env python3
"""RAG-aware fine-tuning for the SQuAD benchmark, on data that shares no article with it.

Training data: the SQuAD-shifts "new_wiki" set (SQuAD-format questions on 48 Wikipedia articles
that are not in SQuAD). Its 1,581 paragraphs become a KB of their own; a seeded sample of its
questions (one per paragraph) goes through `lorag rag-data`, which gives each question the
sources `lorag ask` would retrieve for it from that KB and the reference answer, cited, as the
reply; `lorag tune` trains a LoRA adapter on that. Then `bench/rag.py --lora ADAPTER` measures
the tuned model on the SQuAD v1.1 dev benchmark (a different KB: the 2,067 dev paragraphs).
Run through bench/rag_tune.sh."""
import argparse
import collections
import json
import os
import random
import subprocess

import rag
import squad_data


def reference(answers):
    """The answer most annotators gave (ties: the shortest)."""
    counts = collections.Counter(a.strip() for a in answers)
    return min(counts, key=lambda a: (-counts[a], len(a)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lorag", required=True)
    ap.add_argument("--out", default=os.path.join(squad_data.HERE, "out", "rag_tune"))
    ap.add_argument("--questions", type=int, default=600, help="training questions (one per paragraph)")
    ap.add_argument("--model", help="model path or catalogue name (default: lorag's, SmolLM2)")
    ap.add_argument("--eval", type=int, default=8, help="conversations held out for the eval loss")
    ap.add_argument("--tune-args", default="--steps 64 --batch 2 --lr 1e-3 --rank 16 --max-seq 1024 --eval-every 0",
                    help="arguments for lorag tune (besides --data/--out/--model)")
    ap.add_argument("--missing", choices=["skip", "refuse"], default="skip",
                    help="lorag rag-data --missing: questions whose retrieved sources lack the answer")
    ap.add_argument("--data-only", action="store_true", help="stop after writing the training data")
    a = ap.parse_args()

    paras, questions = squad_data.load(squad_data.NEW_WIKI)
    os.makedirs(a.out, exist_ok=True)
    kb = os.path.join(a.out, "kb_new_wiki")
    rag.ensure_kb(a.lorag, paras, os.path.join(a.out, "docs_new_wiki"), kb)

    by_para = collections.defaultdict(list)
    for q in questions:
        by_para[q[3]].append(q)
    rng = random.Random(11)
    pids = sorted(by_para)
    rng.shuffle(pids)
    qa = os.path.join(a.out, "qa.jsonl")
    with open(qa, "w") as f:
        for pid in pids[: a.questions]:
            q = rng.choice(by_para[pid])
            f.write(json.dumps({"messages": [{"role": "user", "content": q[1].strip()},
                                             {"role": "assistant", "content": reference(q[2])}]}) + "\n")
    train = os.path.join(a.out, "train.jsonl")
    model = ["--model", a.model] if a.model else []
    if not os.path.exists(train):
        r = subprocess.run([a.lorag, "rag-data", "--kb", kb, "--data", qa, "--out", train, "--style", rag.STYLE,
                            "--missing", a.missing, "--json"] + model, check=True, capture_output=True, text=True)
        print("rag-data:", r.stdout.strip(), flush=True)
    if a.data_only:
        return
    # A few conversations held out (each eval pass runs the whole prompt of every one of them).
    with open(train) as f:
        lines = f.readlines()
    train_part, eval_part = os.path.join(a.out, "train_split.jsonl"), os.path.join(a.out, "eval_split.jsonl")
    with open(train_part, "w") as f:
        f.writelines(lines[: -a.eval])
    with open(eval_part, "w") as f:
        f.writelines(lines[-a.eval:])
    run = os.path.join(a.out, "run")
    subprocess.run([a.lorag, "tune", "--data", train_part, "--eval-data", eval_part, "--out", run, "--json"]
                   + model + a.tune_args.split(), check=True)
    print(f"adapter: {os.path.join(run, 'adapter.gguf')}\n"
          f"benchmark: python3 bench/rag.py --lorag {a.lorag} --lora {os.path.join(run, 'adapter.gguf')}")


if __name__ == "__main__":
    main()
