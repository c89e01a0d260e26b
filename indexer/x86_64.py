"""x86_64 address translation: kernel virtual → physical, and user page-table decoding.

Everything that depends on the machine's paging mode lives here: KASLR/phys_base arithmetic,
the direct map, 4- or 5-level walks, huge leaves, and the swap-entry encoding.
Bit values are the architecture's (Intel SDM), not the kernel's build: they cannot vary.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer.errors import MemoryReadError, WalkError

START_KERNEL_MAP = 0xFFFFFFFF80000000  # fixed by the x86_64 ABI, KASLR moves only phys_base
PAGE_SIZE = 4096
PAGE_SHIFT = 12
ENTRIES = 512

_P = 0x1          # present
_PSE = 0x80       # huge leaf at PMD/PUD level
_PROTNONE = 0x100  # _PAGE_GLOBAL reused for PROT_NONE / NUMA-hinting entries when P is clear
U64 = (1 << 64) - 1

# Leaf levels as stored in the index.
LEVEL_PTE, LEVEL_PMD, LEVEL_PUD = 1, 2, 3
KIND_PRESENT, KIND_SWAP = 0, 1


def to_signed(v: int) -> int:
    """u64 → the two's-complement int64 the database stores."""
    v &= U64
    return v - (1 << 64) if v >> 63 else v


