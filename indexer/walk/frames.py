"""struct page facts of many frames at once, read from the vmemmap (SPARSEMEM_VMEMMAP).

The layout comes from DWARF (struct page / struct folio members) and the page flag bits
from `enum pageflags`; the vmemmap's place from the kernel's own `vmemmap_base`. Frames
whose struct page the dump lacks come back as not `ok`: their figures are unknown.
Everything here is plain data (picklable), so the walk's worker processes can use it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer.errors import MemoryReadError, WalkError
from indexer.x86_64 import translate

PAGE = 4096


@dataclass
class FrameLayout:
    vmemmap: int            # address of pfn 0's struct page
    size: int               # sizeof(struct page)
    highest_pfn: int        # highest_memmap_pfn: vm_normal_page's bound
    flags: int
    mapping: int
    compound_head: int      # tail pages: head address | 1
    refcount: int
    mapcount: int
    order: int | None       # compound order, from the head page's address
    entire: int | None      # entire (compound) mapcount, from the head page's address
    bits: dict              # PG_* -> bit number

    def bit(self, name: str) -> int | None:
        return self.bits.get(name)


def frame_layout(k) -> FrameLayout | None:
    """The layout, or None when the kernel lacks what reading struct pages needs."""
    t = k.types
    if not t.has_struct("page") or k.sym("vmemmap_base") is None:
        return None
    sz = t.sizeof("page")

    def off(path):
        return t.offsetof("page", path)

    if t.has_member("folio", "_folio_order"):
        order = t.offsetof("folio", "_folio_order")
    elif t.has_member("page", "compound_order"):
        order = sz + off("compound_order")
    else:
        order = None
    if t.has_member("folio", "_entire_mapcount"):
        entire = t.offsetof("folio", "_entire_mapcount")
    elif t.has_member("page", "compound_mapcount"):
        entire = sz + off("compound_mapcount")
    else:
        entire = None
    need = [off(p) for p in ("flags", "mapping", "compound_head", "_refcount", "_mapcount")]
    if None in need:
        return None
    bits = {n: t.enum_value(n) for n in ("PG_referenced", "PG_dirty", "PG_young", "PG_head",
                                          "PG_swapbacked", "PG_mlocked", "PG_lru")}
    bits = {n: v for n, v in bits.items() if v is not None}
    try:
        vmemmap = k.ptr(k.sym("vmemmap_base"))
        hp = k.sym("highest_memmap_pfn")
        highest = k.ptr(hp) if hp is not None else (1 << 52) >> 12
    except (MemoryReadError, WalkError):
        return None
    return FrameLayout(vmemmap, sz, highest, *need, order, entire, bits)


class FrameReader:
    """Reads the fields of struct pages in bulk: one read per vmemmap page involved."""

    def __init__(self, mem, lay: FrameLayout):
        self.mem, self.lay = mem, lay
        self._pages: dict[int, bytes | None] = {}   # vmemmap page -> bytes (None: lost)

    def _page(self, va: int) -> bytes | None:
        if va not in self._pages:
            if len(self._pages) > 1 << 16:          # bound the cache (256 MiB of pages)
                self._pages.clear()
            # Through the kernel's page tables: the vmemmap and vmalloc areas lie above the
            # direct map's base, so they must never be taken for direct-map addresses.
            mem = self.mem
            try:
                pa = translate(mem.phys, mem.paging, mem.kernel_pgd_pa, va) \
                    if mem.kernel_pgd_pa is not None else None
                self._pages[va] = mem.phys.read(pa, PAGE) if pa is not None else None
            except (MemoryReadError, WalkError):
                self._pages[va] = None
        return self._pages[va]

    def fields(self, addrs: np.ndarray, spec: dict[str, tuple[int, str]]):
        """{name: values} of fields at struct-page addresses `addrs` (uint64), and `ok`:
        whether every byte was in the dump. spec: name -> (offset, numpy dtype)."""
        n = len(addrs)
        ok = np.ones(n, bool)
        out = {name: np.zeros(n, np.dtype(dt)) for name, (_, dt) in spec.items()}
        if not n:
            return out, ok
        for name, (o, dt) in spec.items():
            size = np.dtype(dt).itemsize
            a = addrs + np.uint64(o)
            pages = a & ~np.uint64(PAGE - 1)
            uniq, inv = np.unique(pages, return_inverse=True)
            bufs = [self._page(int(p)) for p in uniq]
            good = np.array([b is not None for b in bufs], bool)
            buf = np.frombuffer(b"".join(b if b is not None else bytes(PAGE) for b in bufs),
                                np.uint8)
            ix = inv.astype(np.int64) * PAGE + (a & np.uint64(PAGE - 1)).astype(np.int64)
            raw = buf[ix[:, None] + np.arange(size)]
            out[name] = np.ascontiguousarray(raw).view(np.dtype(dt).newbyteorder("<")).reshape(n)
            ok &= good[inv]
        return out, ok

    def pages(self, pfns: np.ndarray):
        """flags, mapping, compound_head, refcount, mapcount of each pfn's own struct page,
        plus `ok`."""
        lay = self.lay
        addrs = np.uint64(lay.vmemmap) + pfns.astype(np.uint64) * np.uint64(lay.size)
        return self.fields(addrs, {"flags": (lay.flags, "u8"), "mapping": (lay.mapping, "u8"),
                                   "chead": (lay.compound_head, "u8"),
                                   "refcount": (lay.refcount, "i4"),
                                   "mapcount": (lay.mapcount, "i4")})

    def pfn_of(self, page_addr: np.ndarray) -> np.ndarray:
        return (page_addr - np.uint64(self.lay.vmemmap)) // np.uint64(self.lay.size)
