#!/usr/bin/env python3
"""Writes MODEL_DIR/model.int8.onnx: MODEL_DIR/model.onnx with every weight MatMul run in int8,
such that a text's vector depends on that text alone, and not on the CPU.

Each `MatMul(x, W)` with a constant weight becomes, in standard ONNX ops:

    s   = max(|x|, over the last axis) / 127        one scale per token (row)
    q   = QuantizeLinear(x / s, 1, 128)             uint8 in [1, 255], zero point 128
    y   = float(MatMulInteger(q, Wq, 128)) * Ws * s

with `Wq` the weight rounded per output channel to 7 bits (|Wq| <= 63) and `Ws` its scales.
ONNX Runtime fuses the tail into its `MatMulIntegerToFloat` kernel. Why this form:

- **Per token, not per tensor.** ONNX Runtime's `quantize_dynamic` quantises activations with
  one scale for the whole input tensor, i.e. per batch: a text's vector then moved with the
  other texts padded into its batch (cosine as low as 0.97 to itself alone). Here every token's
  row has its own scale, and rows never mix outside attention (which stays fp32 and masks
  padding), so a text gives the same vector alone or in any batch (to float rounding).
- **7-bit weights.** Without AVX-512 VNNI, x86 int8 kernels multiply uint8 x int8 pairs and add
  them into int16 with saturation (`vpmaddubsw`); with 8-bit weights a pair can reach
  2 x 255 x 127 = 64,770 and saturate, so the same text gave other vectors on CPUs with and
  without VNNI. With |Wq| <= 63 a pair is at most 2 x 255 x 63 = 32,130 < 32,767: the integer
  products are exact on every kernel, and only fp32 rounding outside them differs by machine.
- **Quality.** Against the fp32 graph, per-token 8-bit activations with 7-bit weights are closer
  than per-tensor activations with 8-bit weights (mean cosine 0.996 vs 0.992 on SciFact
  queries); `make eval` measures nDCG@10 and `make bench` the speed (BENCHMARKS.md).

The quantised activations of one input are shared by the MatMuls that read it (query, key and
value). Needs only `onnx` and `numpy` (the set-up script unpacks their wheels into .braid).

Usage: quantize_onnx.py MODEL_DIR
"""

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Largest weight magnitude after rounding: 7 bits, so no uint8 x int8 pair sum saturates int16.
WEIGHT_LEVELS = 63
ACTIVATION_LEVELS = 127
ZERO_POINT = 128


def quantize_weight(w: np.ndarray):
    """Symmetric per-output-channel quantisation of a [K, N] weight to |q| <= WEIGHT_LEVELS."""
    amax = np.maximum(np.abs(w).max(axis=0), 1e-12)
    scale = (amax / WEIGHT_LEVELS).astype(np.float32)
    q = np.clip(np.round(w / scale), -WEIGHT_LEVELS, WEIGHT_LEVELS).astype(np.int8)
    return q, scale


def rewrite(model: onnx.ModelProto) -> int:
    """Replaces every MatMul with a constant right-hand side; returns how many."""
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    nodes, added = [], []

    def const(name: str, value) -> str:
        added.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    inv_levels = const("q8_inv_levels", np.array(1.0 / ACTIVATION_LEVELS, dtype=np.float32))
    tiny = const("q8_tiny", np.array(1e-12, dtype=np.float32))
    one = const("q8_one", np.array(1.0, dtype=np.float32))
    zero_point = const("q8_zero_point", np.array(ZERO_POINT, dtype=np.uint8))
    quantized = {}  # activation -> (uint8 tensor, per-row scale)

    def quantize_rows(x: str):
        if x not in quantized:
            p = f"q8_a{len(quantized)}"
            nodes.append(helper.make_node("Abs", [x], [p + "_abs"]))
            nodes.append(helper.make_node("ReduceMax", [p + "_abs"], [p + "_max"], axes=[-1], keepdims=1))
            nodes.append(helper.make_node("Max", [p + "_max", tiny], [p + "_amax"]))
            nodes.append(helper.make_node("Mul", [p + "_amax", inv_levels], [p + "_scale"]))
            nodes.append(helper.make_node("Reciprocal", [p + "_scale"], [p + "_inv"]))
            nodes.append(helper.make_node("Mul", [x, p + "_inv"], [p + "_scaled"]))
            nodes.append(helper.make_node("QuantizeLinear", [p + "_scaled", one, zero_point], [p + "_u8"]))
            quantized[x] = (p + "_u8", p + "_scale")
        return quantized[x]

    replaced = 0
    for node in graph.node:
        weight = initializers.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None:
            nodes.append(node)
            continue
        wq, w_scale = quantize_weight(numpy_helper.to_array(weight).astype(np.float32))
        name = node.input[1]
        const(name + ".q8", wq)
        const(name + ".q8_scale", w_scale)
        q, row_scale = quantize_rows(node.input[0])
        out = node.output[0]
        nodes.append(helper.make_node("MatMulInteger", [q, name + ".q8", zero_point], [out + "_i32"]))
        nodes.append(helper.make_node("Cast", [out + "_i32"], [out + "_f32"], to=TensorProto.FLOAT))
        nodes.append(helper.make_node("Mul", [out + "_f32", name + ".q8_scale"], [out + "_w"]))
        nodes.append(helper.make_node("Mul", [out + "_w", row_scale], [out]))
        replaced += 1

    used = {i for n in nodes for i in n.input}
    kept = [i for i in list(graph.initializer) + added if i.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return replaced


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    model_dir = Path(sys.argv[1])
    source = model_dir / "model.onnx"
    out = model_dir / "model.int8.onnx"
    model = onnx.load(str(source))
    replaced = rewrite(model)
    if replaced == 0:
        sys.exit(f"no MatMul with a constant weight in {source}")
    model.producer_name = "braid quantize_onnx.py (per-token int8)"
    onnx.checker.check_model(model)
    tmp = out.with_suffix(".onnx.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(out)
    print(f"wrote {out} ({replaced} MatMuls in int8, {out.stat().st_size // (1 << 20)} MiB)")


if __name__ == "__main__":
    main()
