#!/usr/bin/env python3
"""Writes MODEL_DIR/model.int8.onnx: MODEL_DIR/model.onnx with its MatMul weights quantised to
int8 by ONNX Runtime's dynamic quantisation (`onnxruntime.quantization.quantize_dynamic`:
weights int8 per output channel, activations quantised to uint8 on the fly at run time).

The embedding service runs it with `model.quantized = true`. Its speed and retrieval quality
against fp32 are measured by `make bench` and `make eval` (BENCHMARKS.md); the reference
fixture test holds it to its own cosine bound (services/embedding/tests/reference.rs).

Only MatMul is quantised: it is where the time goes; quantising the embedding tables (Gather)
saves memory but no time, and costs accuracy.

Usage: quantize_onnx.py MODEL_DIR
Needs the `onnxruntime`, `onnx`, `numpy` and `packaging` packages (the set-up script unpacks
their wheels into .braid; nothing is fetched twice).
"""

import sys
import tempfile
from pathlib import Path

from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.shape_inference import quant_pre_process


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    model_dir = Path(sys.argv[1])
    source = model_dir / "model.onnx"
    out = model_dir / "model.int8.onnx"
    tmp = out.with_suffix(".onnx.tmp")
    with tempfile.TemporaryDirectory() as work:
        # Shape inference and graph clean-up first, as ONNX Runtime recommends before
        # quantising (without it some MatMuls are left in fp32).
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(
            str(prepared),
            str(tmp),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
        )
    tmp.replace(out)
    print(f"wrote {out} ({out.stat().st_size // (1 << 20)} MiB)")


if __name__ == "__main__":
    main()
