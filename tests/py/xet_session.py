"""hf_xet's session API straight against the CAS endpoint (tokens from the Hub token routes)."""
import os

import hf_xet
from huggingface_hub import HfApi

from common import SILERO6, URL, WORK, WRITE, log

api = HfApi(endpoint=URL, token=WRITE)
api.create_repo("alice/xetdirect")
auth = {"Authorization": f"Bearer {WRITE}"}
base = f"{URL}/api/models/alice/xetdirect"
session = hf_xet.XetSession()

payload = os.urandom(3 << 20) + b"tessera" * 100000
src = SILERO6 / "silero_vad/data/silero_vad_op18_ifless.onnx"
with session.new_upload_commit(token_refresh_url=f"{base}/xet-write-token/main", token_refresh_headers=auth) as commit:
    up_bytes = commit.start_upload_bytes(payload)
    up_file = commit.start_upload_file(str(src))
metas = [up_bytes.result(), up_file.result()]
infos = [m.xet_info for m in metas]
for i in infos:
    log("uploaded", i.hash, i.file_size)
assert infos[0].file_size == len(payload) and infos[1].file_size == src.stat().st_size
# The file hash the client computed offline agrees with the one it uploaded.
assert hf_xet.hash_files([str(src)])[0].hash == infos[1].hash

out = WORK / "xet-direct"
out.mkdir(parents=True, exist_ok=True)
with session.new_file_download_group(token_refresh_url=f"{base}/xet-read-token/main", token_refresh_headers=auth) as group:
    group.start_download_file(hf_xet.XetFileInfo(infos[0].hash, infos[0].file_size), str(out / "a.bin"))
    group.start_download_file(hf_xet.XetFileInfo(infos[1].hash, infos[1].file_size), str(out / "b.onnx"))
assert (out / "a.bin").read_bytes() == payload
assert (out / "b.onnx").read_bytes() == src.read_bytes()

# A read token of another repo cannot reconstruct these files.
api.create_repo("alice/other")
stranger = hf_xet.XetSession()
try:
    with stranger.new_file_download_group(
        token_refresh_url=f"{URL}/api/models/alice/other/xet-read-token/main", token_refresh_headers=auth
    ) as group:
        group.start_download_file(hf_xet.XetFileInfo(infos[0].hash, infos[0].file_size), str(out / "c.bin"))
    raise AssertionError("download with another repo's token succeeded")
except AssertionError:
    raise
except Exception as e:  # noqa: BLE001
    log("foreign token refused:", type(e).__name__)
print("xet_session ok")
