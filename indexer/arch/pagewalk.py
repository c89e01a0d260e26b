"""The user page-table walk, written once over an `Arch`'s table format.

A walk yields the non-empty leaves of one address space (LeafBatch chunks, in address
order) and records the table pages it could not read (TableFault). Which entries are
leaves, tables, present or swap is the Arch's business (classify / pte_present ...).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vmdex.indexer.arch.base import LEVEL_PMD, LEVEL_PTE, Arch
from vmdex.indexer.errors import MemoryReadError
from vmdex.indexer.runs import MAX_RUN_PAGES

KIND_PRESENT, KIND_SWAP = 0, 1


@dataclass
class LeafBatch:
    """Non-empty leaf entries of one address space, one element per page-or-larger leaf."""

    va: np.ndarray       # uint64 virtual address of the leaf
    npages: np.ndarray   # int64 number of pages the leaf covers
    level: np.ndarray    # int8 LEVEL_*
    kind: np.ndarray     # int8 KIND_*
    value: np.ndarray    # uint64: crash's physical address (present) or raw PTE (swap)
    raw: np.ndarray | None = None  # uint64 raw entry (its flag bits: smaps' young/dirty)
    table: np.ndarray | None = None  # uint64 physical address of the table page holding
                                     # the entry (smaps' hugetlb_pmd_shared reads its page)


@dataclass
class TableFault:
    """A page-table page the dump does not hold: everything below it is unknown."""

    va_start: int
    va_end: int
    level: int
    pa: int
    reason: str          # the read error's text (page_table_faults.reason)
    cause: str = ""      # its stored code (MemoryReadError.cause) when a read failed


def translate(phys, arch: Arch, top_pa: int, va: int) -> int | None:
    """Walk one address through the tables rooted at top_pa, as crash's uvtop does."""
    leaf = translate_leaf(phys, arch, top_pa, va)
    return leaf[0] if leaf else None


def translate_leaf(phys, arch: Arch, top_pa: int, va: int) -> tuple[int, int] | None:
    """(physical address, size of the leaf that maps it) of one address, or None."""
    table = top_pa
    shifts = arch.shifts
    for depth, shift in enumerate(shifts):
        n = arch.top_entries if depth == 0 else arch.entries
        e = arch.entries_of(phys.read(table + 8 * ((va >> shift) % n), 8))
        level = len(shifts) - depth  # 1 = PTE
        if not int(e[0]):
            return None
        if level == LEVEL_PTE:
            if not arch.pte_present(e)[0]:
                return None
            return (int(arch.leaf_pa(e, level)[0]) + (va & (arch.page_size - 1)),
                    arch.page_size)
        huge, down = arch.classify(e, level)
        if huge[0]:
            size = 1 << shift
            return ((int(arch.leaf_pa(e, level)[0]) & ~(arch.page_size - 1)) + (va & (size - 1)),
                    size)
        if not down[0]:
            return None
        table = int(arch.table_pa(e)[0])
    return None


MAX_TABLE_REUSE = 4     # a table page is normally under one entry (hugetlb PMD sharing: few)
CHUNK_LEAVES = 1 << 18  # leaf entries handed on at a time: memory is bounded by this, not by
                        # the size of the address space


