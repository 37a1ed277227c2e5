"""Runs silero-vad over synthesized speech through a KServe v2 endpoint (`tessera serve`).

Speech comes from Debian's espeak-ng, resampled to 16 kHz, framed in 512-sample windows with 64
samples of context, the recurrent state carried from answer to answer: the usage of
test-assets.md. Prints one JSON line: mean p(speech) over the spoken part and over the silence.

usage: vad_client.py BASE_URL MODEL [TEXT]
"""
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
import wave

import numpy as np

SR = 16000
FRAME, CONTEXT = 512, 64


def speech(text):
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-w", f.name, text], check=True, capture_output=True)
        with wave.open(f.name) as w:
            rate, raw = w.getframerate(), w.readframes(w.getnframes())
    pcm = np.frombuffer(raw, dtype=np.int16).astype(np.float32) / 32768.0
    t_new = np.arange(int(len(pcm) * SR / rate)) / SR
    return np.interp(t_new, np.arange(len(pcm)) / rate, pcm).astype(np.float32)


def infer(url, model, x, state):
    body = {"inputs": [
        {"name": "input", "shape": [1, len(x)], "datatype": "FP32", "data": x.tolist()},
        {"name": "state", "shape": [2, 1, 128], "datatype": "FP32", "data": state.ravel().tolist()},
        {"name": "sr", "shape": [], "datatype": "INT64", "data": [SR]},
    ]}
    req = urllib.request.Request(f"{url}/v2/models/{model}/infer", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        out = {o["name"]: o for o in json.load(r)["outputs"]}
    prob = float(np.asarray(out["output"]["data"], dtype=np.float32).ravel()[0])
    new_state = np.asarray(out["stateN"]["data"], dtype=np.float32).reshape(2, 1, 128)
    return prob, new_state


def main():
    url, model = sys.argv[1].rstrip("/"), sys.argv[2]
    text = sys.argv[3] if len(sys.argv) > 3 else "Tessera serves this model straight from a lazy mount."
    silence = np.zeros(SR, dtype=np.float32)
    voice = speech(text)
    audio = np.concatenate([silence, voice, silence])
    state = np.zeros((2, 1, 128), dtype=np.float32)
    context = np.zeros(CONTEXT, dtype=np.float32)
    probs = []
    started = time.perf_counter()
    for start in range(0, len(audio) - FRAME + 1, FRAME):
        frame = audio[start:start + FRAME]
        p, state = infer(url, model, np.concatenate([context, frame]), state)
        context = frame[-CONTEXT:]
        probs.append((start, p))
    spoken = [p for s, p in probs if SR + 0.1 * SR <= s < SR + len(voice) - 0.3 * SR]
    quiet = [p for s, p in probs if s + FRAME <= SR * 0.9]
    print(json.dumps({
        "frames": len(probs),
        "speech_mean": round(float(np.mean(spoken)), 4),
        "silence_mean": round(float(np.mean(quiet)), 4),
        "seconds": round(time.perf_counter() - started, 3),
    }))


if __name__ == "__main__":
    main()
