"""Reading physical memory out of a crash dump, whatever its format.

`open_dump(path)` looks at the file's magic and returns a `PhysicalMemory`: ELF cores,
kdump-compressed files (zlib/lzo/snappy/zstd/raw pages) and their flattened form.
"""
from __future__ import annotations

import os
import struct

from ..errors import DumpError
from .memory import ABSENT, EXCLUDED, PRESENT, PhysicalMemory

__all__ = ["open_dump", "PhysicalMemory", "PRESENT", "EXCLUDED", "ABSENT"]


def open_dump(path) -> PhysicalMemory:
    """Open a dump for reading; DumpError (one line naming the file) if it can't be. A list
    of paths is a makedumpfile --split set (indexer.dumpfile.split); a single split file
    must hold the whole dump."""
    if isinstance(path, (list, tuple)):
        return _open_set([os.fspath(p) for p in path])
    from .split import check_set

    mem = _open_one(path)
    if getattr(mem, "split", False):
        try:
            check_set([mem])
        except BaseException:
            mem.close()
            raise
    return mem


def _open_set(paths: list[str]) -> PhysicalMemory:
    from .split import SplitMemory, check_set

    parts: list[PhysicalMemory] = []
    try:
        for p in paths:
            parts.append(_open_one(p))
        check_set(parts)
    except BaseException:
        for m in parts:
            m.close()
        raise
    return parts[0] if len(parts) == 1 else SplitMemory(parts)


def _open_one(path) -> PhysicalMemory:
    from .elf import ElfMemory
    from .flattened import FLAT_SIGNATURE, FlattenedReader, MappedFile
    from .kdump import SIGNATURES, KdumpMemory

    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(16)
    except OSError as e:
        raise DumpError(f"{path}: cannot open: {e.strerror or e}") from None
    if not magic:
        raise DumpError(f"{path}: empty file")
    for sig, fmt in ((b"\x7fELF", "ELF"), *((s, "kdump") for s in SIGNATURES),
                     (FLAT_SIGNATURE, "flattened kdump")):
        if len(magic) < len(sig) and sig.startswith(magic):
            raise DumpError(f"{path}: file too short: truncated {fmt} header "
                            f"({_bytes(len(magic))})")
    try:
        if magic.startswith(b"\x7fELF"):
            return ElfMemory(path)
        if magic[:8] in SIGNATURES:
            return KdumpMemory(path, MappedFile(path), "kdump")
        if magic.startswith(FLAT_SIGNATURE):
            return KdumpMemory(path, FlattenedReader(path), "kdump-flattened")
    except DumpError:
        raise
    except OSError as e:
        raise DumpError(f"{path}: cannot read: {e.strerror or e}") from None
    except MemoryError:
        raise DumpError(f"{path}: corrupt dump header (absurd sizes)") from None
    except (struct.error, ValueError, OverflowError, IndexError, TypeError) as e:
        # Whatever a damaged header trips over inside the parsers: one line, no traceback.
        raise DumpError(f"{path}: corrupt dump header ({type(e).__name__}: {e})") from None
    if len(magic) < 8:
        raise DumpError(f"{path}: file too short to be a dump ({_bytes(len(magic))})")
    raise DumpError(f"{path}: unknown dump format (starts with {magic[:8]!r})")


def _bytes(n: int) -> str:
    return "1 byte" if n == 1 else f"{n} bytes"
