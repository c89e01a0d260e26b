"""ELF64 core dumps (kexec /proc/vmcore copies, makedumpfile -E, QEMU dump-guest-memory).

Physical memory comes from the PT_LOAD segments (p_paddr/p_offset/p_filesz/p_memsz), read
straight from an mmap of the file, so there is no page cache here: the OS has one.
"""
from __future__ import annotations

import mmap
import os
import struct
from bisect import bisect_right

from ..errors import DumpError, OutOfDump
from ..kernel.vmcoreinfo import VmcoreInfo
from .memory import ABSENT, PRESENT, PhysicalMemory

ET_CORE, PT_LOAD, PT_NOTE, PN_XNUM = 4, 1, 4, 0xFFFF
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")  # type flags offset vaddr paddr filesz memsz align
_NHDR = struct.Struct("<III")


def parse_notes(blob: bytes) -> list[tuple[str, int, bytes]]:
    """ELF notes {namesz, descsz, type, name, desc}, 4-byte aligned, as (name, type, desc).

    Stops quietly at a truncated or zero-filled tail: QEMU and kexec pad note segments.
    """
    notes, i = [], 0
    while i + _NHDR.size <= len(blob):
        namesz, descsz, ntype = _NHDR.unpack_from(blob, i)
        if namesz == 0 and descsz == 0 and ntype == 0:
            break
        i += _NHDR.size
        name_end = i + namesz
        desc_at = i + ((namesz + 3) & ~3)
        desc_end = desc_at + descsz
        if desc_end > len(blob):
            break
        name = blob[i:name_end].rstrip(b"\0").decode("ascii", "replace")
        notes.append((name, ntype, bytes(blob[desc_at:desc_end])))
        i = desc_at + ((descsz + 3) & ~3)
    return notes


def vmcoreinfo_from_notes(notes) -> str | None:
    for name, _ntype, desc in notes:
        if name == "VMCOREINFO":
            return desc.rstrip(b"\0").decode("ascii", "replace")
    return None


