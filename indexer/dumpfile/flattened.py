"""Byte readers for kdump files: a plain mmap, and an index over a flattened stream.

The flattened format (makedumpfile -F, QEMU's kdump output) is a 4096-byte header then
records {BE i64 offset, BE i64 size, data} up to offset == -1; applying them in order gives
the ordinary kdump file. Rather than writing that file out, we scan the record headers once
and serve reads of the "logical" file from the records, so kdump.py has one code path.

Both readers offer `size` (logical length), `stored` (bytes actually held: a flattened
stream may describe a huge sparse file), `pread(offset, n)` (short only at the logical end)
and `close()`.
"""
from __future__ import annotations

import mmap
import os
import struct
from bisect import bisect_right

import numpy as np

from ..errors import DumpError

FLAT_SIGNATURE = b"makedumpfile"
FLAT_HEADER_SIZE = 4096
_REC = struct.Struct(">qq")
MAX_LOGICAL = 1 << 56  # no kdump file is 64 PiB: a larger record offset is corruption


class MappedFile:
    """An ordinary file, read through mmap."""

    def __init__(self, path: str):
        with open(path, "rb") as f:
            self.size = self.stored = os.fstat(f.fileno()).st_size
            if self.size == 0:
                raise DumpError(f"{path}: empty file")
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

    def pread(self, offset: int, n: int) -> bytes:
        return self._mm[offset:offset + n]

    def close(self) -> None:
        self._mm.close()


class FlattenedReader:
    """The reassembled view of a flattened file. Later records overwrite earlier ones;
    bytes no record wrote read as zeros (as in a reassembled sparse file)."""

    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as f:
            fsize = os.fstat(f.fileno()).st_size
            if fsize < FLAT_HEADER_SIZE:
                raise DumpError(f"{path}: truncated flattened header ({fsize} bytes)")
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            self._index(path, fsize)
        except BaseException:
            self._mm.close()
            raise

    def _index(self, path: str, fsize: int) -> None:
        mm = self._mm
        if not mm[:16].startswith(FLAT_SIGNATURE):
            raise DumpError(f"{path}: not a flattened makedumpfile file")
        ftype, version = struct.unpack_from(">qq", mm, 16)
        if ftype != 1:
            raise DumpError(f"{path}: unsupported flattened file type {ftype} (version {version})")

        recs = []  # (logical offset, size, file position of data), in stream order
        pos = FLAT_HEADER_SIZE
        self.truncated = True  # until the end marker is seen
        while pos + _REC.size <= fsize:
            off, size = _REC.unpack_from(mm, pos)
            if off == -1:
                self.truncated = False
                break
            if off < 0 or size < 0 or off > MAX_LOGICAL:
                raise DumpError(f"{path}: corrupt flattened record at file offset {pos}")
            pos += _REC.size
            size = min(size, fsize - pos)  # a cut-off stream keeps what it has
            if size:
                recs.append((off, size, pos))
            pos += size
        if not recs:
            raise DumpError(f"{path}: flattened file holds no data records")
        self.records = len(recs)

        recs = _later_wins(recs)
        arr = np.array(recs, dtype=np.int64).reshape(-1, 3)
        # plain lists: pread runs twice per page read (descriptor, data) and numpy's
        # per-call and per-scalar costs were most of its time
        self._start, self._len, self._fpos = (arr[:, 0].tolist(), arr[:, 1].tolist(),
                                              arr[:, 2].tolist())
        self.size = int((arr[:, 0] + arr[:, 1]).max())
        self.stored = int(arr[:, 1].sum())  # bytes records hold (the rest reads as zeros)

    def pread(self, offset: int, n: int) -> bytes:
        n = max(0, min(n, self.size - offset))
        start, length, fpos, mm = self._start, self._len, self._fpos, self._mm
        i = bisect_right(start, offset) - 1
        parts = []
        while n > 0:
            if i >= 0 and offset < start[i] + length[i]:
                rel = offset - start[i]
                k = min(n, length[i] - rel)
                fp = fpos[i] + rel
                parts.append(mm[fp:fp + k])
            else:  # a hole up to the next record
                k = min(n, start[i + 1] - offset) if i + 1 < len(start) else n
                parts.append(bytes(k))
            offset += k
            n -= k
            if i + 1 < len(start) and offset >= start[i + 1]:
                i += 1
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        self._mm.close()


def _later_wins(recs: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Disjoint (offset, size, filepos) pieces sorted by offset, where a byte written by
    several records comes from the last of them. The usual stream has no overlaps, so
    that case is just a sort."""
    srt = sorted(recs)
    if all(a[0] + a[1] <= b[0] for a, b in zip(srt, srt[1:])):
        return srt
    # Walk the stream backwards, keeping only the parts no later record has covered.
    covered: list[list[int]] = []  # disjoint sorted [start, end)
    pieces = []
    for off, size, fpos in reversed(recs):
        end = off + size
        j = bisect_right(covered, [off, float("inf")]) - 1
        j = max(j, 0)
        cur = off
        while cur < end:
            while j < len(covered) and covered[j][1] <= cur:
                j += 1
            if j < len(covered) and covered[j][0] <= cur:
                cur = covered[j][1]
                continue
            stop = min(end, covered[j][0]) if j < len(covered) else end
            pieces.append((cur, stop - cur, fpos + cur - off))
            cur = stop
        _cover(covered, off, end)
    return sorted(pieces)


def _cover(covered: list[list[int]], a: int, b: int) -> None:
    """Add [a, b) to the disjoint sorted interval list, merging neighbours."""
    i = bisect_right(covered, [a, float("inf")])
    if i and covered[i - 1][1] >= a:
        i -= 1
        a = covered[i][0]
    j = i
    while j < len(covered) and covered[j][0] <= b:
        b = max(b, covered[j][1])
        j += 1
    covered[i:j] = [[a, b]]
