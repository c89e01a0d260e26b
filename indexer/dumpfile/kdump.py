"""kdump-compressed dumps ("KDUMP   "/"DISKDUMP"), plain or flattened.

Layout, in blocks of `block_size`: disk_dump_header | kdump_sub_header (sub_hdr_size blocks)
| bitmaps (bitmap_blocks) | page descriptors, one per dumpable pfn in pfn order | page data.
Finding a pfn's descriptor means counting dumpable bits below it; a numpy prefix count per
64-bit word of the bitmap makes that O(1).
"""
from __future__ import annotations

import struct

import numpy as np

from . import codecs
from ..errors import DumpError, ExcludedPage, MemoryReadError, OutOfDump
from .elf import parse_notes, vmcoreinfo_from_notes
from .memory import ABSENT, EXCLUDED, PRESENT, PhysicalMemory

SIGNATURES = (b"KDUMP   ", b"DISKDUMP")
HEADER_SIZE = 464
_SUB = struct.Struct("<QiiQQqQqQqQQQQ")  # kdump_sub_header up to max_mapnr_64 (104 bytes)
_DESC = struct.Struct("<qIIQ")  # page_desc: offset, size, flags, page_flags
STATUS_INCOMPLETE = 0x8
MAX_META = 64 << 20  # VMCOREINFO / note blobs are KiB; this only stops absurd reads


