"""/proc/PID/smaps figures of every VMA, computed at ingest from the page-table leaves.

What fs/proc/task_mmu.c does per entry (smaps_pte_entry / smaps_pmd_entry /
smaps_hugetlb_range, smaps_account), done here over a whole chunk of leaves at once: each
present page's struct page (flags, mapping, _refcount, _mapcount; its head's for a tail
page) and each swap entry's swap count decide its share. The sums are kept per VMA in
the kernel's own units (bytes; the Pss sums in bytes << PSS_SHIFT) so a rollup of many VMAs
rounds exactly as the kernel's does. A figure that depends on something the dump lacks (a
struct page, a swap count) or on a case not modelled here is marked unknown, never
guessed: `unknown` has one bit per field, `reason` says why in one line.

The plan (SmapsPlan) is plain data made in the parent from the kernel's layouts; the
gatherers (MmGatherer) run wherever the leaves are walked, also in worker processes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vmdex.indexer.errors import MemoryReadError, WalkError
from vmdex.indexer.walk.frames import FACT_DIRTY, FACT_ANON, FACT_COMPOUND, FACT_HEAD, FACT_KSM, \
    FACT_OK, FACT_ONE_REF, FACT_REFERENCED, FACT_SWAPBACKED, FrameFacts, FrameLayout, \
    FrameReader, frame_layout
from vmdex.indexer.arch.base import LEVEL_PMD, LEVEL_PTE, Arch
from vmdex.indexer.arch.memory import KernelMemory
from vmdex.indexer.arch.pagewalk import KIND_PRESENT, KIND_SWAP
from vmdex.indexer.walk.swapcount import SwapCountsUnknown, SwapMap, SwapTable, swap_counts

PSS_SHIFT = 12
FIELDS = ("resident", "pss", "pss_dirty", "pss_anon", "pss_file", "pss_shmem",
          "shared_clean", "shared_dirty", "private_clean", "private_dirty", "referenced",
          "anonymous", "ksm", "lazyfree", "anonymous_thp", "shmem_thp", "file_thp",
          "shared_hugetlb", "private_hugetlb", "swap", "swap_pss", "pss_locked")
F = {n: i for i, n in enumerate(FIELDS)}
NF = len(FIELDS)
ALL = (1 << NF) - 1
SWAP_BITS = (1 << F["swap"]) | (1 << F["swap_pss"])
PAGE_BITS = ALL & ~SWAP_BITS
SHARE_BITS = sum(1 << F[n] for n in ("pss", "pss_dirty", "pss_anon", "pss_file", "pss_shmem",
                                     "shared_clean", "shared_dirty", "private_clean",
                                     "private_dirty", "pss_locked"))
# A present leaf's category: which of the sums it adds to (see _present)
C_ANON, C_SB, C_D, C_PRIV, C_REF, C_KSM, C_PMD = 1, 2, 4, 8, 16, 32, 64
NCAT = 128


def _cats(pred) -> np.ndarray:
    return np.array([c for c in range(NCAT) if pred(c)], np.int64)


# field, the categories it sums, whether it sums Pss units (else bytes)
CAT_FIELDS = (
    ("resident", _cats(lambda c: True), False),
    ("anonymous", _cats(lambda c: c & C_ANON), False),
    ("ksm", _cats(lambda c: c & C_KSM), False),
    ("lazyfree", _cats(lambda c: c & C_ANON and not c & C_SB and not c & C_D), False),
    ("referenced", _cats(lambda c: c & C_REF), False),
    ("anonymous_thp", _cats(lambda c: c & C_PMD and c & C_ANON), False),
    ("shmem_thp", _cats(lambda c: c & C_PMD and not c & C_ANON and c & C_SB), False),
    ("file_thp", _cats(lambda c: c & C_PMD and not c & C_ANON and not c & C_SB), False),
    ("pss", _cats(lambda c: True), True),
    ("pss_anon", _cats(lambda c: c & C_ANON), True),
    ("pss_shmem", _cats(lambda c: not c & C_ANON and c & C_SB), True),
    ("pss_file", _cats(lambda c: not c & C_ANON and not c & C_SB), True),
    ("pss_dirty", _cats(lambda c: c & C_D), True),
    ("private_dirty", _cats(lambda c: c & C_D and c & C_PRIV), False),
    ("shared_dirty", _cats(lambda c: c & C_D and not c & C_PRIV), False),
    ("private_clean", _cats(lambda c: not c & C_D and c & C_PRIV), False),
    ("shared_clean", _cats(lambda c: not c & C_D and not c & C_PRIV), False),
)


@dataclass
class SmapsPlan:
    """What the gatherers need, as plain data (inherited by the walk's workers)."""

    paging: Arch                     # the entry bits: young, dirty, special, swap
    kernel_pgd_pa: int | None
    frames: FrameLayout | None
    vm: dict                        # mnemonic -> vm_flags bit mask (from the kernel's table)
    shadow_stack: bool              # the kernel keeps user shadow stacks (VmFlags "ss")
    has_ksm: bool
    double_map_rule: bool           # page_mapcount() is __page_mapcount() (PageDoubleMap)
    nr_swapfiles: int
    has_markers: bool               # the kernel has PTE markers (the pte_marker type)
    swap_counts: SwapMap | SwapTable | SwapCountsUnknown    # each swap slot's count
    vma_flags: dict                 # mm -> [vm_flags of each VMA]
    why_no_frames: str = ""
    pmd_shared: tuple[int, int] | None = None  # hugetlb_pmd_shared(): (offset in the table
                                    # page's struct page, the value it must exceed), or None
    shared_facts: object = None     # frames.SharedFacts while the parallel walk runs


@dataclass
class SmapsPart:
    """Sums for VMAs first_vma.. of one mm, from one chunk of its leaves."""

    mm: int
    first_vma: int
    sums: np.ndarray                # (n, NF) int64
    unknown: np.ndarray             # (n,) int64 bit masks
    reasons: dict = field(default_factory=dict)   # local VMA index -> first reason


_READERS: dict = {}


class MmGatherer:
    """The smaps sums of one mm's VMAs first_vma..first_vma+n, fed leaf chunks."""

    def __init__(self, plan: SmapsPlan, phys, mm: int, first_vma: int, n: int,
                 ranges: list[tuple[int, int]]):
        self.plan, self.mm, self.first = plan, mm, first_vma
        key = (id(plan), id(phys))
        if key not in _READERS:          # one cache of frame facts per dump and process,
            _READERS.clear()             # shared by its mms and pieces of mms
            mem = KernelMemory(phys, plan.paging)
            reader = FrameReader(mem, plan.frames) if plan.frames else None
            _READERS[key] = (mem, reader,
                             FrameFacts(reader, plan.shared_facts) if reader else None)
        self.mem, self.frames, self.facts = _READERS[key]
        self.starts = np.array([s for s, _ in ranges], np.uint64)
        self.ends = np.array([e for _, e in ranges], np.uint64)
        flags = plan.vma_flags[mm][first_vma:first_vma + n]
        self.flags = np.array(flags, np.uint64)
        vm = plan.vm
        self.hugetlb = (self.flags & np.uint64(vm.get("ht", 0))) != 0
        self.locked = (self.flags & np.uint64(vm.get("lo", 0))) != 0
        self.failed = False
        self.sums = np.zeros((n, NF), np.int64)
        self.unknown = np.zeros(n, np.int64)
        self.reasons: dict[int, str] = {}

    def _add(self, vi: np.ndarray, cols: dict) -> None:
        """Add per-leaf values to their VMAs' sums. bincount sums in float64, exact here:
        a chunk holds < 2^19 leaves of < 2^34 each, so every partial sum is < 2^53."""
        if not len(vi):
            return
        n = len(self.sums)
        for name, col in cols.items():
            if np.isscalar(col):
                col = np.full(len(vi), col, np.int64)
            if not col.any():
                continue
            self.sums[:, F[name]] += np.rint(np.bincount(vi, weights=col, minlength=n)) \
                .astype(np.int64)

    def _mark(self, vi: np.ndarray, bits: int, why: str) -> None:
        for v in np.unique(vi).tolist():
            self.unknown[v] |= bits
            self.reasons.setdefault(v, why)

    def feed(self, batch) -> None:
        """Account one chunk of leaves. Whatever goes wrong here must not stop the walk
        (the runs of `vm` come from the same chunks): these VMAs' figures become unknown."""
        if self.failed or batch.raw is None or not len(batch.va):
            return
        try:
            self._feed(batch)
        except Exception as exc:    # noqa: BLE001 - the figures are unknown, said so
            self.failed = True
            self.abandon(f"smaps accounting failed: {type(exc).__name__}: {exc}")

    def _feed(self, batch) -> None:
        vi = np.searchsorted(self.ends, batch.va, side="right")
        ok = vi < len(self.starts)
        if ok.all():
            inside = self.starts[vi] <= batch.va
        else:
            inside = np.zeros(len(vi), bool)
            inside[ok] = self.starts[vi[ok]] <= batch.va[ok]
        vi, raw, kind, level = vi, batch.raw, batch.kind, batch.level
        npages = batch.npages
        table = batch.table if batch.table is not None else np.zeros(len(vi), np.uint64)
        if not inside.all():
            if not inside.any():
                return
            vi, raw, kind, level, npages, table = (
                x[inside] for x in (vi, raw, kind, level, npages, table))
        huge = self.hugetlb[vi]
        pres = kind == KIND_PRESENT
        if (pres & huge).any():
            m = pres & huge
            self._hugetlb(vi[m], raw[m], level[m], npages[m], table[m])
        m = pres & ~huge
        if m.any():
            self._present(vi[m], raw[m], level[m])
        m = (kind == KIND_SWAP) & ~huge
        if m.any():
            # entries the kernel counts as present though crash does not (arm64 PROT_NONE)
            arch = self.plan.paging
            prot_none = m & (level == LEVEL_PTE) & arch.kernel_pte_present(raw)
            if prot_none.any():
                self._present(vi[prot_none], raw[prot_none], level[prot_none])
                m &= ~prot_none
            self._swap(vi[m], raw[m], level[m])

    # --- present pages ------------------------------------------------------------------
    def _heads(self, pfn: np.ndarray):
        """Own and head facts of each frame, and ok: the dump holds both struct pages."""
        fr, ok = self.frames.pages(pfn)
        lay = self.plan.frames
        own = np.uint64(lay.vmemmap) + pfn.astype(np.uint64) * np.uint64(lay.size)
        tail = (fr["chead"] & np.uint64(1)) != 0
        head = lay.heads(own, fr["chead"])
        h = {k: v.copy() for k, v in fr.items()}
        if tail.any():
            hf, hok = self.frames.fields(head[tail], {
                "flags": (lay.flags, "u8"), "mapping": (lay.mapping, "u8"),
                "refcount": (lay.refcount, "i4"), "mapcount": (lay.mapcount, "i4")})
            for k2, v in hf.items():
                h[k2][tail] = v
            ok[tail] &= hok
        return fr, h, head, tail, ok

    def _bit(self, flags: np.ndarray, name: str) -> np.ndarray:
        b = self.plan.frames.bit(name)
        if b is None:
            return np.zeros(len(flags), bool)
        return ((flags >> np.uint64(b)) & np.uint64(1)) != 0

    def _present(self, vi, raw, level) -> None:
        if self.frames is None:
            self._mark(vi, PAGE_BITS, self.plan.why_no_frames or "struct pages not readable")
            return
        lay, arch = self.plan.frames, self.plan.paging
        special = arch.pte_special(raw) & (level == LEVEL_PTE)
        pfn = self._pfn(raw, level)
        keep = ~special & (pfn <= np.uint64(lay.highest_pfn))
        if (level > LEVEL_PMD)[keep].any():
            self._mark(vi[keep & (level > LEVEL_PMD)], PAGE_BITS, "PUD-mapped pages")
            keep &= level <= LEVEL_PMD
        if not keep.all():
            vi, raw, pfn, level = vi[keep], raw[keep], pfn[keep], level[keep]
        if not len(vi):
            return
        b8, mapcount, order = self.facts.lookup(pfn)
        bits = b8
        ok = (bits & FACT_OK) != 0
        if not ok.all():
            self._mark(vi[~ok], PAGE_BITS, "a mapped frame's struct page is not in the dump")
            vi, raw, level, bits, mapcount, order, pfn = (
                x[ok] for x in (vi, raw, level, bits, mapcount, order, pfn))
            b8 = bits
        if not len(vi):
            return
        page = arch.page_size
        pmd = level == LEVEL_PMD
        whole = np.where(pmd & ((bits & FACT_HEAD) != 0),
                         np.int64(page) << order.astype(np.int64), page)
        one_ref = (bits & FACT_ONE_REF) != 0
        shared_compound = ~one_ref & ((bits & FACT_COMPOUND) != 0)
        size = whole
        if shared_compound.any():
            # smaps_account(): a folio with more references is counted page by page, each
            # by its page_mapcount(): a PMD leaf becomes its pages
            split = shared_compound & (whole > page)
            if split.any():
                reps = np.where(split, whole // page, 1)
                at = np.repeat(np.arange(len(vi)), reps)
                sub = np.arange(len(at)) - np.repeat(np.cumsum(reps) - reps, reps)
                vi, raw, level, one_ref, shared_compound = (
                    x[at] for x in (vi, raw, level, one_ref, shared_compound))
                pfn = pfn[at] + sub.astype(np.uint64)
                size = np.where(split[at], page, whole[at])
                bits, mapcount, _order = self.facts.lookup(pfn)
                ok = (bits & FACT_OK) != 0
                if not ok.all():
                    self._mark(vi[~ok], PAGE_BITS, "a large folio's page is not in the dump")
                    vi, raw, level, one_ref, shared_compound, pfn, size, bits, mapcount = (
                        x[ok] for x in (vi, raw, level, one_ref, shared_compound, pfn, size,
                                        bits, mapcount))
                    if not len(vi):
                        return
                b8 = bits
                pmd = level == LEVEL_PMD
            mc, why = self._page_mapcounts(pfn[shared_compound], mapcount[shared_compound],
                                           bits[shared_compound])
            if mc is None:
                self._mark(vi[shared_compound], SHARE_BITS, why)
            else:
                mapcount = mapcount.copy()
                mapcount[shared_compound] = mc
        # The share: private when the folio has one reference, else by the page's mapcount.
        private = one_ref | (mapcount < 2)
        pss = np.where(private, size << PSS_SHIFT, (page << PSS_SHIFT) // np.maximum(mapcount, 1))
        # One category per leaf (its facts that decide which sums it adds to), then two
        # sums per (VMA, category): bytes and Pss units.
        cat = ((b8 & FACT_ANON) != 0).astype(np.int64) * C_ANON
        cat |= np.where((b8 & FACT_SWAPBACKED) != 0, C_SB, 0)
        cat |= np.where(arch.entry_dirty(raw, self.plan.shadow_stack) | ((b8 & FACT_DIRTY) != 0),
                        C_D, 0)
        cat |= np.where(private, C_PRIV, 0)
        cat |= np.where(arch.entry_young(raw) | ((b8 & FACT_REFERENCED) != 0), C_REF, 0)
        cat |= np.where((b8 & FACT_KSM) == FACT_KSM, C_KSM, 0)
        if pmd.any():
            cat |= np.where(pmd, C_PMD, 0)
        self._add_categories(vi, cat, size, pss)

    def _page_mapcounts(self, pfn, own, bits):
        """page_mapcount() of pages of large folios: the page's own mapcount plus its
        folio's entire (PMD) mapcount; on kernels with __page_mapcount() (PageDoubleMap)
        a file page's own count already holds every mapping, and a double-mapped anon
        THP's entire mapping is counted once less. (None, why) when the dump lacks it."""
        plan, lay = self.plan, self.plan.frames
        if lay.entire is None:
            return None, "the kernel's entire mapcount of a large folio is not known"
        _own, _h, head, _tail, ok = self._heads(pfn)
        ent, eok = self.frames.fields(head, {"e": (lay.entire, "i4")})
        ok &= eok
        if not ok.all():
            return None, "a large folio's head page is not in the dump"
        entire = ent["e"].astype(np.int64) + 1
        mc = np.maximum(own, 0)
        if not plan.double_map_rule:
            return mc + entire, ""
        anon = (bits & FACT_ANON) != 0
        double = np.zeros(len(pfn), bool)
        b = lay.bit("PG_double_map")
        if b is not None and anon.any():
            f, fok = self.frames.fields(head + np.uint64(lay.size), {"f": (lay.flags, "u8")})
            if not fok.all():
                return None, "a large folio's second page is not in the dump"
            double = ((f["f"] >> np.uint64(b)) & np.uint64(1)) != 0
        return np.where(anon, mc + entire - double, mc), ""

    def _add_categories(self, vi, cat, size, pss) -> None:
        lo = int(vi.min())
        span = int(vi.max()) - lo + 1
        key = (vi - lo) * NCAT + cat
        if span * NCAT <= 4 * len(key) + 4096:
            nb = span * NCAT
            vmas = np.arange(lo, lo + span)
        else:
            uk, key = np.unique(key, return_inverse=True)
            nb = len(uk)
            vmas = None
            ukeys = uk
        # float64 sums are exact: < 2^19 leaves of < 2^34 each per chunk
        by_size = np.rint(np.bincount(key, weights=size, minlength=nb)).astype(np.int64)
        by_pss = np.rint(np.bincount(key, weights=pss, minlength=nb)).astype(np.int64)
        if vmas is not None:
            by_size, by_pss = by_size.reshape(span, NCAT), by_pss.reshape(span, NCAT)
            rows = vmas
        else:
            rows_k, cats_k = ukeys // NCAT + lo, ukeys % NCAT
            rows, inv = np.unique(rows_k, return_inverse=True)
            s2 = np.zeros((len(rows), NCAT), np.int64)
            p2 = np.zeros((len(rows), NCAT), np.int64)
            s2[inv, cats_k] = by_size
            p2[inv, cats_k] = by_pss
            by_size, by_pss = s2, p2
        out = np.zeros((len(rows), NF), np.int64)
        for field_name, cats, pss_sum in CAT_FIELDS:
            out[:, F[field_name]] = (by_pss if pss_sum else by_size)[:, cats].sum(axis=1)
        if not self.plan.has_ksm:
            out[:, F["ksm"]] = 0
        locked = self.locked[rows]
        out[:, F["pss_locked"]] = np.where(locked, out[:, F["pss"]], 0)
        self.sums[rows] += out

    def _pfn(self, raw, level) -> np.ndarray:
        """The frame the kernel's pte_pfn() / pmd_pfn() reads from each present leaf."""
        arch = self.plan.paging
        out = np.empty(len(raw), np.uint64)
        for lv in np.unique(level).tolist():
            m = level == lv
            out[m] = arch.kernel_leaf_pa(raw[m], lv) >> np.uint64(arch.page_shift)
        return out

    def _hugetlb(self, vi, raw, level, npages, table) -> None:
        if self.frames is None or self.plan.frames.entire is None:
            self._mark(vi, PAGE_BITS, self.plan.why_no_frames or "hugetlb mapcount not known")
            return
        lay, arch = self.plan.frames, self.plan.paging
        pfn = self._pfn(raw, level)
        own, h, head, tail, ok = self._heads(pfn)
        # folio_mapcount() where the folio counts its mappings (_large_mapcount: the head
        # page's own _mapcount holds its page type), else page_mapcount() of the head
        if lay.large is not None:
            got, gok = self.frames.fields(head, {"l": (lay.large, "i4")})
            mapcount = got["l"].astype(np.int64) + 1
        else:
            got, gok = self.frames.fields(head, {"e": (lay.entire, "i4")})
            mapcount = own["mapcount"].astype(np.int64) + 1 + got["e"].astype(np.int64) + 1
        ok &= gok
        shared = mapcount >= 2
        if self.plan.pmd_shared is not None:
            # hugetlb_pmd_shared(pte): read from the struct page of the table page that
            # holds the entry, whatever its level (the kernel asks it of PTE tables too)
            offset, above = self.plan.pmd_shared
            tpage = np.uint64(lay.vmemmap) + (table >> np.uint64(arch.page_shift)) * \
                np.uint64(lay.size)
            got, tok = self.frames.fields(tpage, {"v": (offset, "i4")})
            shared |= got["v"].astype(np.int64) > above
            ok &= tok
        if not ok.all():
            self._mark(vi[~ok], PAGE_BITS, "a hugetlb page's or its page table's struct page "
                       "is not in the dump")
        size = npages.astype(np.int64) * arch.page_size
        self._add(vi, {"shared_hugetlb": np.where(ok & shared, size, 0),
                       "private_hugetlb": np.where(ok & ~shared, size, 0)})

    # --- swap entries -------------------------------------------------------------------
    def _swap(self, vi, raw, level) -> None:
        arch = self.plan.paging
        keep = ~arch.kernel_pte_none(raw)
        vi, raw, level = vi[keep], raw[keep], level[keep]
        if (level != LEVEL_PTE).any():
            self._mark(vi[level != LEVEL_PTE], ALL, "a non-present huge entry (migration?)")
            keep = level == LEVEL_PTE
            vi, raw = vi[keep], raw[keep]
        if not len(vi):
            return
        typ, off = arch.swap_type_offset(raw)
        real = typ < np.uint64(self.plan.nr_swapfiles)
        if (~real).any():
            inert = ~real & self._inert(off)
            self._mark(vi[~real & ~inert], ALL, "a migration or device entry")
            vi, typ, off = vi[real], typ[real], off[real]
        if not len(vi):
            return
        counts, unknown = self.plan.swap_counts.counts(FrameReader(self.mem, None), typ, off)
        bad = np.zeros(len(vi), bool)
        for which, why in unknown:
            self._mark(vi[which], 1 << F["swap_pss"], why)
            bad |= which
        page = arch.page_size
        self._add(vi, {"swap": page,
                       "swap_pss": np.where(bad, 0, np.where(counts >= 2, (page << PSS_SHIFT)
                                                             // np.maximum(counts, 1),
                                                             page << PSS_SHIFT))})

    def _inert(self, off: np.ndarray) -> np.ndarray:
        """Which non-swap entries smaps_pte_entry() counts nothing for: PTE markers
        (uffd-wp, guard) and swap-in error entries, whose offset holds a few flag bits, not
        a frame. Told apart from migration and device entries, which name a page of user
        memory, by the frame their offset would name: a reserved one (PG_reserved, as the
        low frames such flags name are), never mapped to user space."""
        out = np.zeros(len(off), bool)
        b = self.plan.frames.bit("PG_reserved") if self.plan.frames else None
        if not self.plan.has_markers or b is None or self.frames is None:
            return out
        fr, ok = self.frames.pages(off)
        return ok & (((fr["flags"] >> np.uint64(b)) & np.uint64(1)) != 0)

    def abandon(self, why: str) -> SmapsPart:
        """The part of a walk that stopped early: every figure of its VMAs is unknown."""
        self.unknown[:] = ALL
        for i in range(len(self.unknown)):
            self.reasons.setdefault(i, why)
        return self.finish()

    def finish(self) -> SmapsPart:
        return SmapsPart(self.mm, self.first, self.sums, self.unknown, self.reasons)


def gatherer(plan: SmapsPlan | None, phys, mm: int, first_vma: int,
             ranges: list[tuple[int, int]]) -> MmGatherer | None:
    if plan is None or mm not in plan.vma_flags:
        return None
    return MmGatherer(plan, phys, mm, first_vma, len(ranges), ranges)


# --- the plan, made in the parent from the kernel --------------------------------------
def vm_mnemonics(k) -> list[str] | None:
    """show_smap_vma_flags()'s own table (a static array in the vmlinux): 64 two-letter
    names by vm_flags bit; '' for a bit the table leaves unnamed (the protection-key bits
    among them)."""
    addr = None
    for name in ("mnemonics.0", "mnemonics.1", "mnemonics.2", "mnemonics.3", "mnemonics"):
        addr = k.sym(name)
        if addr is not None:
            break
    if addr is None:
        return None
    try:
        raw = k.mem.read(addr, 64 * 4)
    except (MemoryReadError, WalkError):
        return None
    # char [64][2] (older kernels) or [64][3] (names NUL-terminated): found by its start
    for stride in (2, 3, 4):
        if raw[0:2] == b"rd" and raw[stride:stride + 2] == b"wr" and \
                raw[2 * stride:2 * stride + 2] == b"ex":
            break
    else:
        return None
    out = []
    for i in range(64):
        pair = raw[stride * i:stride * i + 2]
        out.append("" if pair[0] == 0 else pair.split(b"\0")[0].decode("latin-1"))
    return out


VM_HIGH_ARCH_BIT_0 = 32     # VM_PKEY_SHIFT: the protection key's first vm_flags bit


def vm_bits(mnemonics: list[str], pkey_bits: int) -> dict[str, int]:
    """{mnemonic: vm_flags bit}, and "pkey": the mask vma_pkey() reads (the arch's
    CONFIG_ARCH_PKEY_BITS bits from VM_PKEY_SHIFT, nameless in the kernel's table)."""
    out: dict[str, int] = {}
    for i, m in enumerate(mnemonics):
        if m and m != "??":
            out.setdefault(m, 1 << i)
    out["pkey"] = sum(1 << i for i in range(VM_HIGH_ARCH_BIT_0, VM_HIGH_ARCH_BIT_0 + pkey_bits)
                      if i < len(mnemonics) and mnemonics[i] == "")
    return out


def hugetlb_pmd_shared_rule(k, lay: FrameLayout | None) -> tuple[int, int] | None:
    """How smaps_hugetlb_range's hugetlb_pmd_shared(pte) reads the page-table page that holds
    a hugetlb entry: (offset in its struct page, the value a shared table exceeds), or None
    when the kernel shares no hugetlb page tables (the test is then false).

    - ptdesc.pt_share_count (the kernel counts sharers there): shared when non-zero. The
      counter overlays pt_index, which a PTE or PUD table page keeps from its last use, so a
      table nothing shares can count as shared: the kernel says so and smaps follows it.
    - else, with PMD sharing built in (huge_pmd_share exists): page_count(table) > 1.
    """
    if lay is None:
        return None
    if k.has("ptdesc", "pt_share_count"):
        return k.types.offsetof("ptdesc", "pt_share_count"), 0
    if k.sym("huge_pmd_share") is not None:
        return lay.refcount, 1
    return None


def make_plan(k, paging: Arch, kernel_pgd_pa: int | None, mms: dict,
              mn: list[str] | None) -> SmapsPlan | None:
    """The plan, or None when the kernel lacks the VmFlags table (mn) or mem_size_stats."""
    if mn is None or not k.types.has_struct("mem_size_stats"):
        return None
    lay = frame_layout(k, paging)
    nr, counts = swap_counts(k)
    return SmapsPlan(
        paging=paging, kernel_pgd_pa=kernel_pgd_pa, frames=lay, vm=vm_bits(mn, paging.pkey_bits),
        shadow_stack="ss" in mn, has_ksm=k.has("mem_size_stats", "ksm"), nr_swapfiles=nr,
        double_map_rule=k.sym("__page_mapcount") is not None, 
        has_markers=k.types.sizeof("pte_marker") is not None,
        swap_counts=counts, vma_flags={a: [v.flags for v in m.vmas] for a, m in mms.items()},
        pmd_shared=hugetlb_pmd_shared_rule(k, lay),
        why_no_frames="" if lay else "the kernel's struct page layout or the vmemmap's "
        "place is not known")
