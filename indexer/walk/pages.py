"""Leaf entries → coalesced page runs, clipped to the VMAs crash would look them up in.

A run is a stretch of consecutive virtual pages in one VMA whose entries continue each other:
present pages with consecutive physical addresses, or swap entries with consecutive offsets.
Runs never exceed MAX_RUN_PAGES, so a lookup by physical address or swap offset is a bounded
range scan on an index (see query side).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vmdex.indexer.arch.base import Arch
from vmdex.indexer.arch.pagewalk import KIND_PRESENT, KIND_SWAP, LeafBatch
from vmdex.indexer.runs import MAX_RUN_PAGES



@dataclass
class PageRuns:
    vma_index: np.ndarray   # index into the mm's VMA list
    va: np.ndarray          # uint64 first virtual page
    npages: np.ndarray      # int64
    level: np.ndarray       # int8 leaf level of the entries
    kind: np.ndarray        # int8 KIND_*
    pa: np.ndarray          # uint64 crash's physical address of the first page (present)
    swap_type: np.ndarray   # int64 (swap)
    swap_offset: np.ndarray  # int64 (swap)
    pte: np.ndarray         # uint64 raw entry of the first page (swap) or pa (present)

    def __len__(self) -> int:
        return len(self.va)


def _clip_to_vmas(b: LeafBatch, starts: np.ndarray, ends: np.ndarray, page: int):
    """Keep the parts of leaves that lie inside a VMA; return (leaf arrays..., vma index)."""
    order = np.argsort(b.va, kind="stable")
    va, npg, lvl, kind, val = (b.va[order], b.npages[order], b.level[order], b.kind[order],
                               b.value[order])
    vi = np.searchsorted(ends, va, side="right")
    ok = vi < len(starts)
    inside = np.zeros(len(va), bool)
    inside[ok] = starts[vi[ok]] <= va[ok]
    single = npg == 1
    keep = single & inside
    out = [va[keep], npg[keep], lvl[keep], kind[keep], val[keep], vi[keep]]
    # Huge leaves are rare: split each one at VMA boundaries in Python.
    extra = [[] for _ in range(6)]
    for i in np.nonzero(~single)[0]:
        lo, hi = int(va[i]), int(va[i]) + int(npg[i]) * page
        j = int(np.searchsorted(ends, np.uint64(lo), side="right"))
        while j < len(starts) and int(starts[j]) < hi:
            s, e = max(lo, int(starts[j])), min(hi, int(ends[j]))
            step = MAX_RUN_PAGES * page  # a bigger leaf becomes several runs
            for c in range(s, e, step):
                ce = min(e, c + step)
                for k, v in enumerate((c, (ce - c) // page, lvl[i], kind[i],
                                       int(val[i]) + (c - lo), j)):
                    extra[k].append(v)
            j += 1
    if extra[0]:
        dtypes = (np.uint64, np.int64, np.int8, np.int8, np.uint64, np.int64)
        out = [np.concatenate([o, np.array(x, dtype=d)]) for o, x, d in zip(out, extra, dtypes)]
        order = np.argsort(out[0], kind="stable")
        out = [o[order] for o in out]
    return out


class RunBuilder:
    """Page runs of one address space from leaf chunks in address order (the streaming
    walk), with the same run boundaries as if all leaves came at once: the unfinished
    stretch at the end of a chunk, less than MAX_RUN_PAGES leaves, waits for the next."""

    def __init__(self, vmas: list[tuple[int, int]], arch: Arch):
        self.starts = np.array([s for s, _ in vmas], dtype=np.uint64)
        self.ends = np.array([e for _, e in vmas], dtype=np.uint64)
        self.arch = arch
        self.carry: list[np.ndarray] | None = None

    def feed(self, batch: LeafBatch) -> PageRuns:
        cols = _clip_to_vmas(batch, self.starts, self.ends, self.arch.page_size)
        if self.carry is not None:
            cols = [np.concatenate([c, x]) for c, x in zip(self.carry, cols)]
        runs, self.carry = _runs(cols, self.arch, hold_tail=True)
        return runs

    def finish(self) -> PageRuns:
        cols, self.carry = self.carry, None
        if cols is None:
            cols = _clip_to_vmas(_EMPTY, self.starts, self.ends, self.arch.page_size)
        return _runs(cols, self.arch, hold_tail=False)[0]


def build_runs(batch: LeafBatch, vmas: list[tuple[int, int]], arch: Arch) -> PageRuns:
    """All runs of one address space's leaves, given at once."""
    b = RunBuilder(vmas, arch)
    head, tail = b.feed(batch), b.finish()
    return PageRuns(*(np.concatenate([getattr(head, f), getattr(tail, f)])
                      for f in PageRuns.__dataclass_fields__))


_EMPTY = LeafBatch(np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.int8),
                   np.zeros(0, np.int8), np.zeros(0, np.uint64))


def _runs(cols: list[np.ndarray], arch: Arch, hold_tail: bool):
    """(runs, held-back leaf columns or None) of clipped, address-sorted leaves. With
    hold_tail the last continuous stretch is held back from its last MAX_RUN_PAGES
    boundary on: the next chunk may continue it."""
    va, npg, lvl, kind, val, vi = cols
    n = len(va)
    swap = kind == KIND_SWAP
    styp = np.zeros(n, np.uint64)
    soff = np.zeros(n, np.uint64)
    if swap.any():
        styp[swap], soff[swap] = arch.swap_type_offset(val[swap])
    if n == 0:
        z = np.zeros(0, np.int64)
        return PageRuns(z, va, npg, lvl, kind, val, z, z, val), None
    # Where does a new run start? Any break in continuity between neighbours.
    brk = np.ones(n, bool)
    if n > 1:
        page = np.uint64(arch.page_size)
        cont = (va[1:] == va[:-1] + npg[:-1].astype(np.uint64) * page)
        cont &= (npg[1:] == 1) & (npg[:-1] == 1)
        cont &= (kind[1:] == kind[:-1]) & (lvl[1:] == lvl[:-1]) & (vi[1:] == vi[:-1])
        pres = kind[1:] == KIND_PRESENT
        cont &= np.where(pres, val[1:] == val[:-1] + page,
                         (styp[1:] == styp[:-1]) & (soff[1:] == soff[:-1] + np.uint64(1)))
        brk[1:] = ~cont
    group = np.cumsum(brk) - 1
    first = np.nonzero(brk)[0]
    pos = np.arange(n) - first[group]
    brk |= (pos % MAX_RUN_PAGES) == 0
    heads = np.nonzero(brk)[0]
    # Sum npages per run (all 1 for PTE runs, the leaf size for a lone huge leaf).
    run_pages = np.add.reduceat(npg, heads) if n else npg
    carry = None
    if hold_tail:       # the last run may go on in the next chunk: its leaves wait
        cut = int(heads[-1])
        carry = [c[cut:] for c in cols]
        heads, run_pages = heads[:-1], run_pages[:-1]
    present = kind[heads] == KIND_PRESENT
    return PageRuns(
        vma_index=vi[heads].astype(np.int64),
        va=va[heads],
        npages=run_pages.astype(np.int64),
        level=lvl[heads],
        kind=kind[heads],
        pa=np.where(present, val[heads], np.uint64(0)),
        swap_type=styp[heads].astype(np.int64),
        swap_offset=soff[heads].astype(np.int64),
        pte=val[heads],
    ), carry
