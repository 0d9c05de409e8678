#!/usr/bin/env python3
"""Compares the int8 graph of quantize_onnx.py (activations per token, 7-bit weights) with the
per-tensor scheme Braid used before (ONNX Runtime's `quantize_dynamic`: activations with one
scale per input tensor, i.e. per batch; 8-bit weights per channel) and with fp32, in one run:

- batch dependence: each text alone vs inside shuffled batches of 8 (lowest cosine);
- closeness to fp32 (mean and lowest cosine over queries and passages);
- CPU per text (process time, one ONNX Runtime thread): queries alone, queries in batches of
  8, passages in batches of 16; the schemes interleaved in every round, medians over rounds.

Usage: bench_int8_schemes.py MODEL_DIR SCIFACT_DIR [ROUNDS]
Needs onnx, numpy, onnxruntime (with onnxruntime.quantization) and tokenizers, e.g.
    python3 -m pip download --no-deps -d /tmp/tok tokenizers && python3 -m zipfile -e /tmp/tok/tokenizers-*.whl /tmp/tok/lib
    PYTHONPATH=/tmp/tok/lib:.braid/pytools-ort:.braid/pytools python3 deploy/scripts/bench_int8_schemes.py \\
        .braid/models/all-MiniLM-L6-v2 ../shared/eval/scifact
(`make bench` unpacks onnxruntime into .braid/pytools-ort.)
"""

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.shape_inference import quant_pre_process
from tokenizers import Tokenizer


def per_tensor_graph(source: Path, out: Path) -> None:
    """The scheme before per-token quantisation (deploy/scripts/quantize_onnx.py until 2026-12)."""
    with tempfile.TemporaryDirectory() as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8,
                         per_channel=True, op_types_to_quantize=["MatMul"])


def main() -> None:
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    model_dir, scifact = Path(sys.argv[1]), Path(sys.argv[2])
    rounds = int(sys.argv[3]) if len(sys.argv) == 4 else 7
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(256)
    queries = [json.loads(l)["text"] for l in open(scifact / "queries.jsonl")][:120]
    docs = [json.loads(l) for l in open(scifact / "corpus.jsonl")][:64]
    passages = [(d.get("title", "") + " " + d["text"])[:800] for d in docs]

    def batch(texts):
        encs = [tok.encode(t) for t in texts]
        cols = max(len(e.ids) for e in encs)
        ids = np.zeros((len(texts), cols), dtype=np.int64)
        mask = np.zeros((len(texts), cols), dtype=np.int64)
        for i, e in enumerate(encs):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def session(path):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    with tempfile.TemporaryDirectory() as work:
        old = Path(work) / "per_tensor.int8.onnx"
        per_tensor_graph(model_dir / "model.onnx", old)
        graphs = {
            "fp32": session(model_dir / "model.onnx"),
            "int8 per tensor (before)": session(old),
            "int8 per token (now)": session(model_dir / "model.int8.onnx"),
        }
    texts = queries[:60] + passages[:40]
    fp32_alone = [graphs["fp32"].run(None, batch([t]))[0][0] for t in texts]
    rng = np.random.default_rng(0)
    print("| graph | alone vs in a batch of 8 (lowest cosine) | vs fp32: mean / lowest cosine |")
    print("| --- | --- | --- |")
    for name, s in graphs.items():
        alone = [s.run(None, batch([t]))[0][0] for t in texts]
        worst = 1.0
        for _ in range(3):
            order = rng.permutation(len(texts))
            for i in range(0, len(order), 8):
                idx = order[i : i + 8]
                out = s.run(None, batch([texts[j] for j in idx]))[0]
                worst = min(worst, min(float(np.dot(out[k], alone[j])) for k, j in enumerate(idx)))
        close = [float(np.dot(a, f)) for a, f in zip(alone, fp32_alone)]
        print(f"| {name} | {worst:.7f} | {np.mean(close):.5f} / {min(close):.5f} |")

    q1 = [batch([q]) for q in queries[:40]]
    q8 = [batch(queries[i : i + 8]) for i in range(0, 40, 8)]
    p16 = [batch(passages[i : i + 16]) for i in range(0, 64, 16)]
    times = {name: {"q1": [], "q8": [], "p16": []} for name in graphs}
    for s in graphs.values():
        s.run(None, q1[0])
        s.run(None, p16[0])
    for _ in range(rounds):
        for name, s in graphs.items():
            for key, batches, n in (("q1", q1, 40), ("q8", q8, 40), ("p16", p16, 64)):
                t = time.process_time()
                for b in batches:
                    s.run(None, b)
                times[name][key].append((time.process_time() - t) / n * 1000)
    print()
    print(f"CPU ms per text, median (min-max) of {rounds} interleaved rounds, one thread:")
    print()
    print("| graph | query alone | queries in batches of 8 | passages in batches of 16 |")
    print("| --- | --- | --- | --- |")
    for name, t in times.items():
        cells = " | ".join(f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})" for v in t.values())
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
