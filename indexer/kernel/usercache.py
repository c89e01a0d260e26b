"""A per-user cache of the kernels vmdex read from vmlinux files, by build id: a new index
(one per case, say) then does not read the same vmlinux's DWARF again.

    $VMDEX_KERNEL_CACHE   the folder, or "off"; default $XDG_CACHE_HOME/vmdex/kernels
                          (~/.cache/vmdex/kernels)

A file holds what the index's kernels row holds (the types JSON and the packed symtab) and
is named `<build id>-<fingerprint>.kernel`, the fingerprint a hash of this vmdex's kernel
readers (indexer/kernel/*.py): a vmdex that reads kernels differently never takes another's
file. A file is written whole under a temporary name and renamed, and carries the sha256
of its contents: one that does not match is ignored (and replaced by the next read of that
vmlinux). A cache that cannot be written is no cache; the ingest goes on.
"""
from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

MAGIC = b"VMDEXK1\0"
_HEAD = struct.Struct("<8sQ32s")     # magic, length of the types JSON, sha256 of the rest
_fingerprint: str | None = None


def folder() -> Path | None:
    env = os.environ.get("VMDEX_KERNEL_CACHE")
    if env is not None:
        return None if env.strip().lower() in ("", "off", "0", "no") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vmdex" / "kernels"


def fingerprint() -> str:
    """A hash of the code that turns a vmlinux into types and symbols."""
    global _fingerprint
    if _fingerprint is None:
        h = hashlib.sha256()
        for f in sorted(Path(__file__).resolve().parent.glob("*.py")):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
        _fingerprint = h.hexdigest()[:16]
    return _fingerprint


def _path(build_id: str) -> Path | None:
    d = folder()
    return None if d is None else d / f"{build_id.lower()}-{fingerprint()}.kernel"


def load(build_id: str) -> tuple[str, bytes] | None:
    """(types JSON, packed symtab) of this build, or None (no cache, no file, a bad file)."""
    path = _path(build_id)
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if len(data) < _HEAD.size:
        return None
    magic, n, digest = _HEAD.unpack_from(data)
    body = memoryview(data)[_HEAD.size:]
    if magic != MAGIC or n > len(body) or hashlib.sha256(body).digest() != digest:
        return None
    try:
        return bytes(body[:n]).decode(), bytes(body[n:])
    except UnicodeDecodeError:
        return None


def save(build_id: str, types_json: str, symtab: bytes) -> None:
    path = _path(build_id)
    if path is None:
        return
    text = types_json.encode()
    body = text + symtab
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(_HEAD.pack(MAGIC, len(text), hashlib.sha256(body).digest()))
            f.write(body)
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