@dataclass
class Paging:
    """The paging facts of one dump, all taken from VMCOREINFO and kernel memory."""

    levels: int               # 4 or 5
    page_offset: int          # direct-map base (page_offset_base)
    phys_base: int            # signed: where the kernel image sits physically
    sme_mask: int = 0         # AMD memory-encryption bit, stripped from table addresses
    l1tf: bool = True         # swap offsets stored inverted (kernels with the L1TF fix)

    @property
    def phys_mask(self) -> int:
        # crash masks table/leaf addresses to 46 bits (4-level) or 52 bits (5-level).
        bits = 52 if self.levels == 5 else 46
        return ((1 << bits) - 1) & ~(PAGE_SIZE - 1)

    def kvtop_linear(self, va: int) -> int | None:
        """Translate kernel image or direct-map addresses without a page-table walk."""
        if va >= START_KERNEL_MAP:
            return (va - START_KERNEL_MAP + self.phys_base) & U64
        if va >= self.page_offset:
            pa = va - self.page_offset
            if pa < (1 << 52):
                return pa
        return None

    def swap_type_offset(self, pte: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decode swap type and offset from non-present PTE values (uint64 array)."""
        if self.l1tf:
            # Type in bits 59-63, offset in bits 9-58 stored inverted (L1TF mitigation).
            typ = pte >> np.uint64(59)
            off = ((~pte) << np.uint64(5)) >> np.uint64(14)
        else:
            typ = (pte >> np.uint64(9)) & np.uint64(0x1F)
            off = pte >> np.uint64(14)
        return typ, off


def swap_offsets_inverted(has_l1tf_mitigation: bool, release: str | None) -> bool:
    """Whether swap entries use the L1TF layout (offset stored inverted in bits 9-58, type
    in 59-63). The one rule in vmdex decided by release number, because crash decides it
    so and vmdex must print the offsets crash prints: crash's x86_64.c, x86_64_l1tf_init(),
    takes the symbol l1tf_mitigation (backports) or THIS_KERNEL_VERSION >= 4.18.1."""
    return has_l1tf_mitigation or _release_tuple(release or "") >= (4, 18, 1)


def _release_tuple(release: str) -> tuple[int, ...]:
    nums = []
    for part in release.split("-")[0].split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        nums.append(int(digits) if digits else 0)
    return tuple(nums)


class KernelMemory:
    """Reads kernel virtual memory of a dump: linear maps first, else swapper_pg_dir walk."""

    def __init__(self, phys, paging: Paging, kernel_pgd_pa: int | None = None):
        self.phys = phys
        self.paging = paging
        self.kernel_pgd_pa = kernel_pgd_pa

    def vtop(self, va: int) -> int:
        pa = self.paging.kvtop_linear(va)
        if pa is not None:
            return pa
        if self.kernel_pgd_pa is None:
            raise WalkError(f"cannot translate kernel address {va:x}")
        pa = translate(self.phys, self.paging, self.kernel_pgd_pa, va)
        if pa is None:
            raise WalkError(f"kernel address {va:x} is not mapped")
        return pa

    def read(self, va: int, size: int) -> bytes:
        out = bytearray()
        while size > 0:
            n = min(size, PAGE_SIZE - (va & (PAGE_SIZE - 1)))
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
        while len(out) < limit:
            n = min(limit - len(out), PAGE_SIZE - (va & (PAGE_SIZE - 1)))
            chunk = self.read(va, n)
            z = chunk.find(b"\0")
            if z >= 0:
                return bytes(out + chunk[:z])
            out += chunk
            va += n
        return bytes(out)


def _shifts(levels: int) -> list[int]:
    return [48, 39, 30, 21, 12] if levels == 5 else [39, 30, 21, 12]


def translate(phys, paging: Paging, top_pa: int, va: int) -> int | None:
    """Walk one address through the tables rooted at top_pa, as crash's uvtop does."""
    mask = paging.phys_mask
    table = top_pa
    shifts = _shifts(paging.levels)
    for depth, shift in enumerate(shifts):
        e = int.from_bytes(phys.read(table + 8 * ((va >> shift) & 511), 8), "little")
        e &= ~paging.sme_mask & U64
        level = len(shifts) - depth  # 1 = PTE
        if level <= LEVEL_PMD:
            if not e & (_P | _PROTNONE):
                return None
        elif not e & _P:
            return None
        if level in (LEVEL_PMD, LEVEL_PUD) and e & _PSE or level == LEVEL_PTE:
            size = 1 << shift
            return (e & mask & ~(PAGE_SIZE - 1)) + (va & (size - 1))
        table = e & mask
    return None


@dataclass
class LeafBatch:
    """Non-empty leaf entries of one address space, one element per 4 KiB-or-larger leaf."""

    va: np.ndarray       # uint64 virtual address of the leaf
    npages: np.ndarray   # int64 number of 4 KiB pages the leaf covers
    level: np.ndarray    # int8 LEVEL_*
    kind: np.ndarray     # int8 KIND_*
    value: np.ndarray    # uint64: crash's physical address (present) or raw PTE (swap)
    raw: np.ndarray | None = None  # uint64 raw entry (its flag bits: smaps' young/dirty)


@dataclass
class TableFault:
    """A page-table page the dump does not hold: everything below it is unknown."""

    va_start: int
    va_end: int
    level: int
    pa: int
    reason: str


MAX_TABLE_REUSE = 4     # a table page is normally under one entry (hugetlb PMD sharing: few)
CHUNK_LEAVES = 1 << 18  # leaf entries handed on at a time: memory is bounded by this, not by
                        # the size of the address space


def iter_user_leaves(phys, paging: Paging, top_pa: int, user_top: int,
                     ranges: list[tuple[int, int]] | None, faults: list,
                     chunk_leaves: int = CHUNK_LEAVES, edges: list | None = None):
    """Every non-empty leaf below user_top, in address order, as LeafBatch chunks of about
    `chunk_leaves` entries (cut only between PMD tables, so at most 512 * 512 leaves over;
    within a chunk leaves are in address order per PMD table); the table pages that
    could not be read are appended to `faults`. Memory holds one chunk, whatever the
    size of the address space.

    `ranges` (sorted, non-overlapping [start, end) VMAs) prunes subtrees no VMA touches:
    crash only ever looks up addresses inside VMAs, so entries elsewhere are never shown.

    Corrupt tables cannot make this loop or explode: a table that points back at one of
    its own ancestors, or is under more than MAX_TABLE_REUSE entries, is a fault, so no
    table page is read more than MAX_TABLE_REUSE times: the walk is bounded by the dump's
    size. Faults, not exceptions: only the affected addresses are unknown.

    `edges`, if given, receives (table page, parent table page, entry index) for every table
    page reached (the parallel walk checks with them that no table is cross-linked).
    """
    mask = np.uint64(paging.phys_mask)
    sme_keep = np.uint64(~paging.sme_mask & U64)
    shifts = _shifts(paging.levels)
    pending: list[tuple] = []
    held = [0]                  # leaves in `pending`
    starts = np.array([r[0] for r in ranges] if ranges else [], dtype=np.uint64)
    ends = np.array([r[1] for r in ranges] if ranges else [], dtype=np.uint64)

    def overlaps(lo: int, hi: int) -> bool:
        if ranges is None:
            return True
        i = int(np.searchsorted(ends, np.uint64(lo), side="right"))
        return i < len(starts) and int(starts[i]) < hi

    idx = np.arange(ENTRIES, dtype=np.uint64)
    path: list[int] = []        # table pages from the top down to the one being read
    uses: dict[int, int] = {}   # table page -> entries that led to it so far

    def flush():
        cols = list(zip(*pending))
        pending.clear()
        held[0] = 0
        return LeafBatch(*(np.concatenate(c) for c in cols))

    def read_table(table_pa: int, base: int, depth: int, parent: int = 0,
                   entry: int = 0) -> bytes | None:
        """The table page's bytes, or None after recording why it is not walked."""
        if edges is not None:
            edges.append((table_pa, parent, entry))
        span = 1 << shifts[depth]
        level = len(shifts) - depth
        if table_pa in path:
            faults.append(TableFault(base, base + span * ENTRIES, level, table_pa,
                                     f"page table {table_pa:x} points back at a higher level "
                                     "(corrupt entry)"))
            return None
        n = uses[table_pa] = uses.get(table_pa, 0) + 1
        if n > MAX_TABLE_REUSE:
            faults.append(TableFault(base, base + span * ENTRIES, level, table_pa,
                                     f"page table {table_pa:x} is under more than "
                                     f"{MAX_TABLE_REUSE} entries (corrupt tables?)"))
            return None
        try:
            return phys.read(table_pa, PAGE_SIZE)
        except MemoryReadError as exc:
            faults.append(TableFault(base, base + span * ENTRIES, level, table_pa, str(exc)))
            return None

    def pte_leaves(raws: list[bytes], bases: list[int]) -> int:
        """Decode many PTE pages at once (numpy's cost is per call, not per entry)."""
        e = np.frombuffer(b"".join(raws), dtype="<u8").reshape(len(raws), ENTRIES) & sme_keep
        vas = np.array(bases, dtype=np.uint64)[:, None] + idx * np.uint64(PAGE_SIZE)
        sel = e != 0
        e, vas = e[sel], vas[sel]
        pres = (e & np.uint64(_P | _PROTNONE)) != 0
        n = len(e)
        pending.append((vas, np.ones(n, np.int64), np.full(n, LEVEL_PTE, np.int8),
                        np.where(pres, KIND_PRESENT, KIND_SWAP).astype(np.int8),
                        np.where(pres, e & mask, e), e))
        return n

    def visit(table_pa: int, base: int, depth: int, parent: int = 0, entry: int = 0):
        raw = read_table(table_pa, base, depth, parent, entry)
        if raw is None:
            return
        shift = shifts[depth]
        level = len(shifts) - depth
        span = 1 << shift
        e = np.frombuffer(raw, dtype="<u8") & sme_keep
        vas = np.uint64(base) + idx * np.uint64(span)
        nz = e != 0
        if depth == 0:
            nz &= vas < np.uint64(user_top)
        if not nz.any():
            return
        present = (e & np.uint64(_P)) != 0
        if level == LEVEL_PMD:
            present |= (e & np.uint64(_PROTNONE)) != 0
        huge = nz & present & ((e & np.uint64(_PSE)) != 0) if level in (LEVEL_PMD, LEVEL_PUD) \
            else np.zeros(ENTRIES, bool)
        # Non-present entries above the PTE level are "not mapped" for crash.
        down = nz & present & ~huge
        path.append(table_pa)
        # Under a PMD table the children are PTE pages: read them in address order, decode
        # them together. Huge leaves among them go into the same chunk (the run builder
        # orders a chunk by address; chunks are cut only between PMD tables).
        raws: list[bytes] = []
        bases: list[int] = []
        for i in np.nonzero(huge | down)[0]:      # in address order, leaves and tables alike
            va = base + int(i) * span
            if huge[i]:
                pending.append((vas[i:i + 1], np.full(1, span // PAGE_SIZE, np.int64),
                                np.full(1, level, np.int8), np.full(1, KIND_PRESENT, np.int8),
                                e[i:i + 1] & mask, e[i:i + 1]))
                held[0] += max(1, span >> 21)     # each 2 MiB of it becomes a run
                if held[0] >= chunk_leaves and level != LEVEL_PMD:
                    yield flush()
            elif not overlaps(va, va + span):
                continue
            elif level == LEVEL_PMD:
                child = read_table(int(e[i] & mask), va, depth + 1, table_pa, int(i))
                if child is not None:
                    raws.append(child)
                    bases.append(va)
            else:
                yield from visit(int(e[i] & mask), va, depth + 1, table_pa, int(i))
        path.pop()
        if raws:
            held[0] += pte_leaves(raws, bases)
        if level == LEVEL_PMD and held[0] >= chunk_leaves:
            yield flush()

    yield from visit(top_pa, 0, 0)
    if pending:
        yield flush()


def walk_user_tables(phys, paging: Paging, top_pa: int, user_top: int,
                     ranges: list[tuple[int, int]] | None = None):
    """(all leaves as one LeafBatch, faults): iter_user_leaves gathered, for small
    address spaces and tests."""
    faults: list[TableFault] = []
    chunks = list(iter_user_leaves(phys, paging, top_pa, user_top, ranges, faults))
    if not chunks:
        empty = np.zeros(0, np.uint64)
        return LeafBatch(empty, np.zeros(0, np.int64), np.zeros(0, np.int8),
                         np.zeros(0, np.int8), empty), faults
    return LeafBatch(*(np.concatenate(c) for c in zip(*(
        (b.va, b.npages, b.level, b.kind, b.value) for b in chunks)))), faults
