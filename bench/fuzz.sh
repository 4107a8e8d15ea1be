#!/usr/bin/env bash
# Seeded mutation fuzzing at scale (stable Rust, no cargo-fuzz): the suite's fuzz tests
# (crates/lorag-ingest/tests/fuzz.rs: txt md html csv json jsonl pdf docx sqlite;
# crates/lorag-gguf/tests/fuzz.rs: tiny models and a LoRA; crates/lorag-train/tests/fuzz.rs:
# the training JSONL of tune and rag-data; crates/lorag-eval/tests/fuzz.rs: the Q&A file of
# eval, JSONL, CSV and TSV; the harness is crates/lorag-fuzz) with many more cases per target
# and several seeds, then the #[ignore]d one: the real Debian FAQ PDF mutated.
# Every case must end without a panic, within LORAG_FUZZ_TIMEOUT_S (20 s), holding a bounded
# number of bytes (a counting allocator); a failing input is kept under bench/out/fuzz/failures.
#
# Usage: bench/fuzz.sh [--cases N] [--seeds "S1 S2 ..."] [--faq-pdf N] [--release]
#   --cases    cases per target and seed (default 20000; the suite runs 250-1500)
#   --seeds    seeds to run (default "1 2")
#   --faq-pdf  mutated Debian FAQ PDFs (default 100; each takes ~0.1-1 s)
#   --release  build with the release profile (default: the test profile, whose dependencies
#              are already optimised, see [profile.dev.package."*"])
# Needs the Debian FAQ (scripts/setup.sh installs debian-faq).
set -euo pipefail
cd "$(dirname "$0")/.."
CASES=20000
SEEDS="1 2"
FAQ=100
PROFILE=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cases) CASES=$2; shift 2 ;;
    --seeds) SEEDS=$2; shift 2 ;;
    --faq-pdf) FAQ=$2; shift 2 ;;
    --release) PROFILE=(--release); shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
OUT=bench/out/fuzz
mkdir -p "$OUT"
export LORAG_FUZZ_OUT="$PWD/$OUT/failures"
status=0
started=$(date +%s)
for seed in $SEEDS; do
  echo "== seed $seed: $CASES cases per target" >&2
  LORAG_FUZZ_SEED=$seed LORAG_FUZZ_CASES=$CASES \
    cargo test "${PROFILE[@]}" -p lorag-ingest -p lorag-gguf -p lorag-train -p lorag-eval \
    --test fuzz -- --nocapture \
    >"$OUT/seed-$seed.log" 2>&1 || status=1
  grep -E '^(fuzz [a-z-]+: [0-9]+ cases|gguf fuzz)|panicked|FAILED' "$OUT/seed-$seed.log" || true
done
echo "== the Debian FAQ PDF, $FAQ mutations" >&2
LORAG_FUZZ_FAQ_PDF_CASES=$FAQ \
  cargo test "${PROFILE[@]}" -p lorag-ingest --test fuzz fuzz_debian_faq_pdf -- --ignored --nocapture \
  >"$OUT/faq-pdf.log" 2>&1 || status=1
grep -E '^fuzz faq-pdf|panicked|FAILED' "$OUT/faq-pdf.log" || true
# Totals over every log: cases run (and in how many target runs), failures (panic, hang,
# memory).
cat "$OUT"/seed-*.log "$OUT/faq-pdf.log" | awk '
  /^fuzz [a-z-]+: [0-9]+ cases/ { n += $3; f += $9; t += 1 }
  /^gguf fuzz: [0-9]+ cases/ { n += $3; t += 1 }
  /panicked at/ { p += 1 }
  END { printf "total: %d cases run in %d target runs, %d failing cases, %d test panics (see bench/out/fuzz/*.log)\n", n, t, f, p }' || true
echo "took $(( $(date +%s) - started )) s; exit $status" >&2
exit $status