def iter_user_leaves(phys, arch: Arch, top_pa: int, user_top: int,
                     ranges: list[tuple[int, int]] | None, faults: list,
                     chunk_leaves: int = CHUNK_LEAVES, edges: list | None = None):
    """Every non-empty leaf below user_top, in address order, as LeafBatch chunks of about
    `chunk_leaves` entries (cut only between PMD tables, so at most entries² leaves over;
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
    shifts = arch.shifts
    page = arch.page_size
    entries = arch.entries
    pending: list[tuple] = []
    held = [0]                  # leaves in `pending`
    starts = np.array([r[0] for r in ranges] if ranges else [], dtype=np.uint64)
    ends = np.array([r[1] for r in ranges] if ranges else [], dtype=np.uint64)

    def overlaps(lo: int, hi: int) -> bool:
        if ranges is None:
            return True
        i = int(np.searchsorted(ends, np.uint64(lo), side="right"))
        return i < len(starts) and int(starts[i]) < hi

    idx = np.arange(entries, dtype=np.uint64)
    top_entries = arch.top_entries
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
            faults.append(TableFault(base, base + span * entries, level, table_pa,
                                     f"page table {table_pa:x} points back at a higher level "
                                     "(corrupt entry)"))
            return None
        n = uses[table_pa] = uses.get(table_pa, 0) + 1
        if n > MAX_TABLE_REUSE:
            faults.append(TableFault(base, base + span * entries, level, table_pa,
                                     f"page table {table_pa:x} is under more than "
                                     f"{MAX_TABLE_REUSE} entries (corrupt tables?)"))
            return None
        try:
            return phys.read(table_pa, 8 * top_entries if depth == 0 else page)
        except MemoryReadError as exc:
            faults.append(TableFault(base, base + span * entries, level, table_pa, str(exc),
                                     exc.cause))
            return None

    def pte_leaves(raws: list[bytes], bases: list[int], tables: list[int]) -> int:
        """Decode many PTE pages at once (numpy's cost is per call, not per entry)."""
        e = arch.entries_of(b"".join(raws)).reshape(len(raws), entries)
        vas = np.array(bases, dtype=np.uint64)[:, None] + idx * np.uint64(page)
        pas = np.broadcast_to(np.array(tables, dtype=np.uint64)[:, None], e.shape)
        sel = e != 0
        e, vas, pas = e[sel], vas[sel], pas[sel]
        pres = arch.pte_present(e)
        n = len(e)
        pending.append((vas, np.ones(n, np.int64), np.full(n, LEVEL_PTE, np.int8),
                        np.where(pres, KIND_PRESENT, KIND_SWAP).astype(np.int8),
                        np.where(pres, arch.leaf_pa(e, LEVEL_PTE), e), e, pas))
        return n

    def visit(table_pa: int, base: int, depth: int, parent: int = 0, entry: int = 0):
        raw = read_table(table_pa, base, depth, parent, entry)
        if raw is None:
            return
        shift = shifts[depth]
        level = len(shifts) - depth
        span = 1 << shift
        e = arch.entries_of(raw)
        vas = np.uint64(base) + idx[:len(e)] * np.uint64(span)
        nz = e != 0
        if depth == 0:
            nz &= vas < np.uint64(user_top)
        if not nz.any():
            return
        huge, down = arch.classify(e, level)
        huge &= nz
        down &= nz
        leaf_pa = arch.leaf_pa(e, level)
        next_pa = arch.table_pa(e)
        path.append(table_pa)
        # Under a PMD table the children are PTE pages: read them in address order, decode
        # them together. Huge leaves among them go into the same chunk (the run builder
        # orders a chunk by address; chunks are cut only between PMD tables).
        raws: list[bytes] = []
        bases: list[int] = []
        tables: list[int] = []
        for i in np.nonzero(huge | down)[0]:      # in address order, leaves and tables alike
            va = base + int(i) * span
            if huge[i]:
                pending.append((vas[i:i + 1], np.full(1, span // page, np.int64),
                                np.full(1, level, np.int8), np.full(1, KIND_PRESENT, np.int8),
                                leaf_pa[i:i + 1], e[i:i + 1],
                                np.full(1, table_pa, np.uint64)))
                held[0] += max(1, span // page // MAX_RUN_PAGES)  # runs it becomes
                if held[0] >= chunk_leaves and level != LEVEL_PMD:
                    yield flush()
            elif not overlaps(va, va + span):
                continue
            elif level == LEVEL_PMD:
                child = read_table(int(next_pa[i]), va, depth + 1, table_pa, int(i))
                if child is not None:
                    raws.append(child)
                    bases.append(va)
                    tables.append(int(next_pa[i]))
            else:
                yield from visit(int(next_pa[i]), va, depth + 1, table_pa, int(i))
        path.pop()
        if raws:
            held[0] += pte_leaves(raws, bases, tables)
        if level == LEVEL_PMD and held[0] >= chunk_leaves:
            yield flush()

    yield from visit(top_pa, 0, 0)
    if pending:
        yield flush()


def walk_user_tables(phys, arch: Arch, top_pa: int, user_top: int,
                     ranges: list[tuple[int, int]] | None = None):
    """(all leaves as one LeafBatch, faults): iter_user_leaves gathered, for small
    address spaces and tests."""
    faults: list[TableFault] = []
    chunks = list(iter_user_leaves(phys, arch, top_pa, user_top, ranges, faults))
    if not chunks:
        empty = np.zeros(0, np.uint64)
        return LeafBatch(empty, np.zeros(0, np.int64), np.zeros(0, np.int8),
                         np.zeros(0, np.int8), empty), faults
    return LeafBatch(*(np.concatenate(c) for c in zip(*(
        (b.va, b.npages, b.level, b.kind, b.value) for b in chunks)))), faults


def kernel_map_runs(phys, arch: Arch, faults: list) -> list[tuple[int, int, int]]:
    """(va, npages, pa) stretches the kernel's own tables map in Arch.kernel_map_span(),
    physically contiguous and at most MAX_RUN_PAGES pages each, in address order; unreadable
    table pages are appended to `faults`."""
    span = arch.kernel_map_span()
    if span is None or arch.kernel_pgd_pa is None:
        return []
    lo, hi, ext = span
    page = arch.page_size
    leaves: list[tuple[int, int, int]] = []
    for b in iter_user_leaves(phys, arch, arch.kernel_pgd_pa, hi, [(lo, hi)], faults):
        keep = b.kind == KIND_PRESENT
        for va, n, pa in zip(b.va[keep].tolist(), b.npages[keep].tolist(),
                             b.value[keep].tolist()):
            for i in range(0, n, MAX_RUN_PAGES):     # a bigger block: run-sized pieces
                leaves.append((va + i * page, min(MAX_RUN_PAGES, n - i), pa + i * page))
    leaves.sort()
    out: list[tuple[int, int, int]] = []
    for va, n, pa in leaves:
        if out and out[-1][0] + out[-1][1] * page == va and \
                out[-1][2] + out[-1][1] * page == pa and out[-1][1] + n <= MAX_RUN_PAGES:
            out[-1] = (out[-1][0], out[-1][1] + n, out[-1][2])
        else:
            out.append((va, n, pa))
    return [(va | ext, n, pa) for va, n, pa in out]
