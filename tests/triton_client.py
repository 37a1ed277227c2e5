#!/usr/bin/env python3
"""Triton's own clients (PyPI `tritonclient`) against a KServe v2 server, for the `serve` tests.

    triton_client.py infer http|grpc ADDR MODEL < request.json > response.json
        One KServe v2 JSON request in; sends it as the client does by default (HTTP: binary tensor
        data for inputs and outputs; gRPC: raw_input_contents), checks the server and model are
        ready and the model's metadata, and writes {"outputs": [KServe JSON tensors],
        "metadata": {...}}.
    triton_client.py burst http|grpc ADDR MODEL N < request.json
        N clients each send the request once at the same moment; prints their latencies (ms) as
        a JSON list, slowest last.
    triton_client.py load http|grpc ADDR MODEL CLIENTS SECONDS < request.json
        CLIENTS threads send the request back to back for SECONDS; prints
        {"latencies_ms": [...], "errors": N, "wall_s": S}.
"""

import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ort_ref import decode, encode  # noqa: E402 - the same tensor <-> JSON forms as the reference


def module(kind):
    if kind == "http":
        import tritonclient.http as m
    else:
        import tritonclient.grpc as m
    return m


def client(kind, addr, concurrency=1):
    m = module(kind)
    if kind == "http":
        return m.InferenceServerClient(url=addr, concurrency=concurrency, network_timeout=120)
    return m.InferenceServerClient(url=addr)


def inputs_of(kind, req):
    m = module(kind)
    out = []
    for t in req["inputs"]:
        i = m.InferInput(t["name"], t["shape"], t["datatype"])
        i.set_data_from_numpy(decode(t))  # binary by default over HTTP, raw contents over gRPC
        out.append(i)
    return out


def output_names(kind, result):
    r = result.get_response()
    return [o["name"] for o in r["outputs"]] if kind == "http" else [o.name for o in r.outputs]


def infer(kind, addr, model):
    req = json.load(sys.stdin)
    c = client(kind, addr)
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready(model)
    meta = c.get_model_metadata(model)
    if kind == "grpc":
        from google.protobuf.json_format import MessageToDict
        meta = MessageToDict(meta, preserving_proto_field_name=True)
    server = c.get_server_metadata()
    if kind == "grpc":
        server = {"name": server.name, "version": server.version}
    result = c.infer(model, inputs_of(kind, req), request_id=req.get("id", ""))
    outputs = [encode(n, result.as_numpy(n)) for n in output_names(kind, result)]
    json.dump({"outputs": outputs, "metadata": meta, "server": server}, sys.stdout)


def burst(kind, addr, model, n):
    req = json.load(sys.stdin)
    clients = [client(kind, addr) for _ in range(n)]
    inputs = [inputs_of(kind, req) for _ in range(n)]
    for c in clients:  # connections open before the burst
        assert c.is_server_live()
    go = threading.Barrier(n)
    lat = [0.0] * n

    def one(i):
        go.wait()
        t = time.perf_counter()
        clients[i].infer(model, inputs[i])
        lat[i] = (time.perf_counter() - t) * 1e3

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(sorted(lat)))


def load(kind, addr, model, clients, seconds):
    req = json.load(sys.stdin)
    lat, errors = [], [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker():
        c = client(kind, addr)
        inputs = inputs_of(kind, req)
        mine = []
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                c.infer(model, inputs)
                mine.append((time.perf_counter() - t) * 1e3)
            except Exception as e:  # noqa: BLE001 - counted, not raised; the first one shown
                with lock:
                    errors[0] += 1
                    if errors[0] == 1:
                        print(f"first error: {e}", file=sys.stderr)
        with lock:
            lat.extend(mine)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"latencies_ms": lat, "errors": errors[0], "wall_s": time.perf_counter() - start}))


def main():
    a = sys.argv[1:]
    if len(a) == 4 and a[0] == "infer":
        infer(a[1], a[2], a[3])
    elif len(a) == 5 and a[0] == "burst":
        burst(a[1], a[2], a[3], int(a[4]))
    elif len(a) == 6 and a[0] == "load":
        load(a[1], a[2], a[3], int(a[4]), float(a[5]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
