#!/usr/bin/env bash
# `lorag eval` end to end: base, RAG, fine-tuned and RAG + fine-tuned on held-out questions, on
# the construction-law FAQ and on SQuAD-shifts new_wiki, for SmolLM2-135M and Qwen2.5-0.5B.
#   bench/eval.sh            (env: N questions per test split (60), BUDGET training minutes per
#                             run (10), or STEPS training steps per adapter in its place (to
#                             repeat a run: its results.json has options.train_steps), MODELS,
#                             DATASETS)
# Each run's report is bench/out/eval/<dataset>-<model>/report.html; a table of every run's
# figures and recommendation is printed at the end. A stopped run resumes from its cache.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
BIN="${CARGO_TARGET_DIR:-target}/release/lorag"
MODELS_DIR="${LORAG_MODELS:-$HOME/.local/share/lorag/models}"
"$BIN" models fetch qwen2.5-coder-0.5b-instruct >&2
read -r FAQ WIKI < <(python3 bench/eval_data.py --models "$MODELS_DIR")
N="${N:-60}"; BUDGET="${BUDGET:-10}"
if [ -n "${STEPS:-}" ]; then train=(--train-steps "$STEPS"); else train=(--budget "$BUDGET"); fi
MODELS="${MODELS:-smollm2-135m-instruct qwen2.5-coder-0.5b-instruct}"
DATASETS="${DATASETS:-faq new_wiki}"
for ds in $DATASETS; do
  dir=$FAQ; style=()
  if [ "$ds" = new_wiki ]; then dir=$WIKI; style=(--style "Answer with a short phrase from the sources."); fi
  if [ ! -e "$dir/kb/kb.sqlite" ]; then "$BIN" ingest "$dir/docs" --kb "$dir/kb" --json >/dev/null; fi
  for m in $MODELS; do
    out="bench/out/eval/$ds-$m"
    echo "== $ds, $m" >&2
    "$BIN" eval --kb "$dir/kb" --qa "$dir/qa.jsonl" --out "$out" --model "$m" \
      --max-questions "$N" "${train[@]}" --max-tokens 64 "${style[@]}" >&2
    if [ "$ds" = new_wiki ]; then
      # The same questions through bench/rag.py (`lorag ask`, one process, same KB, model, k,
      # style and answer budget): its RAG figures must agree with the eval's rag route, which
      # measures the model as given (so: without the adapter `lorag ask` ships for SmolLM2).
      python3 -c 'import json,sys; [print(json.dumps({"id": q["id"]})) for q in json.load(open(sys.argv[1]))["questions"] if not q["held_out"]]' \
        "$out/results.json" > "$out/rag-sh-ids.jsonl"
      python3 bench/rag.py --lorag "$BIN" --member new_wiki --ids "$out/rag-sh-ids.jsonl" --kb "$dir/kb" \
        --unanswerable 0 --max-tokens 64 --model "$m" --no-default-adapter --out "$out/rag-sh" --json-out "$out/rag-sh.json" >&2
    fi
  done
done
python3 - "$DATASETS" "$MODELS" <<'PY'
import json, sys
for ds in sys.argv[1].split():
    for m in sys.argv[2].split():
        r = json.load(open(f"bench/out/eval/{ds}-{m}/results.json"))
        print(f"\n## {ds}, {m}: {r['split']['test']} test questions, {r['split']['train']} to train on")
        print(f"{'route':8} {'F1':>16} {'ROUGE-L':>8} {'sim':>6} {'gold cited':>10} {'supported':>9} {'refuse ok':>9} {'refuse bad':>10} {'TTFT p50':>9}")
        for name, rt in r["routes"].items():
            g = lambda k: rt["metrics"].get(k)
            f = lambda k: f"{100*g(k)['value']:.1f}" if g(k) else "-"
            f1 = g("f1")
            print(f"{name:8} {100*f1['value']:5.1f} [{100*f1['low']:4.1f},{100*f1['high']:4.1f}] {f('rouge_l'):>8} {f('similarity'):>6} "
                  f"{f('gold_cited'):>10} {f('supported_share'):>9} {f('correct_refusal'):>9} {f('false_refusal'):>10} "
                  f"{rt['latency']['ttft_ms']['p50']/1000:8.2f}s")
        print("recommendation:", r["recommendation"]["text"])
        try:
            sh = json.load(open(f"bench/out/eval/{ds}-{m}/rag-sh.json"))
        except FileNotFoundError:
            continue
        ev = {q["id"]: q["answers"]["rag"]["text"] for q in r["questions"] if not q["held_out"]}
        same = sum(ev.get(x["id"]) == x["rag"] for x in sh["answers"])
        evb = {q["id"]: q["answers"]["base"]["text"] for q in r["questions"] if not q["held_out"] and "base" in q["answers"]}
        same_b = sum(evb.get(x["id"]) == x["no_rag"] for x in sh["answers"])
        print(f"bench/rag.py on the same {sh['questions']} questions: RAG F1 {sh['rag_f1']:.1f} (eval's rag "
              f"{100*r['routes']['rag']['metrics']['f1']['value']:.1f}), gold cited {100*sh['gold_cited']:.1f}% "
              f"(eval's {100*(r['routes']['rag']['metrics'].get('gold_cited') or {}).get('value', float('nan')):.1f}%), "
              f"refusals {100*sh['refused_answerable']:.1f}%; the same answer text for {same} of {len(sh['answers'])}; "
              f"no-RAG F1 {sh['no_rag_f1']:.1f} (eval's base {100*r['routes']['base']['metrics']['f1']['value']:.1f}), same text for {same_b}")
PY
