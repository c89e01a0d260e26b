"""struct page facts of many frames at once, read from the vmemmap (SPARSEMEM_VMEMMAP).

The layout comes from DWARF (struct page / struct folio members) and the page flag bits
from `enum pageflags`; the vmemmap's place from the architecture (Arch.struct_pages). Frames
whose struct page the dump lacks come back as not `ok`: their figures are unknown.
Everything here is plain data (picklable), so the walk's worker processes can use it.
"""
from __future__ import annotations

import mmap
from dataclasses import dataclass

import numpy as np

from vmdex.indexer.errors import MemoryReadError, WalkError
from vmdex.indexer.arch.pagewalk import translate_leaf

# A huge leaf of the vmemmap is remembered per region of this many address bits, so a run
# of struct pages costs one table walk per region (any leaf this big covers it whole).
REGION_SHIFT = 21


@dataclass
class FrameLayout:
    vmemmap: int            # address of pfn 0's struct page
    size: int               # sizeof(struct page)
    highest_pfn: int        # highest_memmap_pfn: vm_normal_page's bound
    flags: int
    mapping: int
    compound_head: int      # tail pages: head address | 1, or a mask (head_mask)
    refcount: int
    mapcount: int
    order: int | None       # compound order, from the head page's address
    entire: int | None      # entire (compound) mapcount, from the head page's address
    bits: dict              # PG_* -> bit number
    large: int | None = None  # folio._large_mapcount: every mapping of a large folio
    head_mask: bool = False  # compound_info holds the mask that turns a tail's address
                             # into its head's (compound_info, power-of-2 struct page)

    def heads(self, own: np.ndarray, info: np.ndarray) -> np.ndarray:
        """_compound_head(): each page's head page address from its own address and its
        compound_head / compound_info word (bit 0: a tail page)."""
        tail = (info & np.uint64(1)) != 0
        head = (own & info) if self.head_mask else info - np.uint64(1)
        return np.where(tail, head, own)

    def bit(self, name: str) -> int | None:
        return self.bits.get(name)


def frame_layout(k, arch) -> FrameLayout | None:
    """The layout, or None when the kernel lacks what reading struct pages needs."""
    t = k.types
    if not t.has_struct("page"):
        return None
    sz = t.sizeof("page")

    def off(path):
        return t.offsetof("page", path)

    if t.has_member("folio", "_folio_order"):
        order = t.offsetof("folio", "_folio_order")
    elif t.has_member("folio", "_flags_1"):      # folio_order(): _flags_1 & 0xff
        order = t.offsetof("folio", "_flags_1")
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
    # the tail pages' link to their head: compound_head, renamed compound_info (7.x)
    head_member = "compound_head" if t.has_member("page", "compound_head") else "compound_info"
    need = [off(p) for p in ("flags", "mapping", head_member, "_refcount", "_mapcount")]
    if None in need:
        return None
    bits = {n: t.enum_value(n) for n in ("PG_referenced", "PG_dirty", "PG_young", "PG_head",
                                          "PG_swapbacked", "PG_mlocked", "PG_lru",
                                          "PG_double_map", "PG_reserved")}
    bits = {n: v for n, v in bits.items() if v is not None}
    vmemmap = arch.struct_pages(k)
    if vmemmap is None or not _places_struct_pages(k, arch, vmemmap, sz, need[0]):
        return None
    try:
        hp = k.sym("highest_memmap_pfn")
        highest = k.ptr(hp) if hp is not None else (1 << 52) >> arch.page_shift
    except (MemoryReadError, WalkError):
        return None
    return FrameLayout(vmemmap, sz, highest, *need, order, entire, bits,
                       large=t.offsetof("folio", "_large_mapcount")
                       if t.has_member("folio", "_large_mapcount") else None,
                       head_mask=head_member == "compound_info" and sz & (sz - 1) == 0)


