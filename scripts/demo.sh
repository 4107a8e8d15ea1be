#!/usr/bin/env bash
# The demo: set up (packages, build, models), build a knowledge base from a real industry data set
# (503 Q&A on Swedish construction law), and ask it two questions with cited answers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BIN="${CARGO_TARGET_DIR:-target}/release/lorag"
FAQ="$("$BIN" models list --json | python3 -c 'import json,sys; print(next(m["path"] for m in json.load(sys.stdin)["models"] if m["name"]=="construction-faq"))')"
KB="${LORAG_DEMO_KB:-data/demo-kb}"
echo
echo "\$ lorag ingest $FAQ --kb $KB"
"$BIN" ingest "$FAQ" --kb "$KB"
"$BIN" kb stats --kb "$KB"
for q in "How long does it take to get a building permit?" "Do I need a building permit for a deck?"; do
  # Extractive first: the record's own sentence, cited (every word traceable), then the model's
  # own answer with its checked citations.
  echo
  echo "\$ lorag ask \"$q\" --kb $KB --quote"
  "$BIN" ask "$q" --kb "$KB" --quote
  echo
  echo "\$ lorag ask \"$q\" --kb $KB"
  "$BIN" ask "$q" --kb "$KB"
done
