"""The one interface the rest of vmdex uses to read a dump: physical memory by address.

Formats implement `_load_page(pfn)` (and `page_state`); the base class adds a small LRU of
decompressed pages, because walks re-read the same page tables and slab pages over and over.
"""
from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from collections import OrderedDict

from ..errors import MemoryReadError, OutOfDump

# The unit a format reads in before it knows the dump's own: a kdump file takes its header's
# block_size, an ELF core VMCOREINFO's PAGESIZE (indexer.dumpfile.elf).
DEFAULT_PAGE_SIZE = 4096
CACHE_BYTES = 16 << 20   # decompressed pages kept
PRESENT, EXCLUDED, ABSENT = "present", "excluded", "absent"


class PhysicalMemory(ABC):
    """Read-only physical memory of a dumped machine.

    Attributes: `path`, `format` ('elf' | 'kdump' | 'kdump-flattened'), `compression`
    ('zlib' | 'lzo' | 'snappy' | 'zstd' | 'none'), `page_size`, `vmcoreinfo` (raw text or
    None) and `notes` (list of (name, type, desc) ELF notes).

    Errors: `ExcludedPage` for a page the dump filter left out, `OutOfDump` for an address
    no part of the dump covers (or whose data the file is too short to hold), other
    `MemoryReadError`s for corrupt page data. All carry the failing physical address.
    """

    format: str = ""
    compression: str = "none"

    def __init__(self, path: str):
        self.path = str(path)
        self.page_size = DEFAULT_PAGE_SIZE
        self.machine: str | None = None   # "x86_64", "aarch64"... as the dump names it
        self.vmcoreinfo: str | None = None
        self.notes: list[tuple[str, int, bytes]] = []
        self._cache: OrderedDict[int, bytes] = OrderedDict()

    @property
    def cache_pages(self) -> int:
        return CACHE_BYTES // self.page_size

    # --- what a format provides -------------------------------------------------------
    @abstractmethod
    def _load_page(self, pfn: int, paddr: int) -> bytes:
        """The page's bytes, or raise ExcludedPage / OutOfDump / MemoryReadError naming
        `paddr` (the address the caller asked for, inside this page)."""

    @abstractmethod
    def page_state(self, pfn: int) -> str:
        """'present' (read_page succeeds unless the data is corrupt), 'excluded' (read_page
        raises ExcludedPage) or 'absent' (read_page raises OutOfDump)."""

    def _release(self) -> None:
        """Free file handles / mappings."""

    # --- shared machinery -----------------------------------------------------------------
    def read_page(self, pfn: int) -> bytes:
        return self._page(pfn, pfn * self.page_size)

    def _page(self, pfn: int, paddr: int) -> bytes:
        cache = self._cache
        page = cache.get(pfn)
        if page is not None:
            cache.move_to_end(pfn)
            return page
        try:
            page = self._load_page(pfn, paddr)
        except MemoryReadError:
            raise
        except (struct.error, ValueError, OverflowError, IndexError, TypeError,
                MemoryError) as e:
            # A damaged descriptor or bitmap tripping the format code: report the page.
            raise MemoryReadError(paddr, f"{self.path}: corrupt dump data "
                                         f"({type(e).__name__}: {e})") from None
        cache[pfn] = page
        if len(cache) > self.cache_pages:
            cache.popitem(last=False)
        return page

    def read(self, paddr: int, size: int) -> bytes:
        """`size` bytes at `paddr`, possibly spanning pages. An error names the first
        address of the range that could not be read."""
        if paddr < 0 or size < 0:
            raise OutOfDump(paddr, "negative address or size")
        if size == 0:
            return b""
        ps = self.page_size
        pfn, off = divmod(paddr, ps)
        if off + size <= ps:  # the common case: one page
            return self._page(pfn, paddr)[off:off + size]
        parts = []
        while size > 0:
            n = min(size, ps - off)
            parts.append(self._page(pfn, paddr)[off:off + n])
            paddr += n
            size -= n
            pfn += 1
            off = 0
        return b"".join(parts)

    def close(self) -> None:
        self._cache.clear()
        self._release()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.format}/{self.compression} {self.path}>"

