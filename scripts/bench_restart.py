#!/usr/bin/env python3
"""Python side of `tessera bench restart` (the status-quo baseline and the fixtures).

    bench_restart.py make-large OUT.onnx MB
        Writes an ONNX graph of about MB megabytes: y = x @ W with W a constant fp32 initializer.
    bench_restart.py seed REPO TOKEN FOLDER
        Uploads FOLDER as one commit of REPO on $HF_ENDPOINT; prints the commit id.
    bench_restart.py reference MODEL
        Prints {"request": KServe v2 request, "outputs": [KServe tensors]} from onnxruntime on
        MODEL: BERT-style inputs get the fixed sentence ids, others deterministic fill values.
    bench_restart.py fetch REPO REVISION PATH
        snapshot_download into $HF_HOME; prints {"file": the PATH's blob, "repo_bytes": total}.
    bench_restart.py baseline REPO REVISION PATH REQUEST.json
        The status quo, timed by the caller from process start: snapshot_download (into
        $HF_HUB_CACHE), onnxruntime loads PATH from the snapshot, runs REQUEST; prints the
        outputs as one JSON line.
"""

import json
import os
import sys

NUMPY_NAMES = {
    "tensor(float)": ("FP32", "float32"), "tensor(double)": ("FP64", "float64"),
    "tensor(int64)": ("INT64", "int64"), "tensor(int32)": ("INT32", "int32"),
    "tensor(bool)": ("BOOL", "bool_"), "tensor(uint8)": ("UINT8", "uint8"),
    "tensor(int8)": ("INT8", "int8"), "tensor(float16)": ("FP16", "float16"),
}
BERT_IDS = [101, 2023, 2003, 2019, 2742, 6251, 102]


def make_large(out, mb):
    """A MatMul with an fp32 weight of about MB megabytes, kept as external data beside the
    model (OUT.data), as real models past protobuf's 2 GB limit are: the weight is written in
    slices, so no 2 GB protobuf or array is ever built."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    k = 1024
    n = max(1, int(mb) * (1 << 20) // (4 * k))
    data = out + ".data"
    rng = np.random.default_rng(7)
    rows = max(1, (64 << 20) // (4 * n))
    with open(data, "wb") as f:
        for start in range(0, k, rows):
            block = rng.standard_normal((min(rows, k - start), n), dtype=np.float32) * np.float32(0.01)
            f.write(block.tobytes())
    w = TensorProto()
    w.name = "W"
    w.data_type = TensorProto.FLOAT
    w.dims.extend([k, n])
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", os.path.basename(data)), ("offset", "0"), ("length", str(4 * k * n))):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "large",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, out)


def seed(repo, token, folder):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=os.environ["HF_ENDPOINT"], token=token)
    api.create_repo(repo, exist_ok=True)
    info = api.upload_folder(repo_id=repo, folder_path=folder, delete_patterns="*")
    print(info.oid)


def session(path):
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def session_from_snapshot(folder, path):
    """The status quo's session on a file of an HF cache snapshot. onnxruntime (1.2x+) refuses
    external data that resolves outside the model's folder, which the cache's symlinks into
    blobs/ always do; what users do then costs nothing: hard links to the model and the files
    named after it, side by side."""
    where = os.path.join(folder, path)
    try:
        return session(where)
    except Exception as e:  # noqa: BLE001  (onnxruntime raises its own Fail type)
        if "External data path" not in str(e):
            raise
    import tempfile

    side_by_side = tempfile.mkdtemp(prefix="ort-")
    base, src = os.path.basename(where), os.path.dirname(where)
    for name in os.listdir(src):
        if name.startswith(base):
            os.link(os.path.realpath(os.path.join(src, name)), os.path.join(side_by_side, name))
    return session(os.path.join(side_by_side, base))


def build_request(sess):
    names = [i.name for i in sess.get_inputs()]
    inputs = []
    if set(names) >= {"input_ids", "attention_mask"}:
        fill = {"input_ids": BERT_IDS, "attention_mask": [1] * 7, "token_type_ids": [0] * 7}
        for i in sess.get_inputs():
            inputs.append({"name": i.name, "datatype": "INT64", "shape": [1, 7], "data": fill[i.name]})
        return {"inputs": inputs}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
        kserve, _ = NUMPY_NAMES[i.type]
        count = 1
        for d in shape:
            count *= d
        data = [((j % 7) - 3) * 0.25 for j in range(count)] if kserve.startswith("FP") else [j % 3 for j in range(count)]
        inputs.append({"name": i.name, "datatype": kserve, "shape": shape, "data": data})
    return {"inputs": inputs}


def run(sess, request):
    import numpy as np

    feeds = {}
    for t in request["inputs"]:
        dtype = next(np_name for k, np_name in NUMPY_NAMES.values() if k == t["datatype"])
        feeds[t["name"]] = np.array(t["data"], dtype=getattr(np, dtype)).reshape(t["shape"])
    names = [o.name for o in sess.get_outputs()]
    outs = sess.run(names, feeds)
    return [
        {"name": n, "shape": list(v.shape), "data": np.asarray(v, dtype=np.float64).ravel().tolist()}
        for n, v in zip(names, outs)
    ]


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "make-large":
        make_large(args[0], args[1])
    elif cmd == "seed":
        seed(*args)
    elif cmd == "reference":
        sess = session(args[0])
        request = build_request(sess)
        print(json.dumps({"request": request, "outputs": run(sess, request)}))
    elif cmd == "fetch":
        repo, revision, path = args
        from huggingface_hub import snapshot_download

        folder = snapshot_download(repo, revision=revision)
        total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)
        where = os.path.join(folder, path)
        print(json.dumps({"file": os.path.realpath(where), "dir": os.path.dirname(where), "repo_bytes": total}))
    elif cmd == "baseline":
        repo, revision, path, request_file = args
        from huggingface_hub import snapshot_download

        folder = snapshot_download(repo, revision=revision)
        sess = session_from_snapshot(folder, path)
        with open(request_file) as f:
            request = json.load(f)
        print(json.dumps({"outputs": run(sess, request)}), flush=True)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
