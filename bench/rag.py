#!/usr/bin/env python3
"""RAG against no-RAG on SQuAD v1.1 dev, same model, greedy: answer token-F1 and exact match,
how often the gold paragraph is among the cited (and the given) sources, the refusal rate on
questions whose paragraph was left out of the KB (and the false-refusal rate on answerable ones),
the best-similarity distributions that calibrate the refusal threshold, and latency for k = 4.
Run through bench/rag.sh."""
import argparse
import collections
import hashlib
import json
import os
import random
import re
import shutil
import string
import subprocess
import statistics
import threading

import squad_data

STYLE = "Answer with a short phrase from the sources."


def normalize(s):
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def f1(pred, gold):
    p, g = normalize(pred).split(), normalize(gold).split()
    common = collections.Counter(p) & collections.Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    prec, rec = same / len(p), same / len(g)
    return 2 * prec * rec / (prec + rec)


def clean(answer):
    answer = re.sub(r"\[\d+(,\s*\d+)*\]", "", answer)
    return answer.replace("The knowledge base does not contain the answer.", "").strip()


def ask_many(lorag, questions, kb=None, k=4, max_tokens=48, model=None, lora=None, label="",
             no_default_adapter=False):
    if not questions:
        return []
    """One lorag process answers all questions (one JSON line each); /reset keeps them independent."""
    args = [lorag, "ask", "--json", "-k", str(k), "--max-tokens", str(max_tokens), "--style", STYLE]
    if kb:
        args += ["--kb", kb]
    if model:
        args += ["--model", model]
    if lora:
        args += ["--lora", lora]
    if no_default_adapter:
        args += ["--no-default-adapter"]
    stdin = "".join(q.replace("\n", " ") + "\n/reset\n" for q in questions)
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    # Feed stdin from a thread so that a full pipe cannot block either side.
    threading.Thread(target=lambda: (p.stdin.write(stdin), p.stdin.close()), daemon=True).start()
    res = []
    for line in p.stdout:
        res.append(json.loads(line))
        if len(res) % 25 == 0:
            print(f"  {label}: {len(res)}/{len(questions)}", flush=True)
    if p.wait() != 0:
        raise SystemExit(f"lorag ask exited with {p.returncode} after {len(res)} answers ({label})")
    assert len(res) == len(questions), (len(res), len(questions))
    return res


