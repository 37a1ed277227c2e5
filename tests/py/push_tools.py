"""The reference client beside `tessera push` (run by tests/it/push.rs and benches/push.rs).

usage: push_tools.py snapshot REPO REV CACHE_DIR        prints the snapshot folder
       push_tools.py upload REPO FOLDER TOKEN            upload_folder (hf_xet); prints the commit
       push_tools.py commit_file REPO PATH TEXT TOKEN    upload_file of a small text; prints the commit
"""
import os
import sys

from huggingface_hub import HfApi, snapshot_download

URL = os.environ["HF_ENDPOINT"]
cmd, args = sys.argv[1], sys.argv[2:]

if cmd == "snapshot":
    repo, rev, cache = args
    print(snapshot_download(repo, revision=rev, cache_dir=cache, token=False))
elif cmd == "upload":
    repo, folder, token = args
    api = HfApi(endpoint=URL, token=token)
    api.create_repo(repo, exist_ok=True)
    print(api.upload_folder(repo_id=repo, folder_path=folder).oid)
elif cmd == "commit_file":
    repo, path, text, token = args
    api = HfApi(endpoint=URL, token=token)
    print(api.upload_file(path_or_fileobj=text.encode(), path_in_repo=path, repo_id=repo).oid)
else:
    raise SystemExit(f"unknown command {cmd}")
