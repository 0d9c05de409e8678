#!/usr/bin/env python3
"""The sentence-transformers reference for `braid-bench embed`, as a worker process.

`braid-bench embed` starts this script once and interleaves its runs with Braid's in the same
rounds, so both see the same machine load. Protocol (one JSON object per line on stdout):

    start-up: loads all-MiniLM-L6-v2 from MODEL_DIR (outside any timed region), warms up at
              every batch size, then prints {"ready": true, "torch": ..., "threads": N, ...}
    stdin "B": embeds every passage of INPUTS (one per line) in consecutive batches of B,
              timed from the first batch to the last vector, and prints
              {"batch": B, "seconds": S, "sentences": N}
    stdin EOF: exits

Needs torch + sentence-transformers (multi-GB): `BENCH_REFERENCE=1 make bench` installs them into
.braid/venv-bench; CI never runs this.
"""

import argparse
import json
import sys
import time

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer


def say(obj) -> None:
    print(json.dumps(obj), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--batches", default="1,8,32,128")
    args = parser.parse_args()

    with open(args.inputs, encoding="utf-8") as f:
        texts = [line.rstrip("\n") for line in f if line.strip()]
    model = SentenceTransformer(args.model_dir, device="cpu")
    model.max_seq_length = 256

    def run(batch: int, items) -> None:
        for i in range(0, len(items), batch):
            model.encode(
                items[i : i + batch],
                batch_size=batch,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )

    with torch.inference_mode():
        for batch in [int(b) for b in args.batches.split(",")]:
            run(batch, texts[: max(batch, 8)])  # warm-up, untimed
        say(
            {
                "ready": True,
                "torch": torch.__version__,
                "sentence_transformers": sentence_transformers.__version__,
                "threads": torch.get_num_threads(),
                "sentences": len(texts),
            }
        )
        for line in sys.stdin:
            if not line.strip():
                continue
            batch = int(line)
            started = time.perf_counter()
            run(batch, texts)
            say({"batch": batch, "seconds": time.perf_counter() - started, "sentences": len(texts)})


if __name__ == "__main__":
    main()