def file_sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(lorag, *parts):
    """A key for cached results: the binary, every model/adapter/data file named in `parts`
    (hashed by content) and every other option, so that a figure never comes from a stale run."""
    h = hashlib.sha256(file_sha(lorag).encode())
    for p in parts:
        if p and isinstance(p, str) and os.path.isfile(p):
            h.update(file_sha(p).encode())
        else:
            h.update(json.dumps(p, sort_keys=True).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def model_file(lorag, model):
    """The GGUF a --model value names (a path, or a catalogue name resolved by `lorag models list`)."""
    if model and os.path.isfile(model):
        return model
    out = subprocess.run([lorag, "models", "list", "--json"], check=True, capture_output=True, text=True).stdout
    name = model or "smollm2-135m-instruct"
    return next(m["path"] for m in json.loads(out)["models"] if m["name"] == name)


def cached(path, make):
    """Results of one phase are kept in `path` (whose folder is named by a fingerprint of what
    produced them), so that an interrupted run resumes where it stopped."""
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    res = make()
    with open(path + ".partial", "w") as f:
        json.dump(res, f)
    os.rename(path + ".partial", path)
    return res


def ensure_kb(lorag, paras, docs, kb, leave_out=()):
    if os.path.exists(kb):
        return
    shutil.rmtree(docs, ignore_errors=True)
    os.makedirs(docs)
    for pid, title, ctx in paras:
        if pid in leave_out:
            continue
        with open(os.path.join(docs, f"p{pid:04}.txt"), "w") as f:
            f.write(f"{title}\n\n{ctx}\n")
    r = json.loads(subprocess.run([lorag, "ingest", docs, "--kb", kb, "--json"], check=True,
                                  capture_output=True, text=True).stdout)
    print(f"built {kb}: {r['added']} documents, {r['chunks']} chunks in {r['seconds']:.0f} s", flush=True)


def citation_figures(results, sample):
    """Citation precision (the share of cited sources whose text holds a gold answer) and recall
    (the share of answers citing such a source, among those where a given source holds one), for
    the citations as the model wrote them and as lorag's check left them (moved to the source
    that supports the claim, auto-cited, invalid ones removed). The model's own citations are
    read back from each sentence's `moved_from` / `auto_cited` and the answer's invalid numbers."""
    def holds(text, golds):
        t = normalize(text)
        return any(normalize(g) and normalize(g) in t for g in golds)

    out = {}
    for which in ["model", "checked"]:
        hits = total = found = answerable = 0
        for r, q in zip(results, sample):
            src = r.get("sources", [])
            good = {n for n in range(1, len(src) + 1) if holds(src[n - 1]["text"], q[2])}
            ns = set()
            for s in r.get("sentences", []):
                if which == "checked":
                    ns.update(s["cites"])
                elif not s["auto_cited"]:
                    ns.update(s["moved_from"] or s["cites"])
            if which == "model":
                ns.update(r.get("invalid_citations", []))
            hits += len(ns & good)
            total += len(ns)
            if good:
                answerable += 1
                found += bool(ns & good)
        out[which] = {"precision": hits / total if total else None, "citations": total,
                      "recall": found / answerable if answerable else None}
    out["moved_sentences"] = sum(bool(s["moved_from"]) for r in results for s in r.get("sentences", []))
    return out


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lorag", required=True)
    ap.add_argument("--out", default=os.path.join(squad_data.HERE, "out", "squad_rag"))
    ap.add_argument("--n", type=int, default=300, help="answerable questions")
    ap.add_argument("--unanswerable", type=int, default=100)
    ap.add_argument("--model", help="model path or catalogue name (default: lorag's, SmolLM2)")
    ap.add_argument("--lora", help="a GGUF LoRA adapter for every phase (RAG, no RAG, left out), e.g. from bench/rag_tune.py")
    ap.add_argument("--no-default-adapter", action="store_true",
                    help="the model as given: without the grounded adapter lorag ships for SmolLM2 (the \"before\")")
    ap.add_argument("--member", choices=["dev", "new_wiki"], default="dev",
                    help="the SQuAD file: v1.1 dev (default) or SQuAD-shifts new_wiki")
    ap.add_argument("--ids", help="answer exactly these questions (a JSONL file with an \"id\" per line, e.g. "
                    "the ids `lorag eval` answered): the RAG figures of both tools on the same questions")
    ap.add_argument("--kb", help="an existing KB of the member's paragraphs (p0000.txt, ... as bench/eval_data.py "
                    "writes them) instead of building one")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--json-out", help="also write the figures (and every answer) to this JSON file")
    ap.add_argument("--results", help="folder for the answers of each phase (default: OUT/results-<fingerprint of binary, model, adapter, questions, options>); "
                    "phases already there are reused, delete it to measure again")
    a = ap.parse_args()

    paras, questions = squad_data.load(squad_data.NEW_WIKI if a.member == "new_wiki" else squad_data.MEMBER)
    rng = random.Random(7)
    by_para = collections.defaultdict(list)
    for q in questions:
        by_para[q[3]].append(q)
    # Questions whose paragraph stays in the KB, and 100 paragraphs left out (one question each).
    pids = list(by_para)
    rng.shuffle(pids)
    left_out = set(pids[: a.unanswerable])
    unanswerable = [by_para[p][0] for p in sorted(left_out)]
    pool = [q for q in questions if q[3] not in left_out]
    if a.ids:
        with open(a.ids) as f:
            wanted = [json.loads(line)["id"] for line in f if line.strip()]
        by_id = {q[0]: q for q in questions}
        missing = [i for i in wanted if i not in by_id]
        if missing:
            raise SystemExit(f"{a.ids}: {len(missing)} id(s) not in the {a.member} questions, e.g. {missing[0]}")
        sample = [by_id[i] for i in wanted]
    else:
        sample = rng.sample(pool, a.n)

    os.makedirs(a.out, exist_ok=True)
    full_kb = a.kb or os.path.join(a.out, "kb_full")
    part_kb = os.path.join(a.out, f"kb_without_{a.unanswerable}")
    if not a.kb:
        ensure_kb(a.lorag, paras, os.path.join(a.out, "docs_full"), full_kb)
    if unanswerable:
        ensure_kb(a.lorag, paras, os.path.join(a.out, "docs_part"), part_kb, left_out)

    # Keyed by content: binary, model file, adapter file, KB, questions and options.
    key = fingerprint(a.lorag, model_file(a.lorag, a.model), a.lora, os.path.abspath(full_kb), a.member,
                      [q[0] for q in sample], [q[0] for q in unanswerable],
                      {"k": 4, "max_tokens": a.max_tokens, "style": STYLE,
                       "no_default_adapter": a.no_default_adapter})
    res_dir = a.results or os.path.join(a.out, f"results-{key}")
    os.makedirs(res_dir, exist_ok=True)
    qs = [q[1] for q in sample]
    rag = cached(os.path.join(res_dir, "rag.json"),
                 lambda: ask_many(a.lorag, qs, kb=full_kb, max_tokens=a.max_tokens, model=a.model,
                                  lora=a.lora, label="RAG", no_default_adapter=a.no_default_adapter))
    base = cached(os.path.join(res_dir, "no_rag.json"),
                  lambda: ask_many(a.lorag, qs, max_tokens=a.max_tokens, model=a.model, lora=a.lora,
                                   label="no RAG"))
    unans = cached(os.path.join(res_dir, "left_out.json"),
                   lambda: ask_many(a.lorag, [q[1] for q in unanswerable], kb=part_kb,
                                    max_tokens=a.max_tokens, model=a.model, lora=a.lora, label="left out",
                                    no_default_adapter=a.no_default_adapter))

    def scores(results):
        f, em = [], []
        for r, q in zip(results, sample):
            pred = clean(r["answer"])
            f.append(max(f1(pred, g) for g in q[2]))
            em.append(max(float(normalize(pred) == normalize(g)) for g in q[2]))
        return 100 * statistics.mean(f), 100 * statistics.mean(em)

    rf1, rem = scores(rag)
    bf1, bem = scores(base)
    gold = [f"p{q[3]:04}.txt" for q in sample]
    cited = sum(any(os.path.basename(c["source"]) == g for c in r["citations"]) for r, g in zip(rag, gold)) / len(sample)
    given = sum(any(os.path.basename(c["source"]) == g for c in r["sources"]) for r, g in zip(rag, gold)) / len(sample)
    refused_unans = sum(r["refused"] for r in unans) / max(1, len(unans))
    refused_ans = sum(r["refused"] for r in rag) / len(rag)
    cites = citation_figures(rag, sample)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"questions": len(sample), "rag_f1": rf1, "rag_em": rem, "no_rag_f1": bf1, "no_rag_em": bem,
                       "gold_given": given, "gold_cited": cited, "refused_answerable": refused_ans,
                       "refused_left_out": refused_unans if unans else None, "citations": cites,
                       "answers": [{"id": q[0], "rag": r["answer"], "no_rag": b["answer"]}
                                   for q, r, b in zip(sample, rag, base)]}, f, indent=1)

    name = "SQuAD-shifts new_wiki" if a.member == "new_wiki" else "SQuAD v1.1 dev"
    shipped = sorted({r.get("default_adapter") for r in rag if r.get("default_adapter")})
    print(f"\n{name}, {len(sample)} questions, KB of {len(paras)} paragraphs, "
          f"{a.model or 'SmolLM2-135M Q4_1'}{' + LoRA ' + a.lora if a.lora else ''}{' + ' + ', '.join(shipped) + ' (RAG)' if shipped else ''}, greedy, k=4 (answers in {res_dir})")
    print(f"{'':28} {'token F1':>9} {'EM':>7}")
    print(f"{'lorag ask --kb (RAG)':28} {rf1:9.1f} {rem:7.1f}")
    print(f"{'lorag ask (no RAG)':28} {bf1:9.1f} {bem:7.1f}")
    print(f"RAG - no RAG: {rf1 - bf1:+.1f} F1 points (goal >= +15)")
    for name, results in [("RAG", rag), ("no RAG", base)]:
        preds = [normalize(clean(r["answer"])) for r in results]
        contains = sum(any(normalize(g) in p for g in q[2]) for p, q in zip(preds, sample)) / len(sample)
        print(f"{name} answers: {statistics.mean(len(p.split()) for p in preds):.1f} words on average, "
              f"{100 * contains:.1f}% contain a gold answer")
    print(f"gold paragraph among the sources given: {100 * given:.1f}%, among the sources cited: {100 * cited:.1f}%")
    for which, label in [("model", "as the model wrote them"), ("checked", "after lorag's check")]:
        c = cites[which]
        fmt = lambda x: "-" if x is None else f"{100 * x:.1f}%"
        print(f"citations {label}: {c['citations']}, precision {fmt(c['precision'])} (the cited source holds a "
              f"gold answer), recall {fmt(c['recall'])} (answers citing such a source, of those given one)")
    print(f"sentences whose citation lorag moved to another source: {cites['moved_sentences']}")
    print(f"refusals: {100 * refused_unans:.1f}% of {len(unans)} questions whose paragraph is not in the KB; "
          f"{100 * refused_ans:.1f}% of the answerable ones")
    if not unans:
        return
    # The refusal signal (lorag's `evidence` score) and, for comparison, the best passage similarity:
    # how well each separates answerable from left-out questions, and thresholds calibrated on one
    # half (even positions) and checked on the other.
    def balanced(t, ans, out):
        return (sum(x >= t for x in ans) / len(ans) + sum(x < t for x in out) / len(out)) / 2

    def auc(ans, out):
        return sum((x > y) + 0.5 * (x == y) for x in ans for y in out) / (len(ans) * len(out))

    grid = [t / 100 for t in range(5, 95)]
    for key in ["evidence", "best_similarity"]:
        sa, su = [r.get(key, 0.0) for r in rag], [r.get(key, 0.0) for r in unans]
        print(f"{key}: answerable median {statistics.median(sa):.3f} (p10 {pct(sa, .1):.3f}); left out median "
              f"{statistics.median(su):.3f} (p90 {pct(su, .9):.3f}); AUC {auc(sa, su):.3f}")
        ha, hu = sa[1::2], su[1::2]
        for rule, t in [
            ("best balanced accuracy on half A", max(grid, key=lambda t: balanced(t, sa[::2], su[::2]))),
            ("highest with <= 10% false refusals on half A",
             max([t for t in grid if sum(x < t for x in sa[::2]) <= 0.10 * len(sa[::2])], default=grid[0])),
        ]:
            print(f"  threshold {t:.2f} ({rule}): on half B it refuses "
                  f"{100 * sum(x < t for x in hu) / len(hu):.0f}% of left-out and "
                  f"{100 * sum(x < t for x in ha) / len(ha):.0f}% of answerable questions")
    for name, key in [("retrieval", "retrieval_ms"), ("time to first token", "ttft_ms"), ("total", "total_ms")]:
        xs = [r[key] for r in rag if not r["refused"]]
        print(f"{name:20} median {statistics.median(xs):7.1f} ms   p90 {pct(xs, .9):7.1f} ms")


if __name__ == "__main__":
    main()
