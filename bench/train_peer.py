"""LoRA training throughput and memory: lorag (candle) against PyTorch + transformers + peft.

Driver (what bench/train.sh runs): prepares the data once with lorag's `train_bench prepare`
(the FAQ rendered with the model's chat template and tokenized by llama.cpp, packed into rows of
seq + 1 tokens; the per-step batches are dumped so that both sides train on the same token ids;
the dequantized base is written as a Hugging Face folder), then runs, as separate child processes,
each contender for the same steps:

  peer        PyTorch + peft LoRA on the f32 HF folder (same weights lorag dequantizes)
  lorag lora  lorag LoRA, base dequantized to f32 at load
  lorag qlora lorag QLoRA, base kept in Q4_1

Same rank / alpha / targets (all linear layers), no dropout, AdamW (0.9, 0.999, 1e-8, no decay),
constant lr, clip 1.0, batch x seq tokens per step, all cores. Tokens/s is steady state: the
first step (warm-up) is excluded. Peak RSS is the child's ru_maxrss (os.wait4). The first-step
loss of all three must agree (the adapters start as no-ops, so it is the base model's loss on the
same batch): a check that both sides compute the same thing.

  python bench/train_peer.py --bin TRAIN_BENCH --model GGUF --data JSONL [--runs 3] ...
  python bench/train_peer.py --worker --hf DIR --batches FILE ...   (the peer, one run)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def worker(a) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(a.hf, dtype=torch.float32)
    cfg = LoraConfig(
        r=a.rank,
        lora_alpha=a.alpha,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    load_s = time.perf_counter() - t0
    with open(a.batches) as f:
        batches = json.load(f)
    secs, losses = [], []
    for b in batches[: a.steps]:
        ids = torch.tensor(b["inputs"], dtype=torch.long)
        bsz, t = ids.shape
        tgt = torch.tensor(b["targets"], dtype=torch.long).view(bsz, t)
        mask = torch.tensor(b["mask"], dtype=torch.bool).view(bsz, t)
        labels = torch.where(mask, tgt, torch.full_like(tgt, -100))
        s = time.perf_counter()
        logits = model(input_ids=ids).logits
        # targets are already the next tokens (no shift); mean over the reply tokens, as lorag
        loss = torch.nn.functional.cross_entropy(
            logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        secs.append(time.perf_counter() - s)
        losses.append(float(loss.detach()))
    print(
        json.dumps(
            {
                "who": "pytorch+peft lora",
                "step_seconds": secs,
                "losses": losses,
                "tokens_per_step": bsz * t,
                "load_seconds": load_s,
                "trainable_params": sum(p.numel() for p in params),
                "torch": torch.__version__,
            }
        )
    )


def run_child(cmd):
    """Run a contender; return (its JSON line, peak RSS in MiB, wall seconds)."""
    import tempfile

    t = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, ru = os.wait4(p.pid, 0)  # the child's own rusage: ru_maxrss in KiB
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        out, err = out.read(), err.read()
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{err[-3000:]}")
    line = [l for l in out.splitlines() if l.startswith("{")][-1]
    return json.loads(line), ru.ru_maxrss / 1024.0, time.perf_counter() - t


def steady_tok_s(r) -> float:
    s = r["step_seconds"][1:]
    return r["tokens_per_step"] * len(s) / sum(s)


def mmm(v):
    v = sorted(v)
    return v[0], statistics.median(v), v[-1]


def fmt(v, f="{:.0f}"):
    lo, med, hi = mmm(v)
    return f"{f.format(med)} ({f.format(lo)}–{f.format(hi)})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--bin", help="lorag's train_bench example binary")
    ap.add_argument("--model", help="the GGUF (SmolLM2-135M-Instruct Q4_1)")
    ap.add_argument("--data", help="JSONL conversations (the construction-law FAQ, Alpaca form)")
    ap.add_argument("--work", default="bench/out/train")
    ap.add_argument("--hf")
    ap.add_argument("--batches")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--only", default="peer,lora,qlora", help="comma list of contenders")
    a = ap.parse_args()
    if a.worker:
        return worker(a)

    os.makedirs(a.work, exist_ok=True)
    common = ["--seq", str(a.seq), "--batch", str(a.batch), "--steps", str(a.steps), "--seed", str(a.seed)]
    print(f"preparing data and the HF base in {a.work}", file=sys.stderr)
    subprocess.run(
        [a.bin, "prepare", "--model", a.model, "--data", a.data, "--out", a.work] + common,
        check=True,
    )
    cmds = {
        "peer": [sys.executable, __file__, "--worker", "--hf", f"{a.work}/hf",
                 "--batches", f"{a.work}/batches.json", "--rank", str(a.rank),
                 "--alpha", str(a.alpha), "--lr", str(a.lr), "--threads", str(a.threads)] + common,
    }
    for mode in ("lora", "qlora"):
        cmds[mode] = [a.bin, "train", "--model", a.model, "--work", a.work, "--mode", mode,
                      "--rank", str(a.rank), "--alpha", str(a.alpha), "--lr", str(a.lr)] + common
    names = [n for n in a.only.split(",") if n]
    res = {n: [] for n in names}
    for run in range(a.runs):
        for n in names:
            r, rss, wall = run_child(cmds[n])
            r.update(rss_mib=rss, wall_s=wall, tok_s=steady_tok_s(r))
            res[n].append(r)
            print(f"run {run + 1}/{a.runs} {r['who']:<18} {r['tok_s']:7.0f} tok/s  peak RSS {rss:6.0f} MiB  "
                  f"loss {r['losses'][0]:.4f} -> {r['losses'][-1]:.4f}", file=sys.stderr)
    with open(f"{a.work}/results.json", "w") as f:
        json.dump({"args": vars(a), "results": res}, f, indent=1)

    tok = a.batch * a.seq
    print(f"\nSmolLM2-135M-Instruct, LoRA r={a.rank} alpha={a.alpha:g} on all linear layers, batch {a.batch} x seq {a.seq} "
          f"= {tok} tokens/step, {a.steps} steps (first excluded), {a.threads} threads, {a.runs} runs: median (min–max)")
    print(f"| {'contender':<20} | {'tokens/s':<18} | {'peak RSS MiB':<18} | {'s/step':<18} | step-1 loss | last loss |")
    print(f"|{'-' * 22}|{'-' * 20}|{'-' * 20}|{'-' * 20}|{'-' * 13}|{'-' * 11}|")
    for n in names:
        rs = res[n]
        print(f"| {rs[0]['who']:<20} | {fmt([r['tok_s'] for r in rs]):<18} | {fmt([r['rss_mib'] for r in rs]):<18} | "
              f"{fmt([statistics.mean(r['step_seconds'][1:]) for r in rs], '{:.2f}'):<18} | "
              f"{rs[0]['losses'][0]:11.4f} | {statistics.median(r['losses'][-1] for r in rs):9.4f} |")

    def ratio(x, y, key):
        # ratios of medians, and the range over the per-run pairs
        xs, ys = [r[key] for r in res[x]], [r[key] for r in res[y]]
        per = [p / q for p, q in zip(xs, ys)]
        return f"{statistics.median(xs) / statistics.median(ys):.2f}x (per run {min(per):.2f}–{max(per):.2f})"

    print()
    for ours in ("lora", "qlora"):
        if ours in res and "peer" in res:
            print(f"lorag {ours} / peer: speed {ratio(ours, 'peer', 'tok_s')}, memory {ratio(ours, 'peer', 'rss_mib')}")
    if "lora" in res and "qlora" in res:
        print(f"lorag qlora / lorag lora: speed {ratio('qlora', 'lora', 'tok_s')}, memory {ratio('qlora', 'lora', 'rss_mib')}")
    first = {n: res[n][0]["losses"][0] for n in names}
    spread = max(first.values()) - min(first.values())
    print(f"step-1 loss (base model, same batch) spread across contenders: {spread:.2e}")
    if spread > 1e-2:
        sys.exit("the contenders disagree on the first loss: they do not train on the same thing")


if __name__ == "__main__":
    main()
