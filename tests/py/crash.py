"""Crash test phases: `seed` (repo + first commit), `upload` (big Xet upload, to be killed),
`verify EXPECTED_SHA` (branch still at the seed commit, then a retried upload succeeds)."""
import sys

from huggingface_hub import HfApi, snapshot_download

from common import MINILM, SILERO5, URL, WORK, WRITE, files_of, log, same_tree

api = HfApi(endpoint=URL, token=WRITE)
phase = sys.argv[1]
if phase == "seed":
    api.create_repo("alice/crash")
    info = api.upload_folder(repo_id="alice/crash", folder_path=SILERO5, ignore_patterns=[".ready"])
    print(info.oid, flush=True)
elif phase == "upload":
    log("upload starting")
    api.upload_folder(repo_id="alice/crash", folder_path=MINILM, path_in_repo="minilm")
    log("upload finished (the server was not killed in time)")
elif phase == "verify":
    expected = sys.argv[2]
    info = api.repo_info("alice/crash")
    assert info.sha == expected, f"branch moved: {info.sha} != {expected}"
    assert sorted(s.rfilename for s in info.siblings) == files_of(SILERO5)
    same_tree(SILERO5, snapshot_download("alice/crash", cache_dir=WORK / "crash-before"))
    api.upload_folder(repo_id="alice/crash", folder_path=MINILM, path_in_repo="minilm")
    snap = snapshot_download("alice/crash", cache_dir=WORK / "crash-after")
    same_tree(MINILM, snap, prefix="minilm/")
    same_tree(SILERO5, snap, extra_ok=[f for f in files_of(snap) if f.startswith("minilm/")])
    print("crash verify ok")
else:
    raise SystemExit(f"unknown phase {phase}")
