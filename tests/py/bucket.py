"""Replicas of `tessera hub serve --storage s3://...` on one bucket (run by tests/it/hub_bucket.rs).

Modes:
  verify URL REPO REV ASSET   snapshot_download through URL equals the asset folder
  race URL_A URL_B            two commits from the same parent through different replicas:
                              exactly one wins, the other gets 409/412; both replicas agree;
                              then two commits without a parent: both land
  scratch URL                 uploads a file of its own (Xet) to a new repo, then deletes the
                              repo: its objects are left for `hub gc`
Prints one JSON line on stdout."""
import json
import os
import pathlib
import sys
import threading

from huggingface_hub import CommitOperationAdd, HfApi, snapshot_download
from huggingface_hub.errors import HfHubHTTPError

from common import MINILM, SILERO5, SILERO6, WORK, WRITE, files_of, log, same_tree

ASSETS = {"silero5": SILERO5, "silero6": SILERO6, "minilm": MINILM}
# What hub_clients.py leaves on alice/silero's main: SILERO6 less model.py and the dist-info.
LEFT_OUT = ("silero_vad/model.py", "silero_vad-6")


def same_as_left(snap):
    want = [f for f in files_of(SILERO6) if not f.startswith(LEFT_OUT)]
    got = files_of(snap)
    assert got == want, f"file lists differ:\n want {want}\n have {got}"
    for f in want:
        assert (SILERO6 / f).read_bytes() == (pathlib.Path(snap) / f).read_bytes(), f
    return len(want)


def verify(url, repo, rev, asset):
    snap = snapshot_download(repo, revision=rev, endpoint=url, token=WRITE, cache_dir=WORK / f"verify-{rev}")
    n = same_as_left(snap) if asset == "silero6-left" else same_tree(ASSETS[asset], snap)
    log(f"{repo}@{rev} through {url}: {n} files identical")
    return {"files": n}


def commit(api, repo, parent, name, results):
    try:
        info = api.create_commit(
            repo,
            operations=[CommitOperationAdd(path_in_repo=f"{name}.txt", path_or_fileobj=name.encode() * 1000)],
            commit_message=f"from {name}",
            parent_commit=parent,
        )
        results[name] = {"ok": info.oid}
    except HfHubHTTPError as e:
        results[name] = {"status": e.response.status_code, "message": e.response.headers.get("X-Error-Message", "")}


def at_once(*commits):
    """Runs `commit(api, repo, parent, name)` for each tuple in its own thread; the results."""
    results = {}
    threads = [threading.Thread(target=commit, args=(*c, results)) for c in commits]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def race(url_a, url_b):
    a, b = HfApi(endpoint=url_a, token=WRITE), HfApi(endpoint=url_b, token=WRITE)
    a.create_repo("alice/race")
    parent = b.list_repo_refs("alice/race").branches[0].target_commit  # visible through B at once
    results = at_once((a, "alice/race", parent, "via-a"), (b, "alice/race", parent, "via-b"))
    heads = [api.list_repo_refs("alice/race").branches[0].target_commit for api in (a, b)]
    files = sorted(a.list_repo_files("alice/race"))
    # Without a parent each commit goes on whatever head it finds: both land, as on one server.
    free = at_once((a, "alice/race", None, "free-a"), (b, "alice/race", None, "free-b"))
    after = sorted(b.list_repo_files("alice/race"))
    return {"parent": parent, "results": results, "heads": heads, "files": files, "free": free, "after": after}


def scratch(url):
    api = HfApi(endpoint=url, token=WRITE)
    api.create_repo("alice/scratch")
    data = os.urandom(3 << 20)
    info = api.upload_file(path_or_fileobj=data, path_in_repo="scratch.bin", repo_id="alice/scratch")
    api.delete_repo("alice/scratch")
    return {"commit": info.oid}


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    modes = {"verify": verify, "race": race, "scratch": scratch}
    print(json.dumps(modes[mode](*args)))


main()
