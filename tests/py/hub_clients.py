"""The reference client (huggingface_hub + hf_xet, default Xet path) against the server:
repos, uploads, tags, branches, listings, snapshots at branch/tag/commit, deletions,
history, private repos and error mapping."""
import os

assert os.environ.get("HF_HUB_DISABLE_XET") != "1"

from huggingface_hub import HfApi, hf_hub_download, snapshot_download  # noqa: E402
from huggingface_hub.errors import (  # noqa: E402
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from common import BOB, MINILM, READ, SILERO5, SILERO6, URL, WORK, WRITE, expect, files_of, log, same_tree  # noqa: E402

api = HfApi(endpoint=URL, token=WRITE)
anon = HfApi(endpoint=URL, token=False)
reader = HfApi(endpoint=URL, token=READ)
bob = HfApi(endpoint=URL, token=BOB)

# --- create_repo: public, private, other types, exist_ok ---
url = api.create_repo("alice/silero")
assert str(url).startswith(URL) and str(url).endswith("alice/silero"), url
api.create_repo("alice/silero", exist_ok=True)
expect(HfHubHTTPError, api.create_repo, "alice/silero", status=409)
api.create_repo("alice/secret", private=True)
api.create_repo("alice/data", repo_type="dataset")
api.create_repo("alice/app", repo_type="space", space_sdk="static")
assert api.repo_info("alice/secret").private is True
assert api.repo_info("alice/data", repo_type="dataset").id == "alice/data"

# --- upload_folder (Xet), tag, second version, branch from the tag ---
c5 = api.upload_folder(repo_id="alice/silero", folder_path=SILERO5, ignore_patterns=[".ready"], commit_message="5.1.2")
api.create_tag("alice/silero", tag="v5.1.2")
expect(HfHubHTTPError, api.create_tag, "alice/silero", tag="v5.1.2", status=409)
c6 = api.upload_folder(
    repo_id="alice/silero", folder_path=SILERO6, ignore_patterns=[".ready"], delete_patterns=["*"], commit_message="6.2.3"
)
api.create_branch("alice/silero", branch="old", revision="v5.1.2")
api.create_branch("alice/silero", branch="old", exist_ok=True)
log("commits", c5.oid, c6.oid)
assert len(c5.oid) == 40 and len(c6.oid) == 40 and c5.oid != c6.oid

files = api.list_repo_files("alice/silero")
assert files == files_of(SILERO6), files
refs = api.list_repo_refs("alice/silero")
branches = {b.name: b.target_commit for b in refs.branches}
tags = {t.name: t.target_commit for t in refs.tags}
assert branches == {"main": c6.oid, "old": c5.oid}, branches
assert tags == {"v5.1.2": c5.oid}, tags
tree = {e.path: e for e in api.list_repo_tree("alice/silero", recursive=True)}
onnx = tree["silero_vad/data/silero_vad.onnx"]
assert onnx.lfs is not None and onnx.xet_hash and len(onnx.xet_hash) == 64, onnx

for rev, src in [("main", SILERO6), ("old", SILERO5), ("v5.1.2", SILERO5), (c5.oid, SILERO5), (c6.oid, SILERO6)]:
    snap = snapshot_download("alice/silero", revision=rev, cache_dir=WORK / f"cache-{rev}")
    same_tree(SILERO5 if src is SILERO5 else SILERO6, snap)
    log("snapshot ok at", rev)

# --- single-file downloads (Xet-backed and regular) ---
p = hf_hub_download("alice/silero", "silero_vad/data/silero_vad.jit", cache_dir=WORK / "single")
assert open(p, "rb").read() == (SILERO6 / "silero_vad/data/silero_vad.jit").read_bytes()
p = hf_hub_download("alice/silero", "silero_vad/model.py", revision="v5.1.2", cache_dir=WORK / "single")
assert open(p, "rb").read() == (SILERO5 / "silero_vad/model.py").read_bytes()

# --- MiniLM: uploaded before through LFS; the Xet upload of the same bytes dedups, and the
#     LFS-uploaded repo downloads through Xet ---
api.create_repo("alice/minilm")
api.upload_folder(repo_id="alice/minilm", folder_path=MINILM, commit_message="MiniLM via Xet")
same_tree(MINILM, snapshot_download("alice/minilm", cache_dir=WORK / "minilm-xet"))
same_tree(MINILM, snapshot_download("alice/minilm-lfs", cache_dir=WORK / "minilm-lfs-xet"))
log("MiniLM ok")

# --- delete a file and a folder by commit ---
api.delete_file("silero_vad/model.py", "alice/silero")
expect(EntryNotFoundError, api.delete_file, "silero_vad/model.py", "alice/silero")
assert "silero_vad/model.py" not in api.list_repo_files("alice/silero")
api.delete_folder("silero_vad-6.2.3.dist-info", "alice/silero")
left = api.list_repo_files("alice/silero")
assert not any(f.startswith("silero_vad-6.2.3.dist-info") for f in left), left
snap = snapshot_download("alice/silero", cache_dir=WORK / "after-delete")
assert sorted(files_of(snap)) == sorted(left)
assert left == [f for f in files_of(SILERO6) if f != "silero_vad/model.py" and not f.startswith("silero_vad-6")]

# --- history ---
commits = api.list_repo_commits("alice/silero")
assert [c.commit_id for c in commits][2:4] == [c6.oid, c5.oid], [c.commit_id for c in commits]
assert commits[-1].title == "initial commit"

# --- private repo: visible to its owner, invisible to others ---
api.upload_file(path_or_fileobj=b"top secret\n", path_in_repo="s.txt", repo_id="alice/secret")
assert api.list_repo_files("alice/secret") == ["s.txt"]
p = hf_hub_download("alice/secret", "s.txt", token=WRITE, cache_dir=WORK / "secret")
assert open(p, "rb").read() == b"top secret\n"
expect(RepositoryNotFoundError, anon.repo_info, "alice/secret")
expect(RepositoryNotFoundError, bob.repo_info, "alice/secret")
expect(RepositoryNotFoundError, bob.list_repo_files, "alice/secret")
expect(RepositoryNotFoundError, hf_hub_download, "alice/secret", "s.txt", token=False, cache_dir=WORK / "x1")
expect(RepositoryNotFoundError, hf_hub_download, "alice/secret", "s.txt", token=BOB, cache_dir=WORK / "x2")
assert reader.list_repo_files("alice/secret") == ["s.txt"]

# --- error mapping ---
expect(RepositoryNotFoundError, api.repo_info, "alice/nope")
expect(RepositoryNotFoundError, anon.repo_info, "alice/nope")
expect(RevisionNotFoundError, api.repo_info, "alice/silero", revision="nope")
expect(RevisionNotFoundError, hf_hub_download, "alice/silero", "README.md", revision="nope", cache_dir=WORK / "x3")
expect(EntryNotFoundError, hf_hub_download, "alice/silero", "nope.txt", cache_dir=WORK / "x4")
expect(HfHubHTTPError, anon.create_repo, "alice/anon", status=401)
expect(HfHubHTTPError, reader.create_repo, "alice/ro", status=403)
expect(HfHubHTTPError, anon.upload_file, path_or_fileobj=b"x", path_in_repo="x", repo_id="alice/silero", status=401)
expect(HfHubHTTPError, reader.upload_file, path_or_fileobj=b"x", path_in_repo="x", repo_id="alice/silero", status=403)
expect(HfHubHTTPError, bob.upload_file, path_or_fileobj=b"x", path_in_repo="x", repo_id="alice/silero", status=403)
expect(HfHubHTTPError, bob.create_repo, "alice/bobs", status=403)
expect(HfHubHTTPError, HfApi(endpoint=URL, token="hf_bogus").repo_info, "alice/silero", status=401)
# anonymous reads of public repos work
assert anon.list_repo_files("alice/silero") == left
print("hub_clients ok")
