"""A `makedumpfile --split` set: one dump written as several kdump-compressed files, each
holding the pages of one pfn range (its sub-header's start_pfn/end_pfn). Read as one
physical memory; a set with a file missing, two copies of one file, or files of two
different dumps is refused in one line (crash refuses the last two the same way).
"""
from __future__ import annotations

import os
from bisect import bisect_right

from ..errors import DumpError, OutOfDump
from .memory import ABSENT, PhysicalMemory


class SplitMemory(PhysicalMemory):
    def __init__(self, parts: list):
        first = parts[0]
        super().__init__(first.path)
        self.parts = sorted(parts, key=lambda m: m.split_range[0])
        self.paths = [m.path for m in parts]          # as given, in the given order
        self.format, self.compression = first.format, first.compression
        self.page_size, self.block_size = first.page_size, first.block_size
        self.machine, self.vmcoreinfo, self.notes = first.machine, first.vmcoreinfo, first.notes
        for attr in ("header_version", "status", "dump_level", "max_mapnr", "sub_phys_base",
                     "utsname_release"):
            setattr(self, attr, getattr(first, attr, None))
        self.split = True
        self._starts = [m.split_range[0] for m in self.parts]

    def _part(self, pfn: int):
        i = bisect_right(self._starts, pfn) - 1
        if i < 0:
            return None
        m = self.parts[i]
        return m if pfn < m.split_range[1] else None

    def page_state(self, pfn: int) -> str:
        m = self._part(pfn)
        return m.page_state(pfn) if m else ABSENT

    def _load_page(self, pfn: int, paddr: int) -> bytes:
        m = self._part(pfn)
        if m is None:
            raise OutOfDump(paddr)
        return m._load_page(pfn, paddr)

    def _release(self) -> None:
        for m in self.parts:
            m.close()


def check_set(parts: list) -> None:
    """crash's rules for a split set (diskdump.c add_diskdump_data), then vmdex's own: the
    files' pfn ranges must cover the whole dump, or pages would silently be missing."""
    names = [m.path for m in parts]
    for i, m in enumerate(parts):
        if not getattr(m, "split", False):
            if len(parts) > 1:
                raise DumpError(f"{m.path}: not a makedumpfile --split file: it cannot be "
                                f"read together with {', '.join(n for n in names if n != m.path)}")
            return
        for other in parts[:i]:
            if _same_file(other.path, m.path):
                raise DumpError(f"split dumpfiles are identical: {other.path}, {m.path}")
            if other.header_bytes != m.header_bytes:
                raise DumpError(f"split dumpfiles derived from different vmcores: "
                                f"{other.path}, {m.path}")
    ranges = sorted(m.split_range for m in parts)
    end, holes = 0, []
    for lo, hi in ranges:
        if lo > end:
            holes.append((end, lo))
        end = max(end, hi)
    top = parts[0].max_mapnr
    if end < top:
        holes.append((end, top))
    if holes:
        lo, hi = holes[0]
        given = ", ".join(names)
        raise DumpError(f"{given}: part of a makedumpfile --split set whose other file(s) are "
                        f"missing: pfns {lo:#x}-{hi - 1:#x} are in none of the files given "
                        f"(give every file of the set: vmdex ingest FILE1 FILE2 ...)")


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def group_split_files(paths: list[str]) -> list[str | tuple[str, ...]]:
    """The dumps a list of files makes: each file alone, but the files of one --split set
    (same kdump header) together as a tuple, in the order first given."""
    from .kdump import HEADER_SIZE, SIGNATURES

    groups: dict[bytes, list[str]] = {}
    out: list = []
    for p in paths:
        key = _split_key(p, HEADER_SIZE, SIGNATURES)
        if key is None:
            out.append(p)
        elif key in groups:
            groups[key].append(p)
        else:
            groups[key] = [p]
            out.append(key)
    return [tuple(groups[d]) if isinstance(d, bytes) and len(groups[d]) > 1
            else groups[d][0] if isinstance(d, bytes) else d for d in out]


def _split_key(path: str, header_size: int, signatures) -> bytes | None:
    """The kdump header of a --split file (what its set's files share), else None."""
    import struct

    try:
        with open(path, "rb") as f:
            hdr = f.read(header_size)
            if hdr[:8] not in signatures or len(hdr) < header_size:
                return None
            version, = struct.unpack_from("<i", hdr, 8)
            bs, = struct.unpack_from("<i", hdr, 428)
            if version < 2 or bs < 512 or bs > 1 << 20:
                return None
            f.seek(bs + 12)        # kdump_sub_header.split
            split = f.read(4)
    except OSError:
        return None
    if len(split) < 4 or not struct.unpack("<i", split)[0]:
        return None
    return hdr
