#!/usr/bin/env python3
"""The status quo to compare `tessera serve` with: Python onnxruntime behind a minimal HTTP server
answering the same KServe v2 JSON inference route.

    py_kserve_server.py --listen 127.0.0.1:PORT --model NAME=PATH [--model ...] [--threads N]

One InferenceSession per model, shared by the server's threads (onnxruntime releases the GIL while
it runs). Routes: GET /v2/health/ready, POST /v2/models/NAME/infer. Prints
`listening on http://HOST:PORT` on stderr once bound.
"""

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import onnxruntime as ort

NUMPY = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}
DATATYPE = {v: k for k, v in NUMPY.items()}
SESSIONS = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle plus the client's delayed
    # ACK adds ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def reply(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path in ("/v2/health/ready", "/v2/health/live"):
            self.reply(200, {"ready": True})
        else:
            self.reply(404, {"error": "no such route"})

    def do_POST(self):
        parts = self.path.strip("/").split("/")
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if len(parts) != 4 or parts[:2] != ["v2", "models"] or parts[3] != "infer" or parts[2] not in SESSIONS:
            self.reply(404, {"error": "unknown model or route"})
            return
        sess = SESSIONS[parts[2]]
        try:
            req = json.loads(body)
            feeds = {
                t["name"]: np.array(t["data"], dtype=NUMPY[t["datatype"]]).reshape(t["shape"])
                for t in req["inputs"]
            }
            names = [o.name for o in sess.get_outputs()]
            outs = sess.run(names, feeds)
        except Exception as e:  # noqa: BLE001 - a bad request is the client's problem
            self.reply(400, {"error": str(e)})
            return
        self.reply(200, {
            "model_name": parts[2],
            "outputs": [
                {"name": n, "datatype": DATATYPE[o.dtype.type], "shape": list(o.shape), "data": o.reshape(-1).tolist()}
                for n, o in zip(names, outs)
            ],
        })


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", default="127.0.0.1:8081")
    p.add_argument("--model", action="append", required=True)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = onnxruntime's default)")
    a = p.parse_args()
    ort.set_default_logger_severity(3)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    for spec in a.model:
        name, path = spec.split("=", 1)
        SESSIONS[name] = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    host, port = a.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    print(f"listening on http://{host}:{server.server_address[1]}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
