#!/usr/bin/env python3
"""Writes all-MiniLM-L6-v2 as an ONNX graph, straight from its safetensors weights.

No torch and no model hub: the graph is the BERT encoder written out op by op (embeddings,
6 x [self-attention, feed-forward with exact erf GELU, post-layer-norms]) followed by
sentence-transformers' attention-masked mean pooling and L2 normalisation, so the output
`sentence_embedding` [batch, 384] is directly the model's sentence vector. ONNX Runtime fuses
the patterns (LayerNorm, GELU, MatMul+Add) when it loads the graph.

Usage: export_onnx.py MODEL_DIR [OUT]   (OUT defaults to MODEL_DIR/model.onnx)
Needs the `onnx` and `numpy` packages (the set-up script unpacks their wheels).
"""

import json
import struct
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def read_safetensors(path: Path) -> dict:
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    base = 8 + header_len
    dtypes = {"F32": np.float32, "I64": np.int64}
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        arr = np.frombuffer(data[base + start : base + end], dtype=dtypes[meta["dtype"]])
        tensors[name] = arr.reshape(meta["shape"])
    return tensors


class Graph:
    def __init__(self) -> None:
        self.nodes = []
        self.initializers = []
        self.count = 0

    def const(self, name: str, value) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs, **attrs) -> str:
        self.count += 1
        out = f"{op_type.lower()}_{self.count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out


def build(weights: dict, config: dict) -> onnx.ModelProto:
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    head_dim = hidden // heads
    eps = float(config["layer_norm_eps"])
    g = Graph()
    w = lambda name: g.const(name, weights[name].astype(np.float32))  # noqa: E731
    # MatMul wants [in, out]; PyTorch Linear stores [out, in].
    wt = lambda name: g.const(name + ".T", weights[name].T.astype(np.float32).copy())  # noqa: E731

    def layer_norm(x: str, prefix: str) -> str:
        return g.op(
            "LayerNormalization",
            [x, w(prefix + ".weight"), w(prefix + ".bias")],
            axis=-1,
            epsilon=eps,
        )

    def linear(x: str, prefix: str) -> str:
        return g.op("Add", [g.op("MatMul", [x, wt(prefix + ".weight")]), w(prefix + ".bias")])

    # Embeddings: word + position + token type 0.
    one = g.const("one_i64", np.array(1, dtype=np.int64))
    zero = g.const("zero_i64", np.array(0, dtype=np.int64))
    seq_len = g.op("Gather", [g.op("Shape", ["input_ids"]), one], axis=0)
    positions = g.op("Range", [zero, seq_len, one])
    x = g.op("Gather", [w("embeddings.word_embeddings.weight"), "input_ids"], axis=0)
    x = g.op("Add", [x, g.op("Gather", [w("embeddings.position_embeddings.weight"), positions], axis=0)])
    token_type = weights["embeddings.token_type_embeddings.weight"][0].astype(np.float32)
    x = g.op("Add", [x, g.const("token_type_0", token_type)])
    x = layer_norm(x, "embeddings.LayerNorm")

    # Additive attention mask [batch, 1, 1, seq]: 0 for tokens, -1e4 for padding.
    mask = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    bias = g.op(
        "Mul",
        [g.op("Sub", [g.const("one_f", np.array(1.0, dtype=np.float32)), mask]),
         g.const("neg_big", np.array(-10000.0, dtype=np.float32))],
    )
    bias = g.op("Unsqueeze", [bias, g.const("axes_1_2", np.array([1, 2], dtype=np.int64))])
    split_heads = g.const("split_heads", np.array([0, 0, heads, head_dim], dtype=np.int64))
    merge_heads = g.const("merge_heads", np.array([0, 0, hidden], dtype=np.int64))
    scale = g.const("scale", np.array(1.0 / np.sqrt(head_dim), dtype=np.float32))
    inv_sqrt2 = g.const("inv_sqrt2", np.array(1.0 / np.sqrt(2.0), dtype=np.float32))
    half = g.const("half", np.array(0.5, dtype=np.float32))
    one_f = "one_f"

    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"

        def heads_of(name: str, perm) -> str:
            projected = linear(x, f"{p}.attention.self.{name}")
            return g.op("Transpose", [g.op("Reshape", [projected, split_heads])], perm=perm)

        q = heads_of("query", [0, 2, 1, 3])
        k = heads_of("key", [0, 2, 3, 1])
        v = heads_of("value", [0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), bias])
        probs = g.op("Softmax", [scores], axis=-1)
        context = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        context = g.op("Reshape", [context, merge_heads])
        attended = g.op("Add", [linear(context, f"{p}.attention.output.dense"), x])
        attended = layer_norm(attended, f"{p}.attention.output.LayerNorm")
        inner = linear(attended, f"{p}.intermediate.dense")
        # Exact GELU: 0.5 * x * (1 + erf(x / sqrt(2))).
        gelu = g.op(
            "Mul",
            [g.op("Mul", [inner, half]),
             g.op("Add", [g.op("Erf", [g.op("Mul", [inner, inv_sqrt2])]), one_f])],
        )
        out = g.op("Add", [linear(gelu, f"{p}.output.dense"), attended])
        x = layer_norm(out, f"{p}.output.LayerNorm")

    # Mean over real tokens, then L2 normalisation (sentence-transformers' Pooling + Normalize).
    mask3 = g.op("Unsqueeze", [mask, g.const("axes_2", np.array([2], dtype=np.int64))])
    axes1 = g.const("axes_1", np.array([1], dtype=np.int64))
    summed = g.op("ReduceSum", [g.op("Mul", [x, mask3]), axes1], keepdims=0)
    counts = g.op("Max", [g.op("ReduceSum", [mask3, axes1], keepdims=0),
                          g.const("tiny", np.array(1e-9, dtype=np.float32))])
    mean = g.op("Div", [summed, counts])
    norm = g.op("Sqrt", [g.op("ReduceSum", [g.op("Mul", [mean, mean]), axes1], keepdims=1)])
    norm = g.op("Max", [norm, g.const("tiny_norm", np.array(1e-12, dtype=np.float32))])
    g.nodes.append(helper.make_node("Div", [mean, norm], ["sentence_embedding"]))

    graph = helper.make_graph(
        g.nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden])],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    model.producer_name = "braid export_onnx.py"
    onnx.checker.check_model(model)
    return model


def main() -> None:
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    model_dir = Path(sys.argv[1])
    out = Path(sys.argv[2]) if len(sys.argv) == 3 else model_dir / "model.onnx"
    weights = read_safetensors(model_dir / "model.safetensors")
    config = json.loads((model_dir / "config.json").read_text())
    model = build(weights, config)
    tmp = out.with_suffix(".onnx.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(out)
    print(f"wrote {out} ({out.stat().st_size // (1 << 20)} MiB)")


if __name__ == "__main__":
    main()
