#!/usr/bin/env python3
"""Build test/fixtures/onnx/tiny-fusion.onnx with onnx.helper (another toolchain than
rapm's exporter) and test/fixtures/onnx/tiny-fusion.json with its expected outputs on a
fixed input, computed in numpy. The test loads the model through FusionSession to show
that any ONNX file with rapm's interface loads:

    inputs  en float32 [N, 1024], prior float32 [N, 101]
    outputs pred float32 [N, 101], delta float32 [N, 101]

The network differs from rapm's on purpose: delta = Tanh(en @ W1 + b1) @ W2 + b2
(MatMul + Add + Tanh, hidden width 8, prior not fed to the net), pred = prior + delta,
opset 13, ir_version 7, W1 as raw_data and W2 as float_data.

    /usr/bin/python3 scripts/make-onnx-fixture.py      # needs python3-onnx, numpy
Deterministic: rerunning it reproduces the same files.
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

EN, DV, HID, ROWS, SEED = 1024, 101, 8, 3, 20240601
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "fixtures", "onnx")


def dyadic(rng, shape, scale):
    """Normal values rounded to multiples of 1/64: exact in float32 and short in JSON."""
    return (np.round(rng.standard_normal(shape) * scale * 64) / 64).astype(np.float32)


def main():
    rng = np.random.default_rng(SEED)
    w1 = (rng.standard_normal((EN, HID)) / np.sqrt(EN)).astype(np.float32)
    b1 = (rng.standard_normal(HID) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((HID, DV)) * 0.2).astype(np.float32)
    b2 = (rng.standard_normal(DV) * 0.05).astype(np.float32)

    inits = [
        numpy_helper.from_array(w1, "w1"),  # raw_data
        numpy_helper.from_array(b1, "b1"),
        helper.make_tensor("w2", TensorProto.FLOAT, list(w2.shape), w2.flatten().tolist()),  # float_data
        helper.make_tensor("b2", TensorProto.FLOAT, list(b2.shape), b2.tolist()),
    ]
    nodes = [
        helper.make_node("MatMul", ["en", "w1"], ["h0"], name="mm1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="add1"),
        helper.make_node("Tanh", ["h1"], ["h"], name="tanh"),
        helper.make_node("MatMul", ["h", "w2"], ["d0"], name="mm2"),
        helper.make_node("Add", ["d0", "b2"], ["delta"], name="add2"),
        helper.make_node("Add", ["prior", "delta"], ["pred"], name="pred"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_fusion",
        [
            helper.make_tensor_value_info("en", TensorProto.FLOAT, ["N", EN]),
            helper.make_tensor_value_info("prior", TensorProto.FLOAT, ["N", DV]),
        ],
        [
            helper.make_tensor_value_info("pred", TensorProto.FLOAT, ["N", DV]),
            helper.make_tensor_value_info("delta", TensorProto.FLOAT, ["N", DV]),
        ],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        producer_name="make-onnx-fixture.py",
        producer_version=onnx.__version__,
        opset_imports=[helper.make_opsetid("", 13)],
    )
    model.ir_version = 7
    helper.set_model_props(model, {"producer": "onnx.helper", "hidden": "8", "seed": str(SEED)})
    onnx.checker.check_model(model, full_check=True)

    en = dyadic(rng, (ROWS, EN), 1.0)
    prior = dyadic(rng, (ROWS, DV), 0.5)
    h = np.tanh(en.astype(np.float64) @ w1.astype(np.float64) + b1)
    delta = h @ w2.astype(np.float64) + b2
    pred = prior.astype(np.float64) + delta

    os.makedirs(OUT, exist_ok=True)
    onnx.save(model, os.path.join(OUT, "tiny-fusion.onnx"))
    expected = {
        "model": "tiny-fusion.onnx",
        "generator": "scripts/make-onnx-fixture.py",
        "onnx": onnx.__version__,
        "numpy": np.__version__,
        "rows": ROWS,
        "metadata": {"producer": "onnx.helper", "hidden": "8", "seed": str(SEED)},
        "en": [float(x) for x in en.flatten()],
        "prior": [float(x) for x in prior.flatten()],
        "pred": [round(float(x), 9) for x in pred.flatten()],
        "delta": [round(float(x), 9) for x in delta.flatten()],
    }
    with open(os.path.join(OUT, "tiny-fusion.json"), "w") as f:
        json.dump(expected, f, separators=(",", ":"))
        f.write("\n")
    for name in ("tiny-fusion.onnx", "tiny-fusion.json"):
        print(f"{os.path.join(OUT, name)}: {os.path.getsize(os.path.join(OUT, name))} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
