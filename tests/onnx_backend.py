#!/usr/bin/env python3
"""Prepares the ONNX backend node tests (onnx==1.22.0) as KServe v2 JSON for `tessera serve`.

    onnx_backend.py prepare OUT_DIR [--data DIR]

For every `node/<case>/model.onnx` + `test_data_set_0/{input,output}_N.pb` it decides whether the
case can go through the KServe v2 JSON API, and if it can, whether Python onnxruntime (the same
runtime library the server loads) reproduces the reference outputs. It writes

    OUT_DIR/cases.json     [{"name", "model", "request", "expected"}]   the cases the server must pass
    OUT_DIR/excluded.json  {"<case>": "reason"}                          every case left out, and why

`request` is a KServe v2 inference request body; `expected` the reference outputs in the same
tensor form. Non-finite floats are the strings "NaN", "Infinity" and "-Infinity" (JSON has no
literal for them); that is also what the server reads and writes.
"""

import json
import math
import os
import sys
import glob
import re

import numpy as np
import onnx
from onnx import numpy_helper

# ONNX TensorProto element type -> KServe v2 datatype name.
DATATYPES = {
    onnx.TensorProto.BOOL: "BOOL",
    onnx.TensorProto.UINT8: "UINT8",
    onnx.TensorProto.UINT16: "UINT16",
    onnx.TensorProto.UINT32: "UINT32",
    onnx.TensorProto.UINT64: "UINT64",
    onnx.TensorProto.INT8: "INT8",
    onnx.TensorProto.INT16: "INT16",
    onnx.TensorProto.INT32: "INT32",
    onnx.TensorProto.INT64: "INT64",
    onnx.TensorProto.FLOAT16: "FP16",
    onnx.TensorProto.BFLOAT16: "BF16",
    onnx.TensorProto.FLOAT: "FP32",
    onnx.TensorProto.DOUBLE: "FP64",
    onnx.TensorProto.STRING: "BYTES",
}
RTOL, ATOL = 1e-3, 1e-5


def json_value(x, datatype):
    if datatype == "BOOL":
        return bool(x)
    if datatype == "BYTES":
        return x.decode("utf-8") if isinstance(x, bytes) else str(x)
    if datatype.startswith("FP") or datatype == "BF16":
        f = float(x)
        if math.isnan(f):
            return "NaN"
        if math.isinf(f):
            return "Infinity" if f > 0 else "-Infinity"
        return f
    return int(x)


def tensor_json(name, array, datatype):
    flat = np.asarray(array).reshape(-1)
    return {
        "name": name,
        "datatype": datatype,
        "shape": list(np.asarray(array).shape),
        "data": [json_value(x, datatype) for x in flat],
    }


def io_types(values):
    """[(name, datatype)] or a reason why these graph inputs/outputs are not plain tensors."""
    out = []
    for v in values:
        t = v.type
        if t.WhichOneof("value") != "tensor_type":
            return None, f"{v.name or '<unnamed>'} is a {t.WhichOneof('value')}, not a tensor"
        elem = t.tensor_type.elem_type
        if elem not in DATATYPES:
            return None, f"{v.name} has element type {onnx.TensorProto.DataType.Name(elem)}"
        if not v.name:
            return None, "unnamed graph input or output"
        out.append((v.name, DATATYPES[elem]))
    return out, None


def load_tensors(case_dir, prefix, count):
    arrays = []
    for i in range(count):
        path = os.path.join(case_dir, "test_data_set_0", f"{prefix}_{i}.pb")
        proto = onnx.TensorProto()
        with open(path, "rb") as f:
            proto.ParseFromString(f.read())
        arrays.append(numpy_helper.to_array(proto))
    return arrays


def outputs_match(got, want, datatype):
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return f"shape {list(got.shape)} != reference {list(want.shape)}"
    if datatype.startswith("FP") or datatype == "BF16":
        g, w = got.astype(np.float64), want.astype(np.float64)
        if not np.allclose(g, w, rtol=RTOL, atol=ATOL, equal_nan=True):
            return f"max |diff| {np.nanmax(np.abs(g - w))}"
        return None
    if not np.array_equal(got, want):
        return "values differ"
    return None


