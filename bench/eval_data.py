#!/usr/bin/env python3
"""Data for bench/eval.sh: a KB folder (one document per record or paragraph) and a Q&A file
naming each question's document as its source, for
- the construction-law FAQ (503 records; the KB holds each record's question and answer), and
- SQuAD-shifts new_wiki (1,581 paragraphs on Wikipedia articles not in SQuAD; one seeded
  question per paragraph, its reference the answer most annotators gave).
Prints the two folders."""
import argparse
import collections
import json
import os
import random

import squad_data


def faq(models, out):
    src = os.path.join(models, "construction-faq", "faq-en.jsonl")
    docs = os.path.join(out, "docs")
    os.makedirs(docs, exist_ok=True)
    with open(src) as f, open(os.path.join(out, "qa.jsonl"), "w") as qa:
        for line in f:
            r = json.loads(line)
            name = f"{r['id']}.txt"
            with open(os.path.join(docs, name), "w") as d:
                d.write(f"{r['q']}\n\n{r['a']}\n")
            qa.write(json.dumps({"id": r["id"], "question": r["q"], "answer": r["a"], "sources": [name]}) + "\n")


def new_wiki(out):
    paras, questions = squad_data.load(squad_data.NEW_WIKI)
    docs = os.path.join(out, "docs")
    os.makedirs(docs, exist_ok=True)
    for pid, title, ctx in paras:
        with open(os.path.join(docs, f"p{pid:04}.txt"), "w") as f:
            f.write(f"{title}\n\n{ctx}\n")
    by_para = collections.defaultdict(list)
    for q in questions:
        by_para[q[3]].append(q)
    rng = random.Random(5)
    with open(os.path.join(out, "qa.jsonl"), "w") as qa:
        for pid in sorted(by_para):
            qid, question, answers, _ = rng.choice(by_para[pid])
            counts = collections.Counter(a.strip() for a in answers)
            ref = min(counts, key=lambda a: (-counts[a], len(a)))
            alts = sorted(set(a.strip() for a in answers) - {ref})
            qa.write(json.dumps({"id": qid, "question": question.strip(), "answer": ref, "answers": alts,
                                 "sources": [f"p{pid:04}.txt"]}) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", required=True)
    ap.add_argument("--out", default=os.path.join(squad_data.HERE, "out", "eval"))
    a = ap.parse_args()
    f, w = os.path.join(a.out, "faq"), os.path.join(a.out, "new_wiki")
    if not os.path.exists(os.path.join(f, "qa.jsonl")):
        faq(a.models, f)
    if not os.path.exists(os.path.join(w, "qa.jsonl")):
        new_wiki(w)
    print(f, w)


if __name__ == "__main__":
    main()
