#!/usr/bin/env python3
"""Reference vectors for lorag-embed's tests: fixed sentences embedded by sentence-transformers
(the real peer) from the same model folder, on CPU.

Writes crates/lorag-embed/tests/data/minilm_reference.json:
  {"model", "sentence_transformers", "max_seq_length", "sentences", "token_counts", "input_ids",
   "vectors", "cls_vectors"}
token_counts: tokens without special tokens and without truncation (what TokenCounter counts);
input_ids: what the model sees (special tokens, truncated to max_seq_length);
cls_vectors: the same transformer with CLS pooling instead of mean (tests the other pooling mode).
The file is committed; run through bench/embed.sh (or by hand) only when the sentences change.
"""
import argparse
import json
import os

import sentence_transformers
from sentence_transformers import SentenceTransformer

try:
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling
except ImportError:  # sentence-transformers < 6
    from sentence_transformers.models import Normalize, Pooling

LONG = (
    "The contractor shall carry out the works in accordance with the contract documents, the "
    "building permit and the applicable regulations, and shall notify the client in writing of "
    "any deviation, defect or delay as soon as it becomes known, stating its cause, its expected "
    "consequences for the time schedule and the contract sum, and the measures proposed. "
)
LONG2 = (
    "Section 7. Payment: the client pays each invoice within 30 days; 5 % is retained until the "
    "final inspection (slutbesiktning) has been approved, and interest of 8 % per year runs on "
    "late payments. Section 8. Liability: defects notified within 10 years, 2 months and 3 days! "
)

SENTENCES = [
    "a",
    "",
    "Hello, world!",
    "What is a building permit?",
    "Who is responsible for inspecting the construction site?",
    "The quick brown fox jumps over the lazy dog.",
    "Bygglov krävs för att uppföra en ny byggnad i Sverige.",
    "Die Baugenehmigung muss vor Baubeginn vorliegen; Änderungen sind anzuzeigen.",
    "Le maître d'ouvrage est responsable de la sécurité du chantier.",
    "東京の建設現場では安全管理が重要です。",
    "Строительное разрешение выдаётся муниципалитетом.",
    "emoji test 🏗️👷‍♀️🚧 and symbols ©®™ ≤ ≥ → ∑",
    "Invoice no. 2024-00731: 1,250.50 EUR due on 2024-12-31, VAT 25% (312.63 EUR).",
    "3.14159 2.71828 1.41421 0 -42 1e-9 0xDEADBEEF",
    "   leading and trailing whitespace   ",
    "UPPER CASE AND lower case AND MiXeD cAsE",
    "tab\tseparated\tvalues\nand a new line",
    "https://example.com/path?query=1&other=two#anchor user@example.org",
    "fn main() { println!(\"{}\", 1 + 2); }",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopic",
    "The inspector found that the load-bearing wall had been removed without a permit, "
    "so the municipality ordered the owner to restore it and imposed a fine.",
    "What happens if the contractor is late? The client may claim a penalty for each week of "
    "delay, up to the amount agreed in the contract, unless the delay was caused by the client.",
    LONG * 4,  # 260 tokens: just over max_seq_length (256), exercises truncation
    LONG2 * 8,  # different from the one above within its first 256 tokens
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="the sentence-transformers model folder")
    ap.add_argument("--out", default="crates/lorag-embed/tests/data/minilm_reference.json")
    a = ap.parse_args()

    m = SentenceTransformer(a.model, device="cpu")
    vecs = m.encode(SENTENCES, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    dim = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
    dim = dim()
    cls = SentenceTransformer(modules=[m[0], Pooling(dim, pooling_mode="cls"), Normalize()], device="cpu")
    cls_vecs = cls.encode(SENTENCES, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    tok = m.tokenizer
    counts = [len(tok(s, add_special_tokens=False, truncation=False)["input_ids"]) for s in SENTENCES]
    # sentence-transformers >= 6 renamed tokenize() to preprocess().
    features = getattr(m, "preprocess", m.tokenize)(SENTENCES)
    ids, mask = features["input_ids"], features["attention_mask"]
    input_ids = [[int(t) for t, k in zip(row, mrow) if k] for row, mrow in zip(ids.tolist(), mask.tolist())]
    assert max(counts) > m.max_seq_length, "a sentence must exceed max_seq_length"
    out = {
        "model": os.path.basename(os.path.normpath(a.model)),
        "sentence_transformers": sentence_transformers.__version__,
        "max_seq_length": m.max_seq_length,
        "sentences": SENTENCES,
        "token_counts": counts,
        "input_ids": input_ids,
        "vectors": [[round(float(x), 6) for x in v] for v in vecs],
        "cls_vectors": [[round(float(x), 6) for x in v] for v in cls_vecs],
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {a.out}: {len(SENTENCES)} sentences, dim {vecs.shape[1]}, "
          f"token counts {min(counts)}..{max(counts)} (max_seq_length {m.max_seq_length})")


if __name__ == "__main__":
    main()