def ort_message(e):
    """The useful part of an onnxruntime exception: no error-code prefix, no model path."""
    msg = str(e).splitlines()[0]
    msg = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", msg)
    msg = re.sub(r"^Load model from \S+ failed:", "", msg)
    msg = re.sub(r"^Exception during initialization: ", "", msg)
    if msg.startswith("/onnxruntime_src/") and "(" in msg:
        # Drop "<source file>:<line> <C++ signature>" up to the signature's closing parenthesis.
        depth, i = 0, msg.index("(")
        for i in range(i, len(msg)):
            depth += {"(": 1, ")": -1}.get(msg[i], 0)
            if depth == 0:
                break
        msg = msg[i + 1:].strip()
    return msg[:160]


def python_ort_verdict(ort, case_dir, inputs, outputs, xs, ys):
    """None when Python onnxruntime reproduces the reference outputs, else why not."""
    try:
        sess = ort.InferenceSession(os.path.join(case_dir, "model.onnx"), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        return "onnxruntime cannot load it: " + ort_message(e)
    if any(dt == "BF16" for _, dt in inputs + outputs):
        # Python onnxruntime cannot hand bfloat16 arrays to numpy: these cases are checked only
        # through the server, against the reference.
        return None
    try:
        got = sess.run([n for n, _ in outputs], {n: x for (n, _), x in zip(inputs, xs)})
    except Exception as e:  # noqa: BLE001
        return "onnxruntime fails to run it: " + ort_message(e)
    for (oname, dt), g, w in zip(outputs, got, ys):
        why = outputs_match(g, w, dt)
        if why:
            return f"onnxruntime itself differs from the reference on {oname}: {why}"
    return None


def prepare_case(case_dir, ort):
    name = os.path.basename(case_dir)
    model = onnx.load(os.path.join(case_dir, "model.onnx"))
    inits = {i.name for i in model.graph.initializer}
    inputs, why = io_types([i for i in model.graph.input if i.name not in inits])
    if why:
        return None, why
    outputs, why = io_types(model.graph.output)
    if why:
        return None, why
    n_in = len(glob.glob(os.path.join(case_dir, "test_data_set_0", "input_*.pb")))
    n_out = len(glob.glob(os.path.join(case_dir, "test_data_set_0", "output_*.pb")))
    if n_in != len(inputs) or n_out != len(outputs):
        return None, f"test data has {n_in} inputs/{n_out} outputs, graph {len(inputs)}/{len(outputs)}"
    try:
        xs = load_tensors(case_dir, "input", n_in)
        ys = load_tensors(case_dir, "output", n_out)
    except Exception as e:  # noqa: BLE001 - any unreadable test tensor excludes the case
        return None, f"test data not readable as tensors: {e}"
    why = python_ort_verdict(ort, case_dir, inputs, outputs, xs, ys)
    if why:
        return None, why
    case = {
        "name": name,
        "model": os.path.join(case_dir, "model.onnx"),
        "request": {"inputs": [tensor_json(n, x, dt) for (n, dt), x in zip(inputs, xs)]},
        "expected": [tensor_json(n, y, dt) for (n, dt), y in zip(outputs, ys)],
    }
    return case, None


def prepare(out_dir, data_dir):
    import onnxruntime as ort

    ort.set_default_logger_severity(4)
    cases, excluded = [], {}
    for case_dir in sorted(glob.glob(os.path.join(data_dir, "*"))):
        if not os.path.isfile(os.path.join(case_dir, "model.onnx")):
            continue
        case, why = prepare_case(case_dir, ort)
        if case:
            cases.append(case)
        else:
            excluded[os.path.basename(case_dir)] = why
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "cases.json.tmp"), "w") as f:
        json.dump(cases, f)
    with open(os.path.join(out_dir, "excluded.json"), "w") as f:
        json.dump(excluded, f, indent=1, sort_keys=True)
    os.replace(os.path.join(out_dir, "cases.json.tmp"), os.path.join(out_dir, "cases.json"))
    print(f"{len(cases)} cases, {len(excluded)} excluded", file=sys.stderr)


def main():
    args = sys.argv[1:]
    if len(args) < 2 or args[0] != "prepare":
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    data_dir = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
    if "--data" in args:
        data_dir = args[args.index("--data") + 1]
    prepare(args[1], data_dir)


if __name__ == "__main__":
    main()
