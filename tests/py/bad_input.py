"""Bad input is refused with 4xx and stores nothing: xorbs that do not match their hash,
shards naming missing xorbs, escaping commit paths, malformed NDJSON, oversized bodies,
wrong LFS bytes, tampered presigned URLs, missing or weak tokens."""
import base64
import hashlib
import json
import os

import httpx2
from huggingface_hub import HfApi

from common import READ, URL, WRITE, log

api = HfApi(endpoint=URL, token=WRITE)
c = httpx2.Client(base_url=URL, timeout=120)
H = {"Authorization": f"Bearer {WRITE}"}
api.create_repo("alice/bad")
api.upload_file(path_or_fileobj=b"hello\n", path_in_repo="a.txt", repo_id="alice/bad")
head = api.repo_info("alice/bad").sha


def unchanged():
    info = api.repo_info("alice/bad")
    assert info.sha == head, (info.sha, head)
    assert [s.rfilename for s in info.siblings] == ["a.txt"]


def post_commit(body, status, headers=None):
    r = c.post("/api/models/alice/bad/commit/main", content=body, headers={**H, "content-type": "application/x-ndjson", **(headers or {})})
    assert r.status_code == status, (r.status_code, r.text)
    if status >= 400:
        assert r.headers.get("x-error-message"), r.headers
    return r


def ndjson(*lines):
    return ("\n".join(json.dumps(x) for x in lines) + "\n").encode()


hdr = {"key": "header", "value": {"summary": "s", "description": ""}}


def inline(path, data=b"x"):
    return {"key": "file", "value": {"content": base64.b64encode(data).decode(), "path": path, "encoding": "base64"}}


# --- commits ---
for p in ["../x", "/x", ".git/config", "a/../../x", "a//b", "x/.git/hooks", "./x", "x/..", ".cache/y"]:
    post_commit(ndjson(hdr, inline(p)), 400)
post_commit(ndjson(hdr), 400)  # empty commit
post_commit(b"{not json\n", 400)
post_commit(ndjson(inline("b.txt")), 400)  # no header
post_commit(ndjson(hdr, {"key": "file", "value": {"content": "!!!", "path": "b.txt", "encoding": "base64"}}), 400)
post_commit(ndjson(hdr, {"key": "bogus", "value": {}}), 400)
post_commit(ndjson(hdr, {"key": "lfsFile", "value": {"path": "c.bin", "algo": "sha256", "oid": "0" * 64, "size": 3}}), 400)
r = post_commit(ndjson(hdr, {"key": "deletedFile", "value": {"path": "missing.txt"}}), 404)
assert r.headers["x-error-code"] == "EntryNotFound"
stale = {"key": "header", "value": {"summary": "s", "parentCommit": "0" * 40}}
post_commit(ndjson(stale, inline("b.txt")), 412)
post_commit(ndjson(hdr, inline("a.txt/child")), 400)  # file and folder at one path
r = c.post("/api/models/alice/bad/commit/main", content=ndjson(hdr, inline("b.txt")), headers={"content-type": "application/x-ndjson"})
assert r.status_code == 401, r.status_code
unchanged()
log("commit refusals ok")

# --- oversized bodies: refused (413, or the connection is cut before the body is read) ---
def oversized(method, path, size, headers):
    try:
        r = c.request(method, path, content=b"\0" * size, headers=headers)
        assert r.status_code == 413, (path, r.status_code, r.text)
    except (httpx2.WriteError, httpx2.ReadError, httpx2.RemoteProtocolError) as e:
        log("oversized body cut:", path, type(e).__name__)
    assert c.get("/health").status_code == 200


oversized("POST", "/api/models/alice/bad/preupload/main", 17 << 20, H)
oversized("POST", "/api/repos/create", 17 << 20, H)

# --- CAS ---
tok = c.get("/api/models/alice/bad/xet-write-token/main", headers=H).json()
assert set(tok) >= {"accessToken", "exp", "casUrl"}, tok
cas = tok["casUrl"]
X = {"Authorization": f"Bearer {tok['accessToken']}"}
read_tok = c.get("/api/models/alice/bad/xet-read-token/main", headers={"Authorization": f"Bearer {READ}"}).json()
XR = {"Authorization": f"Bearer {read_tok['accessToken']}"}

chunk = b"hello xorb, this is one chunk"
xorb_body = bytes([0]) + len(chunk).to_bytes(3, "little") + bytes([0]) + len(chunk).to_bytes(3, "little") + chunk
fake = "ab" * 32
r = c.post(f"{cas}/v1/xorbs/default/{fake}", content=xorb_body, headers=X)
assert r.status_code == 400, (r.status_code, r.text)
assert c.head(f"{cas}/v1/xorbs/default/{fake}", headers=X).status_code == 404
assert c.post(f"{cas}/v1/xorbs/default/{fake}", content=b"garbage", headers=X).status_code == 400
assert c.post(f"{cas}/v1/xorbs/default/nothex", content=xorb_body, headers=X).status_code == 400
assert c.post(f"{cas}/v1/xorbs/default/{fake}", content=xorb_body).status_code == 401
assert c.post(f"{cas}/v1/xorbs/default/{fake}", content=xorb_body, headers={"Authorization": "Bearer xet_forged.00"}).status_code == 401
assert c.post(f"{cas}/v1/xorbs/default/{fake}", content=xorb_body, headers=XR).status_code == 403
oversized("POST", f"{cas}/v1/xorbs/default/{fake}", (65 << 20) + 1, X)
assert c.head(f"{cas}/v1/xorbs/default/{fake}", headers=X).status_code == 404


