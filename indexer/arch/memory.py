"""Kernel virtual memory of a dump: the Arch's linear maps first, else a walk of the
kernel's own tables (vmalloc, modules)."""
from __future__ import annotations

from vmdex.indexer.arch.base import Arch
from vmdex.indexer.arch.pagewalk import translate
from vmdex.indexer.errors import MemoryReadError, WalkError


class KernelMemory:
    """Reads kernel virtual memory through `arch` (kernel_pgd_pa set by Arch.setup)."""

    def __init__(self, phys, arch: Arch):
        self.phys = phys
        self.arch = arch
        self.page = arch.page_size

    @property
    def paging(self) -> Arch:       # the name the walkers used before the seam
        return self.arch

    def vtop(self, va: int) -> int:
        pa = self.arch.kvtop_linear(va)
        if pa is not None:
            return pa
        if self.arch.kernel_pgd_pa is None:
            raise WalkError(f"cannot translate kernel address {va:x}")
        pa = translate(self.phys, self.arch, self.arch.kernel_pgd_pa, va)
        if pa is None:
            raise WalkError(f"kernel address {va:x} is not mapped")
        return pa

    def read(self, va: int, size: int) -> bytes:
        page = self.page
        if 0 < size <= page - (va & (page - 1)):    # within one page: most reads
            try:
                return self.phys.read(self.vtop(va), size)
            except MemoryReadError as exc:
                exc.vaddr = va
                raise
        out = bytearray()
        while size > 0:
            n = min(size, page - (va & (page - 1)))
            try:
                out += self.phys.read(self.vtop(va), n)
            except MemoryReadError as exc:
                exc.vaddr = va          # crash names the kernel address of the failed chunk
                raise
            va += n
            size -= n
        return bytes(out)

    def u64(self, va: int) -> int:
        return int.from_bytes(self.read(va, 8), "little")

    def u32(self, va: int) -> int:
        return int.from_bytes(self.read(va, 4), "little")

    def uint(self, va: int, size: int) -> int:
        return int.from_bytes(self.read(va, size), "little")

    def sint(self, va: int, size: int) -> int:
        return int.from_bytes(self.read(va, size), "little", signed=True)

    def cstring(self, va: int, limit: int = 4096) -> bytes:
        """NUL-terminated bytes at va, reading page by page up to limit."""
        out = bytearray()
        page = self.page
        while len(out) < limit:
            n = min(limit - len(out), page - (va & (page - 1)))
            chunk = self.read(va, n)
            z = chunk.find(b"\0")
            if z >= 0:
                return bytes(out + chunk[:z])
            out += chunk
            va += n
        return bytes(out)
