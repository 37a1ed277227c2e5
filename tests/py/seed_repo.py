"""Seeds a repo on a Tessera hub with the real client: one commit per folder, each folder
replacing the previous content, tagging each commit. Prints one JSON line per commit.

usage: seed_repo.py REPO TOKEN [--no-xet] FOLDER=TAG ...
"""
import json
import os
import sys

args = sys.argv[1:]
if "--no-xet" in args:
    args.remove("--no-xet")
    os.environ["HF_HUB_DISABLE_XET"] = "1"

from huggingface_hub import HfApi  # noqa: E402  (after the env switch)

repo, token, pairs = args[0], args[1], args[2:]
api = HfApi(endpoint=os.environ["HF_ENDPOINT"], token=token)
api.create_repo(repo, exist_ok=True)
for pair in pairs:
    folder, tag = pair.rsplit("=", 1)
    info = api.upload_folder(repo_id=repo, folder_path=folder, delete_patterns="*")
    if tag:
        api.create_tag(repo, tag=tag, revision=info.oid)
    print(json.dumps({"tag": tag, "commit": info.oid}))
