#!/usr/bin/env python3
"""ONNX Runtime session options for the embedding model, chosen by measurement.

Runs the model's graphs (fp32 `model.onnx`, int8 `model.int8.onnx`) under each candidate
setting and measures CPU time (user + system, every thread of this process) per token, on the
shapes the embedding service runs: one short query (16 tokens), a few merged queries (4 x 16),
a small document batch (4 x 96) and a large one (32 x 96). Settings are measured round-robin
over several rounds and each figure is the median, so a noisy neighbour hits all of them alike.
Token ids are random (speed does not depend on them). CPU time, not wall time, because the
machine is shared: it is what a setting costs, whatever else runs.

Writes a Markdown section between `<!-- bench:embed-settings -->` markers of OUT (replaced in
place, or appended).

Usage: bench_onnx_options.py MODEL_DIR OUT [ROUNDS]
Needs onnxruntime + numpy (the set-up script unpacks them into .braid/pytools-ort and
.braid/pytools); `make bench` runs it.
"""

import os
import re
import resource
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort

SHAPES = [(1, 16), (4, 16), (4, 96), (32, 96)]
LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def feeds(rows: int, cols: int, rng) -> dict:
    ids = rng.integers(1000, 29000, size=(rows, cols), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    return {"input_ids": ids, "attention_mask": np.ones((rows, cols), dtype=np.int64)}


def session(path: str, threads: int, spin: bool, level: str, arena: bool, pattern: bool):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.graph_optimization_level = LEVELS[level]
    so.enable_cpu_mem_arena = arena
    so.enable_mem_pattern = pattern
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def main() -> None:
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    model_dir, out = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) == 4 else 3
    graphs = [("fp32", os.path.join(model_dir, "model.onnx"))]
    int8 = os.path.join(model_dir, "model.int8.onnx")
    if os.path.exists(int8):
        graphs.append(("int8", int8))
    # (label, threads, spin, level, arena, mem pattern); the first is what the service uses.
    candidates = [
        ("**service: 1 thread, no spinning, level all, arena + pattern**", 1, False, "all", True, True),
        ("2 threads, no spinning", 2, False, "all", True, True),
        ("2 threads, spinning", 2, True, "all", True, True),
        ("1 thread, optimisation level basic", 1, False, "basic", True, True),
        ("1 thread, no memory arena", 1, False, "all", False, True),
        ("1 thread, no memory pattern", 1, False, "all", True, False),
    ]
    rng = np.random.default_rng(0)
    inputs = {shape: feeds(*shape, rng) for shape in SHAPES}
    sessions = {}
    for g, path in graphs:
        for c in candidates:
            s = session(path, *c[1:])
            for f in inputs.values():
                s.run(None, f)  # warm-up
            sessions[(g, c[0])] = s
    # samples[(graph, candidate, shape)] = [microseconds of CPU per token, per round]
    samples = {}
    load = [os.getloadavg()[0]]
    for _ in range(rounds):
        for key, s in sessions.items():
            for shape, f in inputs.items():
                tokens = shape[0] * shape[1]
                n = max(3, 1500 // tokens)
                c0 = cpu()
                for _ in range(n):
                    s.run(None, f)
                samples.setdefault(key + (shape,), []).append((cpu() - c0) / n / tokens * 1e6)
        load.append(os.getloadavg()[0])
    header = "| graph | setting | " + " | ".join(f"{r}×{c}" for r, c in SHAPES) + " |"
    rule = "| --- | --- | " + " | ".join("---" for _ in SHAPES) + " |"
    rows = []
    for g, _ in graphs:
        for c in candidates:
            cells = []
            for shape in SHAPES:
                v = samples[(g, c[0], shape)]
                cells.append(f"{statistics.median(v):.0f} ({min(v):.0f}–{max(v):.0f})")
            rows.append(f"| {g} | {c[0]} | " + " | ".join(cells) + " |")
    section = (
        "<!-- bench:embed-settings -->\n"
        "## Embedding engine settings (ONNX Runtime session options)\n\n"
        f"Command: `make bench` (`deploy/scripts/bench_onnx_options.py`, ONNX Runtime {ort.__version__}): "
        "CPU time (all threads) per token in microseconds, on the shapes the service runs "
        "(rows × tokens: one query, four merged queries, small and large document batches); "
        f"median (min–max) of {rounds} rounds run round-robin over the settings; "
        f"{os.cpu_count()} cores, 1-minute load average {min(load):.1f} to {max(load):.1f} (shared machine). "
        "Lower is better.\n\n"
        f"{header}\n{rule}\n" + "\n".join(rows) + "\n"
        "<!-- /bench:embed-settings -->\n"
    )
    print(section)
    try:
        with open(out, encoding="utf-8") as f:
            current = f.read()
    except FileNotFoundError:
        current = "# Benchmarks\n"
    pattern = re.compile(r"<!-- bench:embed-settings -->.*?<!-- /bench:embed-settings -->\n", re.S)
    if pattern.search(current):
        updated = pattern.sub(lambda _: section, current)
    else:
        updated = current.rstrip("\n") + "\n\n" + section
    with open(out, "w", encoding="utf-8") as f:
        f.write(updated)


if __name__ == "__main__":
    main()
