"""Hub parity checks run by tests/it/parity.rs with huggingface_hub: pull requests, Spaces and
LFS multipart uploads against `tessera hub serve`. Usage: parity.py MODE ARGS...; prints JSON."""
import json
import os
import pathlib
import sys
import urllib.error
import urllib.request

from huggingface_hub import CommitOperationAdd, HfApi, snapshot_download

URL = os.environ["HF_ENDPOINT"]
TOKEN = os.environ["HF_TOKEN"]
api = HfApi(endpoint=URL, token=TOKEN)


def open_pr(repo, work):
    """create_commit(create_pr=True) opens refs/pr/1, readable there and only there."""
    work = pathlib.Path(work)
    big = os.urandom(3 << 20)
    (work / "weights.bin").write_bytes(big)
    ops = [
        CommitOperationAdd("weights.bin", str(work / "weights.bin")),
        CommitOperationAdd("notes.txt", b"reviewed\n"),
    ]
    main = api.model_info(repo).sha
    info = api.create_commit(repo, ops, commit_message="propose weights", create_pr=True)
    assert (info.pr_revision, info.pr_num) == ("refs/pr/1", 1), info
    assert api.model_info(repo).sha == main, "a pull request must not move main"
    snap = pathlib.Path(snapshot_download(repo, revision="refs/pr/1", cache_dir=work / "c1"))
    assert (snap / "weights.bin").read_bytes() == big
    assert (snap / "notes.txt").read_bytes() == b"reviewed\n"
    plain = pathlib.Path(snapshot_download(repo, cache_dir=work / "c2"))
    assert not (plain / "weights.bin").exists()
    ds = [(d.num, d.is_pull_request, d.status) for d in api.get_repo_discussions(repo)]
    assert ds == [(1, True, "open")], ds
    refs = api.list_repo_refs(repo, include_pull_requests=True)
    assert [(r.ref, r.target_commit) for r in refs.pull_requests] == [("refs/pr/1", info.oid)]
    return {"pr_head": info.oid, "main": main}


def merge(repo, num):
    """merge_pull_request moves main; the details show the merge."""
    api.merge_pull_request(repo, int(num))
    d = api.get_discussion_details(repo, int(num))
    assert d.status == "merged" and d.target_branch == "refs/heads/main", d
    return {"main": api.model_info(repo).sha, "merge": d.merge_commit_oid}


def new_pr(repo):
    """create_pull_request opens a draft with the next number."""
    d = api.create_pull_request(repo, "an empty proposal", description="review me")
    assert d.is_pull_request and d.status == "draft", d
    return {"num": d.num, "events": len(d.events)}


def space(repo):
    """space_info reports the SDK; creating a Space without one is a 400 naming the sdk."""
    info = api.space_info(repo)
    ns, _ = repo.split("/")
    body = json.dumps({"name": "no-sdk", "organization": ns, "type": "space"}).encode()
    req = urllib.request.Request(
        f"{URL}/api/repos/create",
        data=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        urllib.request.urlopen(req)
        raise AssertionError("a Space without an SDK was created")
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    return {"sdk": info.sdk, "no_sdk_status": status, "no_sdk_error": json.loads(text)["error"]}


def upload(repo, path, name):
    """upload_file (run with HF_HUB_DISABLE_XET=1: the LFS batch API)."""
    api.create_repo(repo, exist_ok=True)
    info = api.upload_file(path_or_fileobj=path, path_in_repo=name, repo_id=repo)
    return {"commit": info.oid}


def snapshot(repo, rev, cache):
    return {"path": snapshot_download(repo, revision=rev, cache_dir=cache)}


MODES = {"open_pr": open_pr, "merge": merge, "new_pr": new_pr, "space": space,
         "upload": upload, "snapshot": snapshot}

if __name__ == "__main__":
    print(json.dumps(MODES[sys.argv[1]](*sys.argv[2:])))