def shard_naming(xorb_hex):
    """Upload-form shard: one file of one term in xorb `xorb_hex`, with verification + sha256."""
    magic = bytes.fromhex("48465265706f4d6574614461746100556967456a7b815783a5bdd95ccdd14aa9")
    out = magic + (2).to_bytes(8, "little") + (0).to_bytes(8, "little")
    out += os.urandom(32) + (0xC0000000).to_bytes(4, "little") + (1).to_bytes(4, "little") + bytes(8)
    out += bytes.fromhex(xorb_hex) + (0).to_bytes(4, "little") + (100).to_bytes(4, "little")
    out += (0).to_bytes(4, "little") + (1).to_bytes(4, "little")
    out += os.urandom(32) + bytes(16)  # verification
    out += hashlib.sha256(b"x").digest() + bytes(16)  # metadata ext
    out += b"\xff" * 32 + bytes(16)  # end of file section
    out += b"\xff" * 32 + bytes(16)  # end of CAS section
    return out


for version in ("v1", "v2"):
    r = c.post(f"{cas}/{version}/shards", content=shard_naming("cd" * 32), headers=X)
    assert r.status_code == 400, (version, r.status_code, r.text)
    assert "not uploaded" in r.text or "xorb" in r.text, r.text
assert c.post(f"{cas}/v1/shards", content=b"not a shard", headers=X).status_code == 400
assert c.post(f"{cas}/v1/shards", content=shard_naming("cd" * 32), headers=XR).status_code == 403
assert c.get(f"{cas}/v1/chunks/default/{'ef' * 32}", headers=X).status_code == 404
assert c.get(f"{cas}/v1/reconstructions/{'ef' * 32}", headers=X).status_code == 404
log("CAS refusals ok")

# --- LFS: wrong bytes are refused and nothing is stored; right bytes then work ---
data = os.urandom(1 << 20)
oid = hashlib.sha256(data).hexdigest()
LH = {**H, "Accept": "application/vnd.git-lfs+json", "Content-Type": "application/vnd.git-lfs+json"}
batch = {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}], "hash_algo": "sha256"}
r = c.post("/alice/bad.git/info/lfs/objects/batch", json=batch, headers=LH)
assert r.status_code == 200, r.text
obj = r.json()["objects"][0]
href = obj["actions"]["upload"]["href"]
bad = bytearray(data)
bad[12345] ^= 1
assert c.put(href, content=bytes(bad)).status_code == 400
assert c.put(href, content=data[:-1]).status_code == 400
assert c.put(href.replace("sig=", "sig=0"), content=data).status_code == 403
r = c.post("/alice/bad.git/info/lfs/objects/batch", json=batch, headers=LH)
assert "actions" in r.json()["objects"][0], "a refused upload must not be stored"
assert c.put(href, content=data).status_code == 200
r = c.post("/alice/bad.git/info/lfs/objects/batch", json=batch, headers=LH)
assert "actions" not in r.json()["objects"][0]
lfs_line = {"key": "lfsFile", "value": {"path": "blob.bin", "algo": "sha256", "oid": oid, "size": len(data)}}
post_commit(ndjson(hdr, lfs_line), 200)
head = api.repo_info("alice/bad").sha
log("LFS refusals ok")

# --- presigned fetch URLs authorise only their ranges ---
entry = [e for e in api.list_repo_tree("alice/bad") if e.path == "blob.bin"][0]
rec = c.get(f"{cas}/v1/reconstructions/{entry.xet_hash}", headers=XR)
assert rec.status_code == 200, rec.text
fi = next(iter(rec.json()["fetch_info"].values()))[0]
url, (a, b) = fi["url"], (fi["url_range"]["start"], fi["url_range"]["end"])
assert c.get(url, headers={"Range": f"bytes={a}-{b}"}).status_code == 206
assert c.get(url, headers={"Range": f"bytes={a}-{b + 1}"}).status_code == 403
assert c.get(url.replace("r=", "r=0"), headers={"Range": f"bytes={a}-{b}"}).status_code == 403
assert c.get(f"{cas}/v1/reconstructions/{entry.xet_hash}", headers={**XR, "Range": f"bytes={len(data)}-"}).status_code == 416
part = c.get(f"{cas}/v2/reconstructions/{entry.xet_hash}", headers={**XR, "Range": "bytes=100000-199999"})
assert part.status_code == 200 and part.json()["terms"], part.text
print("bad_input ok")
