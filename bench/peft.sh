#!/usr/bin/env bash
# PEFT interop through Python (crates/lorag-train/tests/peft_python.rs, #[ignore]d in the suite
# because torch + transformers + peft are ~3 GB): installs that stack from PyPI into bench/.venv,
# then runs the three tests (tiny llama, phi3, qwen2 + PEFT adapters against transformers' logits).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=bench/.venv
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import torch, transformers, peft, safetensors" 2>/dev/null || \
  "$VENV/bin/python" -m pip install -q torch transformers peft safetensors >&2
LORAG_PYTHON="$PWD/$VENV/bin/python" cargo test --release -p lorag-train --test peft_python -- --ignored