def _disjoint(loads: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """PT_LOADs (paddr, memsz, filesz, offset) made disjoint and sorted. A kexec
    /proc/vmcore has a segment for the kernel image (virtual ffffffff8...) whose physical
    range lies inside a System RAM segment, and makedumpfile -E keeps both, each with its
    own zero-filled tail (filesz < memsz: pages it left out): the same physical address can
    be in several segments. Bytes the file holds win over a zero-filled tail; between two
    that hold it (the same bytes), the lower segment."""
    data = _cut_overlaps(sorted((p, f, f, o) for p, _m, f, o in loads if f))
    out = list(data)
    for paddr, memsz, filesz, _off in loads:   # the zero-filled tails, less any data
        lo, hi = paddr + filesz, paddr + memsz
        for dp, dm, _f, _o in data:
            if dp + dm <= lo or dp >= hi:
                continue
            if dp > lo:
                out.append((lo, dp - lo, 0, 0))
            lo = max(lo, dp + dm)
        if lo < hi:
            out.append((lo, hi - lo, 0, 0))
    return _cut_overlaps(sorted(out))


def _cut_overlaps(loads: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Sorted segments, each cut where it starts inside the one before."""
    out: list[tuple[int, int, int, int]] = []
    end = -1
    for paddr, memsz, filesz, off in loads:
        if paddr < end:
            cut = end - paddr
            if cut >= memsz:
                continue
            paddr, memsz, off = end, memsz - cut, off + cut
            filesz = max(filesz - cut, 0)
        out.append((paddr, memsz, filesz, off))
        end = paddr + memsz
    return out


# e_machine values (ELF gABI) → the names uname and the kdump header use.
ELF_MACHINES = {62: "x86_64", 183: "aarch64"}


class ElfMemory(PhysicalMemory):
    format = "elf"
    compression = "none"

    def __init__(self, path: str):
        super().__init__(path)
        name = self.path
        with open(path, "rb") as f:
            self._size = os.fstat(f.fileno()).st_size
            if self._size < _EHDR.size:
                raise DumpError(f"{name}: truncated ELF header ({self._size} bytes)")
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            self._parse_headers(name)
        except BaseException:
            self._mm.close()
            raise

    def _parse_headers(self, name: str) -> None:
        mm = self._mm
        (ident, e_type, mach, _ver, _entry, phoff, shoff, _flags, _ehsize, phentsize,
         phnum, shentsize, _shnum, _shstrndx) = _EHDR.unpack_from(mm, 0)
        if ident[4] != 2 or ident[5] != 1:
            raise DumpError(f"{name}: only 64-bit little-endian ELF cores are supported")
        if e_type != ET_CORE:
            raise DumpError(f"{name}: ELF file is not a core dump (e_type {e_type})")
        self.machine = ELF_MACHINES.get(mach, f"ELF machine {mach}")
        if phnum == PN_XNUM:  # too many for 16 bits: the count is in section 0's sh_info
            if shoff == 0 or shoff + 64 > self._size:
                raise DumpError(f"{name}: e_phnum is PN_XNUM but section header 0 is missing")
            (phnum,) = struct.unpack_from("<I", mm, shoff + 44)
        if phnum and phentsize < _PHDR.size:
            raise DumpError(f"{name}: bad e_phentsize {phentsize}")
        if phoff + phnum * phentsize > self._size:
            raise DumpError(f"{name}: truncated ELF program headers")

        loads = []
        for k in range(phnum):
            p_type, _pf, off, _va, paddr, filesz, memsz, _al = _PHDR.unpack_from(
                mm, phoff + k * phentsize)
            if p_type == PT_LOAD and memsz:
                loads.append((paddr, max(memsz, filesz), filesz, off))
            elif p_type == PT_NOTE:
                if off + filesz > self._size:
                    raise DumpError(f"{name}: PT_NOTE segment runs past end of file")
                self.notes += parse_notes(mm[off:off + filesz])
        if not loads:
            raise DumpError(f"{name}: ELF core has no PT_LOAD segments")
        self._loads = _disjoint(sorted(loads))
        self._starts = [seg[0] for seg in self._loads]
        self.vmcoreinfo = vmcoreinfo_from_notes(self.notes)
        if self.vmcoreinfo:     # the kernel's page size: the unit of read_page / page_state
            ps = VmcoreInfo.parse(self.vmcoreinfo).pagesize or 0
            if ps >= 4096 and not ps & (ps - 1):
                self.page_size = ps

    # --- reading --------------------------------------------------------------------------
    def read(self, paddr: int, size: int) -> bytes:
        if paddr < 0 or size < 0:
            raise OutOfDump(paddr, "negative address or size")
        parts = []
        while size > 0:
            i = bisect_right(self._starts, paddr) - 1
            if i < 0 or paddr >= self._starts[i] + self._loads[i][1]:
                raise OutOfDump(paddr)
            start, memsz, filesz, off = self._loads[i]
            rel = paddr - start
            n = min(size, memsz - rel)
            m = min(n, max(filesz - rel, 0))  # bytes backed by the file; the rest are zeros
            if m:
                fo = off + rel
                if fo + m > self._size:
                    raise OutOfDump(paddr + max(self._size - fo, 0),
                                    f"{self.path}: data past end of file (truncated dump)")
                parts.append(self._mm[fo:fo + m])
            if n > m:
                parts.append(bytes(n - m))
            paddr += n
            size -= n
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def read_page(self, pfn: int) -> bytes:
        return self.read(pfn * self.page_size, self.page_size)

    def _load_page(self, pfn: int, paddr: int) -> bytes:
        return self.read(pfn * self.page_size, self.page_size)

    def page_state(self, pfn: int) -> str:
        """'present' when every byte of the page is covered (zero-filled tails count, since
        they read as zeros), 'absent' otherwise."""
        paddr, end = pfn * self.page_size, (pfn + 1) * self.page_size
        while paddr < end:
            i = bisect_right(self._starts, paddr) - 1
            if i < 0:
                return ABSENT
            start, memsz, filesz, off = self._loads[i]
            if paddr >= start + memsz:
                return ABSENT
            last = min(end, start + memsz)
            if off + min(last - start, filesz) > self._size:
                return ABSENT
            paddr = last
        return PRESENT

    def segments(self) -> list[tuple[int, int, int, int]]:
        """The PT_LOADs as sorted (paddr, memsz, filesz, file offset) tuples."""
        return list(self._loads)

    def _release(self) -> None:
        self._mm.close()
