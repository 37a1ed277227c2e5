#!/usr/bin/env python3
"""Reference outputs from Python onnxruntime, for the `serve` integration tests.

    ort_ref.py run MODEL < request.json > response.json
        One KServe v2 inference request body in, the outputs (KServe tensors) out.
    ort_ref.py silero MODEL OUT.json
        Speech synthesized with espeak-ng, resampled to 16 kHz, with 1 s of silence before and
        after, cut into 512-sample frames with 64 samples of context. Writes
        {"frames": [[576 floats]], "kinds": ["speech"|"silence"|"other"], "probs": [p]} where
        probs come from running the frames in order with the state carried.
"""

import json
import os
import subprocess
import sys
import tempfile
import wave

import numpy as np
import onnxruntime as ort

NUMPY = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}
SPECIAL = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def session(model):
    ort.set_default_logger_severity(3)
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def decode(t):
    data = [SPECIAL.get(x, x) if isinstance(x, str) else x for x in t["data"]]
    return np.array(data, dtype=NUMPY[t["datatype"]]).reshape(t["shape"])


def encode(name, a):
    dt = {v: k for k, v in NUMPY.items()}[a.dtype.type]
    flat = a.reshape(-1).tolist()
    if dt.startswith("FP"):
        flat = [x if np.isfinite(x) else ("NaN" if np.isnan(x) else ("Infinity" if x > 0 else "-Infinity")) for x in flat]
    return {"name": name, "datatype": dt, "shape": list(a.shape), "data": flat}


def run(model):
    req = json.load(sys.stdin)
    s = session(model)
    feeds = {t["name"]: decode(t) for t in req["inputs"]}
    names = [o.name for o in s.get_outputs()]
    outs = s.run(names, feeds)
    json.dump({"outputs": [encode(n, o) for n, o in zip(names, outs)]}, sys.stdout)


def speech_16k():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "speech.wav")
        text = "The quick brown fox jumps over the lazy dog. Tessera serves models from a local store."
        subprocess.run(["espeak-ng", "-w", path, text], check=True)
        with wave.open(path) as w:
            rate = w.getframerate()
            x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768
    n = int(len(x) * 16000 / rate)
    return np.interp(np.arange(n) * rate / 16000, np.arange(len(x)), x).astype(np.float32)


def silero(model, out_path):
    speech = speech_16k()
    silence = np.zeros(16000, np.float32)
    audio = np.concatenate([silence, speech, silence])
    s = session(model)
    state = np.zeros((2, 1, 128), np.float32)
    context = np.zeros(64, np.float32)
    frames, kinds, probs = [], [], []
    for i in range(0, len(audio) - 511, 512):
        frame = audio[i:i + 512]
        x = np.concatenate([context, frame])[None]
        out, state = s.run(None, {"input": x, "state": state, "sr": np.array(16000, np.int64)})
        context = frame[-64:]
        in_silence = i + 512 <= len(silence) or i >= len(silence) + len(speech)
        voiced = float(np.sqrt((frame ** 2).mean())) > 0.02
        frames.append(x[0].tolist())
        kinds.append("silence" if in_silence else ("speech" if voiced else "other"))
        probs.append(float(out[0, 0]))
    with open(out_path, "w") as f:
        json.dump({"frames": frames, "kinds": kinds, "probs": probs}, f)


def main():
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "run":
        run(args[1])
    elif len(args) == 3 and args[0] == "silero":
        silero(args[1], args[2])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