class KdumpMemory(PhysicalMemory):
    def __init__(self, path: str, reader, fmt: str = "kdump"):
        """`reader` gives the bytes of the (logical) kdump file: see flattened.py."""
        super().__init__(path)
        self.format = fmt
        self._r = reader
        try:
            self._parse(str(path))
        except BaseException:
            reader.close()
            raise

    def _parse(self, name: str) -> None:
        r = self._r
        hdr = r.pread(0, HEADER_SIZE)
        if hdr[:8] not in SIGNATURES:
            raise DumpError(f"{name}: no KDUMP signature (found {hdr[:8]!r})")
        if len(hdr) < HEADER_SIZE:
            raise DumpError(f"{name}: truncated kdump header ({len(hdr)} of {HEADER_SIZE} bytes)")
        (version,) = struct.unpack_from("<i", hdr, 8)
        self.header_version = version
        release = hdr[12 + 2 * 65:12 + 3 * 65]  # utsname: 6 fields of 65 bytes at 12
        self.utsname_release = release.split(b"\0")[0].decode("ascii", "replace")
        machine = hdr[12 + 4 * 65:12 + 5 * 65]
        self.machine = machine.split(b"\0")[0].decode("ascii", "replace") or None
        status, bs, sub_blocks, bitmap_blocks, max_mapnr = struct.unpack_from("<IiiII", hdr, 424)
        self.status = status
        if bs < 512 or bs & (bs - 1) or bs > 1 << 20:
            raise DumpError(f"{name}: bad kdump block_size {bs}")
        if sub_blocks < 0 or bitmap_blocks == 0:
            raise DumpError(f"{name}: bad kdump header (sub_hdr_size {sub_blocks}, "
                            f"bitmap_blocks {bitmap_blocks})")
        self.page_size = self.block_size = bs

        # Sub-header fields exist from the header_version that introduced them.
        sub = r.pread(bs, _SUB.size) if sub_blocks else b""
        sub = sub + bytes(_SUB.size - len(sub))
        (self.sub_phys_base, self.dump_level, self.split, sp32, ep32, off_vmci, size_vmci,
         off_note, size_note, _off_erase, _size_erase, sp64, ep64, mapnr64) = _SUB.unpack(sub)
        self.header_bytes = bytes(hdr)      # crash compares these between split files
        if version >= 6:
            max_mapnr = mapnr64
        # the pfns a `makedumpfile --split` file holds (the split field from version 2)
        self.split = bool(self.split) and version >= 2
        self.split_range = ((sp64, ep64) if version >= 6 else (sp32, ep32)) if self.split \
            else None
        self.max_mapnr = max_mapnr
        if version >= 4 and size_note > 0:
            self.notes = parse_notes(self._meta(name, off_note, size_note, "ELF notes"))
        if version >= 3 and size_vmci > 0:
            text = self._meta(name, off_vmci, size_vmci, "VMCOREINFO")
            self.vmcoreinfo = text.rstrip(b"\0").decode("ascii", "replace")
        else:
            self.vmcoreinfo = vmcoreinfo_from_notes(self.notes)

        # Bitmaps: two halves ("RAM here", "data in file") if there is room for two,
        # else one serving both roles.
        bm_off = (1 + sub_blocks) * bs
        bm_len = bitmap_blocks * bs
        if bm_off + bm_len > r.size or bm_len > r.stored:
            raise DumpError(f"{name}: truncated kdump bitmap ({bitmap_blocks} blocks of {bs} "
                            f"bytes at offset {bm_off}, file holds {r.size})")
        bitmaps = r.pread(bm_off, bm_len)
        if len(bitmaps) < bm_len:
            raise DumpError(f"{name}: truncated kdump bitmap")
        one_len = _ceil_div(_ceil_div(max_mapnr, 8), bs)  # blocks for one bitmap
        if bitmap_blocks >= 2 * one_len:
            half = bm_len // 2
            self._ram, dumpable = bitmaps[:half], bitmaps[half:]
        else:
            self._ram = dumpable = bitmaps
        self.max_mapnr = min(max_mapnr, len(self._ram) * 8)
        self._data_offset = (1 + sub_blocks + bitmap_blocks) * bs

        # words[w] = dumpable bits of pfns 64w..64w+63; before[w] = dumpable pfns below 64w.
        raw = np.frombuffer(dumpable, dtype=np.uint8)
        raw = np.concatenate([raw, np.zeros(-len(raw) % 8, np.uint8)])
        self._words = raw.view("<u8")
        counts = _popcount64(self._words)
        self._before = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.dumpable_pages = int(counts.sum())
        # A --split file's bitmap is the whole dump's; its descriptors start at its first pfn
        self._desc_base = self._dumpable_below(self.split_range[0]) if self.split_range else 0

        for bit in codecs.NAMES:  # a missing library should fail now, not on page 1000
            if status & bit:
                codecs.codec(bit)
        self.compression = codecs.name(status)
        first = self._desc_bytes(0)
        if self.compression == "none" and len(first) == _DESC.size:
            # status 0 normally means raw pages, but not every writer sets it: ask page 1
            self.compression = codecs.name(_DESC.unpack(first)[2])

    def _meta(self, name: str, off: int, size: int, what: str) -> bytes:
        if size > MAX_META:
            raise DumpError(f"{name}: corrupt kdump sub-header: {what} size {size} is absurd")
        if off <= 0 or off + size > self._r.size:
            raise DumpError(f"{name}: {what} at offset {off} runs past end of file")
        data = self._r.pread(off, size)
        if len(data) < size:
            raise DumpError(f"{name}: {what} at offset {off} runs past end of file")
        return data

    def _dumpable_below(self, pfn: int) -> int:
        w = min(pfn >> 6, len(self._words))
        below = int(self._before[w - 1] + _popcount64(self._words[w - 1:w])[0]) if w else 0
        if w < len(self._words) and pfn & 63:
            below += (int(self._words[w]) & ((1 << (pfn & 63)) - 1)).bit_count()
        return below

    def _in_file(self, pfn: int) -> bool:
        lo, hi = self.split_range or (0, self.max_mapnr)
        return lo <= pfn < min(hi, self.max_mapnr)

    def _desc_bytes(self, idx: int) -> bytes:
        return self._r.pread(self._data_offset + idx * _DESC.size, _DESC.size)

    # --- page lookup ----------------------------------------------------------------------
    def page_state(self, pfn: int) -> str:
        if not self._in_file(pfn) or not self._ram[pfn >> 3] >> (pfn & 7) & 1:
            return ABSENT
        return PRESENT if int(self._words[pfn >> 6]) >> (pfn & 63) & 1 else EXCLUDED

    def _load_page(self, pfn: int, paddr: int) -> bytes:
        if not self._in_file(pfn) or not self._ram[pfn >> 3] >> (pfn & 7) & 1:
            raise OutOfDump(paddr)
        w, bit = pfn >> 6, pfn & 63
        word = int(self._words[w])
        if not word >> bit & 1:
            raise ExcludedPage(paddr)
        idx = int(self._before[w]) + (word & ((1 << bit) - 1)).bit_count() - self._desc_base

        raw = self._desc_bytes(idx)
        if len(raw) < _DESC.size:
            raise OutOfDump(paddr, f"{self.path}: page descriptor past end of file (truncated dump)")
        offset, size, flags, _pf = _DESC.unpack(raw)
        bs = self.block_size
        if offset == 0:  # descriptors are written last: zero means never written
            raise OutOfDump(paddr, f"{self.path}: page data missing (incomplete dump)")
        if offset < 0 or size == 0 or size > bs:
            raise MemoryReadError(
                paddr, f"{self.path}: corrupt page descriptor #{idx} (offset {offset}, size {size})")
        data = self._r.pread(offset, size)
        if len(data) < size:
            raise OutOfDump(paddr, f"{self.path}: page data past end of file (truncated dump)")
        try:
            return codecs.decompress(flags, data, bs)
        except DumpError as e:
            raise MemoryReadError(paddr, f"{self.path}: {e}") from None

    def _release(self) -> None:
        self._r.close()


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _popcount64(words: np.ndarray) -> np.ndarray:
    """Set bits per uint64, as int64."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(words).astype(np.int64)
    bits = np.unpackbits(words.view(np.uint8)).reshape(-1, 64)
    return bits.sum(axis=1, dtype=np.int64)
