#!/usr/bin/env python3
"""Reference speed of sentence-transformers for `braid-bench embed`.

Embeds the same passages (one per line of INPUTS), in the same consecutive batches, with the
reference implementation of all-MiniLM-L6-v2 loaded from the same local directory, and writes
sentences/second per batch size as JSON:

    {"batch": {"1": 80.1, "8": ...}, "torch": "2.x", "sentence_transformers": "5.x", "threads": 2}

Needs torch + sentence-transformers (multi-GB): `BENCH_REFERENCE=1 make bench` installs them into
.braid/venv-bench; CI never runs this.
"""

import argparse
import json
import time

import torch
from sentence_transformers import SentenceTransformer
import sentence_transformers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--batches", default="1,8,32,128")
    args = parser.parse_args()

    with open(args.inputs, encoding="utf-8") as f:
        texts = [line.rstrip("\n") for line in f if line.strip()]
    model = SentenceTransformer(args.model_dir, device="cpu")
    model.max_seq_length = 256
    model.encode(texts[:8], batch_size=8)  # warm-up

    result = {
        "batch": {},
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "threads": torch.get_num_threads(),
        "sentences": len(texts),
    }
    with torch.inference_mode():
        for batch in [int(b) for b in args.batches.split(",")]:
            started = time.perf_counter()
            for i in range(0, len(texts), batch):
                model.encode(texts[i : i + batch], batch_size=batch, normalize_embeddings=True)
            rate = len(texts) / (time.perf_counter() - started)
            result["batch"][str(batch)] = rate
            print(f"sentence-transformers: batch {batch}: {rate:.1f} sentences/s", flush=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
