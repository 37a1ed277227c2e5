"""N concurrent snapshot_downloads of one repo (separate processes and caches); prints
throughput as JSON."""
import json
import multiprocessing as mp
import sys
import time

from common import MINILM, URL, WORK, same_tree

N = int(sys.argv[1]) if len(sys.argv) > 1 else 16
REPO = sys.argv[2] if len(sys.argv) > 2 else "alice/minilm"


def worker(i, barrier, q):
    from huggingface_hub import snapshot_download

    barrier.wait()
    t0 = time.time()
    path = snapshot_download(REPO, cache_dir=WORK / f"load-{i}", endpoint=URL, token=False)
    t1 = time.time()
    same_tree(MINILM, path)
    q.put((i, t0, t1))


if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    barrier, q = ctx.Barrier(N), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(i, barrier, q)) for i in range(N)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    results = [q.get() for p in procs if p.exitcode == 0]
    failed = [i for i, p in enumerate(procs) if p.exitcode != 0]
    size = sum(f.stat().st_size for f in MINILM.rglob("*") if f.is_file())
    start, end = min(r[1] for r in results), max(r[2] for r in results)
    wall = end - start
    out = {
        "clients": N,
        "succeeded": len(results),
        "failed": failed,
        "repo_bytes": size,
        "wall_s": round(wall, 2),
        "throughput_mb_s": round(N * size / wall / 1e6, 1),
        "per_client_s": sorted(round(r[2] - r[1], 2) for r in results),
    }
    print(json.dumps(out))
    sys.exit(0 if not failed else 1)
