"""Reading physical memory out of a crash dump, whatever its format.

`open_dump(path)` looks at the file's magic and returns a `PhysicalMemory`: ELF cores,
kdump-compressed files (zlib/lzo/snappy/zstd/raw pages) and their flattened form.
"""
from __future__ import annotations

import os

from ..errors import DumpError
from .memory import ABSENT, EXCLUDED, PRESENT, PhysicalMemory

__all__ = ["open_dump", "PhysicalMemory", "PRESENT", "EXCLUDED", "ABSENT"]


def open_dump(path) -> PhysicalMemory:
    """Open a dump for reading; DumpError (one line naming the file) if it can't be."""
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
    if magic.startswith(b"\x7fELF"):
        return ElfMemory(path)
    if magic[:8] in SIGNATURES:
        return KdumpMemory(path, MappedFile(path), "kdump")
    if magic.startswith(FLAT_SIGNATURE):
        return KdumpMemory(path, FlattenedReader(path), "kdump-flattened")
    if len(magic) < 8:
        raise DumpError(f"{path}: file too short to be a dump ({len(magic)} bytes)")
    raise DumpError(f"{path}: unknown dump format (starts with {magic[:8]!r})")
