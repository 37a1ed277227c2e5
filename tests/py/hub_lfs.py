"""LFS path (HF_HUB_DISABLE_XET=1): upload_folder through the LFS batch API, plain HTTP
downloads, and a resumed (ranged) hf_hub_download after a simulated network drop."""
import os

assert os.environ.get("HF_HUB_DISABLE_XET") == "1", "run with HF_HUB_DISABLE_XET=1"

import httpx2  # noqa: E402
from huggingface_hub import HfApi, hf_hub_download, snapshot_download  # noqa: E402

from common import MINILM, SILERO5, URL, WORK, WRITE, log, same_tree  # noqa: E402

api = HfApi(endpoint=URL, token=WRITE)
repo = "alice/minilm-lfs"
api.create_repo(repo)
info = api.upload_folder(repo_id=repo, folder_path=MINILM, commit_message="MiniLM via LFS")
log("LFS upload commit", info.oid)
assert len(info.oid) == 40

# Uploading the same folder again is a no-op for the LFS objects (batch answers without actions).
api.upload_folder(repo_id=repo, folder_path=MINILM, commit_message="again")

entries = {e.path: e for e in api.list_repo_tree(repo, recursive=True)}
st = entries["model.safetensors"]
assert st.lfs is not None and st.lfs.size == 90868376, st
assert entries["config.json"].lfs is None

snap = snapshot_download(repo, cache_dir=WORK / "lfs-cache")
n = same_tree(MINILM, snap)
log(f"LFS snapshot ok ({n} files)")

# Resume: drop the first /resolve body after its first piece; the client must resume with Range.
seen = []
orig = httpx2.Response.iter_bytes
dropped = {"done": False}


def flaky(self, *a, **k):
    it = orig(self, *a, **k)
    req = self.request
    if req.method == "GET" and "/resolve/" in str(req.url):
        seen.append((self.status_code, req.headers.get("range")))
        if not dropped["done"]:
            dropped["done"] = True
            yield next(it)
            raise httpx2.RemoteProtocolError("simulated connection drop", request=req)
    yield from it


httpx2.Response.iter_bytes = flaky
path = hf_hub_download(repo, "model.safetensors", cache_dir=WORK / "resume-cache")
httpx2.Response.iter_bytes = orig
assert open(path, "rb").read() == (MINILM / "model.safetensors").read_bytes()
assert seen[0] == (200, None), seen
assert seen[1][0] == 206 and seen[1][1].startswith("bytes=") and seen[1][1] != "bytes=0-", seen
log("resumed download ok", seen)

# A small silero repo through LFS too (binary .onnx/.jit files are LFS, text files regular).
api.create_repo("alice/silero-lfs")
api.upload_folder(repo_id="alice/silero-lfs", folder_path=SILERO5, ignore_patterns=[".ready"])
same_tree(SILERO5, snapshot_download("alice/silero-lfs", cache_dir=WORK / "lfs-cache"))
print("hub_lfs ok")
