"""Fine-tuning acceptance: base vs LoRA-tuned SmolLM2 on held-out construction-law FAQ questions.

1. Finds the FAQ through `lorag models list --json`, converts it to OpenAI `messages` JSONL and
   splits it (seeded shuffle, 10% held out) into train.jsonl / heldout.jsonl.
2. `lorag tune --data train.jsonl --eval-data heldout.jsonl --json`: the step-0 eval loss is the
   base model's (a fresh adapter has B = 0), the last one the tuned model's, on the same held-out
   conversations and reply tokens.
3. Greedy answers (`lorag chat --json --temperature 0`, with and without `--lora adapter.gguf`) to
   every held-out question, scored by ROUGE-L F1 (longest common subsequence of lower-cased word
   tokens) against the gold answer.
"""

import argparse
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path


def lcs(a, b):
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def tokens(s):
    return re.findall(r"\w+", s.lower())


def rouge_l(pred, gold):
    p, g = tokens(pred), tokens(gold)
    if not p or not g:
        return 0.0
    m = lcs(p, g)
    if m == 0:
        return 0.0
    prec, rec = m / len(p), m / len(g)
    return 2 * prec * rec / (prec + rec)


def faq_path(lorag):
    out = subprocess.run([lorag, "models", "list", "--json"], check=True, capture_output=True, text=True).stdout
    p = next(m["path"] for m in json.loads(out)["models"] if m["name"] == "construction-faq")
    p = Path(p)
    # the catalogue entry may be the folder or one file of it: we want the plain English JSONL
    folder = p if p.is_dir() else p.parent
    return folder / "faq-en.jsonl"


def answer(lorag, q, adapter, max_tokens):
    cmd = [lorag, "chat", q, "--json", "--temperature", "0", "--max-tokens", str(max_tokens)]
    if adapter:
        cmd += ["--lora", str(adapter)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["text"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lorag", required=True)
    ap.add_argument("--out", default="bench/out/finetune")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--heldout", type=float, default=0.1)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--epochs", type=float)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--max-seq", type=int, default=192)
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--qlora", action="store_true")
    ap.add_argument("--limit-eval", type=int, default=0, help="score only the first N held-out questions (0: all)")
    a = ap.parse_args()

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    src = faq_path(a.lorag)
    rows = [json.loads(l) for l in src.read_text().splitlines() if l.strip()]
    random.Random(a.seed).shuffle(rows)
    n_held = round(len(rows) * a.heldout)
    held, train = rows[:n_held], rows[n_held:]

    def write(path, rs):
        with open(path, "w") as f:
            for r in rs:
                f.write(json.dumps({"messages": [
                    {"role": "user", "content": r["q"]},
                    {"role": "assistant", "content": r["a"]},
                ]}) + "\n")

    write(out / "train.jsonl", train)
    write(out / "heldout.jsonl", held)
    print(f"{src}: {len(rows)} Q&A -> {len(train)} train, {len(held)} held out (seed {a.seed})", file=sys.stderr)

    run = out / "run"
    if run.exists():
        import shutil
        shutil.rmtree(run)
    cmd = [a.lorag, "tune", "--data", str(out / "train.jsonl"), "--eval-data", str(out / "heldout.jsonl"),
           "--out", str(run), "--rank", str(a.rank), "--lr", str(a.lr), "--batch", str(a.batch),
           "--max-seq", str(a.max_seq), "--eval-every", "0", "--seed", str(a.seed), "--json"]
    if a.steps:
        cmd += ["--steps", str(a.steps)]
    elif a.epochs:
        cmd += ["--epochs", str(a.epochs)]
    if a.qlora:
        cmd.append("--qlora")
    print("$ " + " ".join(cmd), file=sys.stderr)
    t0 = time.time()
    tune = json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout)
    train_s = time.time() - t0
    print(f"tune: {tune['steps']} steps in {train_s:.0f} s, eval loss {tune['eval_loss_start']:.4f} -> {tune['eval_loss_end']:.4f}", file=sys.stderr)

    adapter = run / "adapter.gguf"
    qs = held[: a.limit_eval] if a.limit_eval else held
    scores = {"base": [], "tuned": []}
    samples = []
    t0 = time.time()
    for i, r in enumerate(qs):
        base = answer(a.lorag, r["q"], None, a.max_tokens)
        tuned = answer(a.lorag, r["q"], adapter, a.max_tokens)
        sb, st = rouge_l(base, r["a"]), rouge_l(tuned, r["a"])
        scores["base"].append(sb)
        scores["tuned"].append(st)
        if i < 5:
            samples.append({"q": r["q"], "gold": r["a"], "base": base, "tuned": tuned,
                            "rouge_l_base": round(sb, 4), "rouge_l_tuned": round(st, 4)})
        print(f"[{i + 1}/{len(qs)}] ROUGE-L base {sb:.3f} tuned {st:.3f}", file=sys.stderr)
    gen_s = time.time() - t0
    mean = lambda v: sum(v) / len(v) if v else 0.0
    result = {
        "model": tune["model"],
        "data": str(src),
        "split": {"seed": a.seed, "train": len(train), "heldout": len(held), "scored": len(qs)},
        "tune": {k: tune[k] for k in ["steps", "train_loss_start", "train_loss_end", "tokens_per_s", "seconds", "qlora", "lora"]},
        "options": {"lr": a.lr, "rank": a.rank, "batch": a.batch, "max_seq": a.max_seq,
                    "steps": a.steps, "epochs": a.epochs},
        "eval_loss": {"base": tune["eval_loss_start"], "tuned": tune["eval_loss_end"]},
        "rouge_l": {"base": round(mean(scores["base"]), 4), "tuned": round(mean(scores["tuned"]), 4),
                    "tuned_better_on": sum(t > b for b, t in zip(scores["base"], scores["tuned"]))},
        "generation_seconds": round(gen_s, 1),
        "samples": samples,
        "run": str(run),
    }
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ["split", "tune", "eval_loss", "rouge_l", "generation_seconds"]}, indent=2))


if __name__ == "__main__":
    main()