def _places_struct_pages(k, arch, vmemmap: int, size: int, flags_off: int) -> bool:
    """Whether `vmemmap` really is pfn 0's struct page: the frame of the kernel's own top
    page table (in the kernel image, reserved at boot) must read as PG_reserved there. A
    wrong place would give every figure from someone else's struct page."""
    reserved = k.types.enum_value("PG_reserved")
    if reserved is None or arch.kernel_pgd_pa is None:
        return False
    va = vmemmap + (arch.kernel_pgd_pa >> arch.page_shift) * size + flags_off
    try:
        flags = k.mem.u64(va)
    except (MemoryReadError, WalkError):
        return False
    return bool(flags >> reserved & 1)


class FrameReader:
    """Reads the fields of struct pages in bulk: one read per vmemmap page involved."""

    def __init__(self, mem, lay: FrameLayout):
        self.mem, self.lay = mem, lay
        self.page = mem.page                        # the unit the vmemmap is read in
        self._pages: dict[int, bytes | None] = {}   # vmemmap page -> bytes (None: lost)
        self._regions: dict[int, int] = {}          # region -> pa (huge leaves)

    def _page(self, va: int) -> bytes | None:
        if va not in self._pages:
            if len(self._pages) * self.page > 1 << 24:     # bound the cache (16 MiB)
                self._pages.clear()
            try:
                pa = self._pa(va)
                self._pages[va] = self.mem.phys.read(pa, self.page) if pa is not None else None
            except (MemoryReadError, WalkError):
                self._pages[va] = None
        return self._pages[va]

    def _pa(self, va: int) -> int | None:
        """Through the kernel's page tables (the vmemmap lies outside the linear map). A
        leaf of a region or more is remembered (REGION_SHIFT)."""
        mem = self.mem
        region = va >> REGION_SHIFT
        within = va & ((1 << REGION_SHIFT) - 1)
        if region in self._regions:
            return self._regions[region] + within
        top = mem.arch.kernel_pgd_pa
        if top is None:
            return None
        leaf = translate_leaf(mem.phys, mem.arch, top, va)
        if leaf is None:
            return None
        pa, size = leaf
        if size >= 1 << REGION_SHIFT:
            self._regions[region] = pa - within
        return pa

    def _pages_of(self, first: np.ndarray):
        """(the distinct pages of `first` (page addresses) in order, each element's index
        into them): a bitmap over a dense span, a sort otherwise."""
        lo, hi = int(first.min()), int(first.max())
        shift = self.page.bit_length() - 1
        span = ((hi - lo) >> shift) + 1
        if span <= 4 * len(first) + (1 << 16):
            rel = ((first - np.uint64(lo)) >> np.uint64(shift)).astype(np.int64)
            seen = np.zeros(span, bool)
            seen[rel] = True
            where = np.cumsum(seen) - 1
            uniq = np.uint64(lo) + np.flatnonzero(seen).astype(np.uint64) * np.uint64(self.page)
            return uniq, where[rel]
        uniq, inv = np.unique(first, return_inverse=True)
        return uniq, inv.reshape(-1)

    def fields(self, addrs: np.ndarray, spec: dict[str, tuple[int, str]]):
        """{name: values} of fields at struct addresses `addrs` (uint64), and `ok`: whether
        every byte was in the dump. spec: name -> (offset, numpy dtype); each field is
        naturally aligned and so never crosses a page."""
        n = len(addrs)
        ok = np.ones(n, bool)
        out = {name: np.zeros(n, np.dtype(dt)) for name, (_, dt) in spec.items()}
        if not n:
            return out, ok
        page = self.page
        mask = np.uint64(page - 1)
        first = addrs & ~mask
        uniq, idx = self._pages_of(first)
        bufs = [self._page(int(p)) for p in uniq.tolist()]
        good = np.array([b is not None for b in bufs], bool)
        buf = np.frombuffer(b"".join(b if b is not None else bytes(page) for b in bufs),
                            np.uint8)
        base = idx * page + (addrs & mask).astype(np.int64)
        for name, (o, dt) in spec.items():
            d = np.dtype(dt).newbyteorder("<")
            at = base + o
            cross = at + d.itemsize > (idx + 1) * page
            if cross.any():        # an unaligned field across a page end: not read here
                ok &= ~cross
                at = np.where(cross, idx * page, at)
            out[name] = self._gather(buf, at, d)
        ok &= good[idx]
        return out, ok

    @staticmethod
    def _gather(buf: np.ndarray, at: np.ndarray, d: np.dtype) -> np.ndarray:
        size = d.itemsize
        if not (at % size).any():                   # aligned: one gather of whole words
            return buf.view(d)[at // size]
        return np.ascontiguousarray(buf[at[:, None] + np.arange(size)]).view(d).reshape(-1)

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


# --- per-frame facts, cached by chunks of the vmemmap ------------------------------------
FACT_ANON, FACT_KSM, FACT_SWAPBACKED, FACT_DIRTY, FACT_REFERENCED = 1, 2, 4, 8, 16
FACT_ONE_REF, FACT_COMPOUND, FACT_HEAD, FACT_OK = 32, 64, 128, 256
CHUNK_SHIFT = 12                 # 4096 frames a chunk (64 pages of struct page with 4 KiB pages)
MAX_CHUNKS = 1 << 13             # 32M frames (128 GiB) of facts, ~7 bytes a frame, then reset
FACT_FILLED = 1 << 15            # shared table only: this frame's word has been written
SHARED_MAX_FRAMES = 1 << 27      # 512 GiB of 4 KiB frames: 1 GiB of address space, of which
                                 # only the chunks of mapped frames are ever touched


class SharedFacts:
    """The packed facts of every frame in one anonymous shared mapping, made before the
    walk's workers fork: a chunk is read from the vmemmap once, by whichever process meets
    it first, instead of once per worker (each worker used to read nearly all of them,
    the bulk pages of every mm being spread over all of RAM). Pages of the mapping no
    process writes take no memory. Each word is written whole, FACT_FILLED with it: a word
    without it is not there yet and its chunk is read again (two workers filling one chunk
    at once write the same values; a half-written chunk is never read as zeros)."""

    def __init__(self, highest_pfn: int):
        n = ((highest_pfn >> CHUNK_SHIFT) + 1) << CHUNK_SHIFT
        self._map = mmap.mmap(-1, 8 * n)
        self.packed = np.frombuffer(self._map, np.int64)

    @classmethod
    def for_layout(cls, lay: "FrameLayout | None") -> "SharedFacts | None":
        if lay is None or lay.highest_pfn >= SHARED_MAX_FRAMES:
            return None      # the per-process cache of chunks (bounded by MAX_CHUNKS)
        return cls(lay.highest_pfn)


class FrameFacts:
    """What smaps needs of each frame, from its struct page and its head's: the FACT_* bits
    (the head's mapping type and flags, whether its folio has exactly one reference, whether
    the frame is part of a compound page / is its head, whether the dump had it all), its
    own mapcount and, for a head, its compound order. Read a chunk of frames at a time
    (struct pages come in whole pages anyway) and looked up with plain array gathers."""

    def __init__(self, reader: FrameReader, shared: SharedFacts | None = None):
        self.r, self.lay = reader, reader.lay
        self.shared = shared
        self.slot_of: dict[int, int] = {}
        self.index = np.full(0, -1, np.int64)
        # one int64 a frame: FACT_* bits | order << 16 | (mapcount + 1) << 32
        self.packed = np.zeros((0, 1 << CHUNK_SHIFT), np.int64)

    def _bit(self, flags: np.ndarray, name: str) -> np.ndarray:
        b = self.lay.bit(name)
        if b is None:
            return np.zeros(len(flags), bool)
        return ((flags >> np.uint64(b)) & np.uint64(1)) != 0

    def _load(self, chunks: list[int]) -> None:
        if not chunks:
            return
        top = max(chunks) + 1
        if top > len(self.index):
            grown = np.full(max(top, 2 * len(self.index)), -1, np.int64)
            grown[:len(self.index)] = self.index
            self.index = grown
        need = len(self.slot_of) + len(chunks)
        if need > len(self.packed):
            cap = max(need, 2 * len(self.packed), 16)
            new = np.zeros((cap, self.packed.shape[1]), np.int64)
            new[:len(self.packed)] = self.packed
            self.packed = new
        for c in chunks:
            slot = len(self.slot_of)
            self.slot_of[c] = slot
            self.index[c] = slot
            self._fill(slot, c)

    def _fill(self, slot: int, chunk: int) -> None:
        self.packed[slot] = self._facts(chunk)

    def _facts(self, chunk: int) -> np.ndarray:
        lay, r = self.lay, self.r
        pfn = np.arange(chunk << CHUNK_SHIFT, (chunk + 1) << CHUNK_SHIFT, dtype=np.uint64)
        own_addr = np.uint64(lay.vmemmap) + pfn * np.uint64(lay.size)
        own, ok = r.pages(pfn)
        tail = (own["chead"] & np.uint64(1)) != 0
        h = {k: v.copy() for k, v in own.items()}
        if tail.any():
            head = lay.heads(own_addr[tail], own["chead"][tail])
            # a head that is not a struct page before its tail: an encoding not read here
            plausible = (head >= np.uint64(lay.vmemmap)) & (head < own_addr[tail]) & \
                ((head - np.uint64(lay.vmemmap)) % np.uint64(lay.size) == 0)
            ok[tail] &= plausible
            head = np.where(plausible, head, own_addr[tail])
            hf, hok = r.fields(head, {"flags": (lay.flags, "u8"), "mapping": (lay.mapping, "u8"),
                                      "refcount": (lay.refcount, "i4")})
            for k, v in hf.items():
                h[k][tail] = v
            ok[tail] &= hok
        own_head = self._bit(own["flags"], "PG_head") & ~tail
        order = np.zeros(len(pfn), np.uint8)
        if own_head.any() and lay.order is not None:
            o, ook = r.fields(own_addr[own_head], {"o": (lay.order, "u1")})
            order[own_head] = np.where(ook, o["o"], 0)
        m = h["mapping"]
        f = h["flags"]
        bits = (np.where((m & np.uint64(1)) != 0, FACT_ANON, 0)
                | np.where((m & np.uint64(3)) == np.uint64(3), FACT_KSM, 0)
                | np.where(self._bit(f, "PG_swapbacked"), FACT_SWAPBACKED, 0)
                | np.where(self._bit(f, "PG_dirty"), FACT_DIRTY, 0)
                | np.where(self._bit(f, "PG_referenced") | self._bit(f, "PG_young"),
                           FACT_REFERENCED, 0)
                | np.where(h["refcount"] == 1, FACT_ONE_REF, 0)
                | np.where(tail | own_head, FACT_COMPOUND, 0)
                | np.where(own_head, FACT_HEAD, 0)
                | np.where(ok, FACT_OK, 0))
        return (bits.astype(np.int64) | (order.astype(np.int64) << 16)
                | ((own["mapcount"].astype(np.int64) + 1) << 32))

    def lookup(self, pfn: np.ndarray):
        """(FACT_* bits, own mapcount + 1, compound order) of each frame."""
        sh = self.shared
        if sh is not None and len(pfn) and int(pfn.max()) < len(sh.packed):
            at = pfn.astype(np.int64)
            v = sh.packed[at]
            todo = (v & FACT_FILLED) == 0
            if todo.any():
                for c in np.unique(at[todo] >> CHUNK_SHIFT).tolist():
                    sh.packed[c << CHUNK_SHIFT:(c + 1) << CHUNK_SHIFT] = \
                        self._facts(c) | FACT_FILLED
                v = sh.packed[at]
            return v & 0x7FFF, v >> 32, (v >> 16) & 0xFF
        chunk = (pfn >> np.uint64(CHUNK_SHIFT)).astype(np.int64)
        top = int(chunk.max())
        if top >= len(self.index):
            self._load([])
            grown = np.full(top + 1, -1, np.int64)
            grown[:len(self.index)] = self.index
            self.index = grown
        slots = self.index[chunk]
        if (slots < 0).any():
            missing = np.unique(chunk[slots < 0]).tolist()
            if len(self.slot_of) + len(missing) > MAX_CHUNKS:   # bound memory: start over
                self.slot_of.clear()
                self.index[:] = -1
                missing = np.unique(chunk).tolist()
            self._load(missing)
            slots = self.index[chunk]
        col = (pfn & np.uint64((1 << CHUNK_SHIFT) - 1)).astype(np.int64)
        v = self.packed.reshape(-1)[slots * (1 << CHUNK_SHIFT) + col]
        return v & 0xFFFF, v >> 32, (v >> 16) & 0xFF
