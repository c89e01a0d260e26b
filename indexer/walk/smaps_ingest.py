"""The smaps part of one ingest: the plan the walk's gatherers use, each VMA's text lines,
and the per-VMA rows the store writes (table vma_smaps, docs/schema.md).

The walk yields SmapsPart items among its page runs (one per mm, or per piece of an mm in
the parallel walk); a DropMm voids an mm's parts (it is walked again).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vmdex.indexer.errors import MemoryReadError, WalkError
from vmdex.indexer.walk.smaps import ALL, FIELDS, NF, SmapsPart, SmapsPlan, gatherer, make_plan, \
    vm_mnemonics
from vmdex.indexer.walk.smaps_vma import VmaText, VmaTexts, line_layout
from vmdex.indexer.arch.base import to_signed

COLUMNS = ("dump_id", "mm", "vma_seq", "header", "kernel_page_kb", "mmu_page_kb",
           "thp_eligible", "protection_key", "vmflags") + FIELDS + ("unknown", "reason")
SWAP = FIELDS.index("swap")


@dataclass
class SmapsImage:
    plan: SmapsPlan
    layout: str                                    # line keys (smaps_vma.line_layout)
    texts: dict                                    # mm -> [VmaText]
    vmas: dict                                     # mm -> [(start, end)]
    sums: dict = field(default_factory=dict)      # mm -> (sums (n, NF), unknown (n,), reasons)
    mnemonics: list | None = None                 # VmFlags names (vm_mnemonics)

    def gatherer(self, phys, mm: int, first_vma: int, ranges):
        return gatherer(self.plan, phys, mm, first_vma, ranges)

    def add(self, part: SmapsPart) -> None:
        n = len(self.vmas.get(part.mm, ()))
        if part.mm not in self.sums:
            self.sums[part.mm] = (np.zeros((n, NF), np.int64), np.zeros(n, np.int64), {})
        s, u, r = self.sums[part.mm]
        lo, hi = part.first_vma, part.first_vma + len(part.sums)
        s[lo:hi] += part.sums
        u[lo:hi] |= part.unknown
        for i, why in part.reasons.items():
            r.setdefault(lo + i, why)

    def drop(self, mm: int) -> None:
        self.sums.pop(mm, None)

    def rows(self, dump_id: int, faults=()):
        """The vma_smaps rows; `faults` ((mm, TableFault) pairs): page-table pages the dump
        lacks make every figure of the VMAs under them unknown."""
        lost: dict[int, list] = {}
        for mm, f in faults:
            lost.setdefault(mm, []).append(f)
        for mm, texts in self.texts.items():
            n = len(texts)
            s, u, r = self.sums.get(mm) or (np.zeros((n, NF), np.int64), np.zeros(n, np.int64),
                                            {})
            for f in lost.get(mm, ()):
                for i, v in enumerate(self.vmas[mm]):
                    if v[0] < f.va_end and f.va_start < v[1]:
                        u[i] = ALL
                        r.setdefault(i, f"a page table page at {f.pa:x} is not in the dump")
            s, u = s.tolist(), u.tolist()
            for i, t in enumerate(texts):
                vals = list(s[i])
                unknown = u[i]
                reason = r.get(i)
                if t.shmem_swap is None:
                    unknown |= 1 << SWAP
                    reason = reason or "shmem swap of a partly mapped file"
                else:
                    vals[SWAP] += t.shmem_swap
                if t.header is None:
                    reason = reason or "the mapping's path or name could not be read"
                yield (dump_id, to_signed(mm), i, t.header, t.kernel_page_kb, t.mmu_page_kb,
                       t.thp_eligible, t.pkey, t.vmflags, *vals, unknown, reason)


def prepare(k, paging, kernel_pgd_pa, mms: dict, errors: list[str]) -> SmapsImage | None:
    """The smaps plan, or None (with a line in `errors`) when this kernel's vmlinux lacks
    what smaps needs. The VMA texts are read_texts(image, ...)'s: the walk's workers need
    only the plan, so they can start first."""
    mn = vm_mnemonics(k)
    plan = make_plan(k, paging, kernel_pgd_pa, mms, mn)
    if plan is None:
        if not k.types.complete:
            errors.append("smaps: the kernel's types were cached in the index by an older "
                          "vmdex: ingest again with --vmlinux for the smaps figures")
        else:
            errors.append("smaps: the vmlinux lacks show_smap_vma_flags()'s table or struct "
                          "mem_size_stats: no smaps figures for this dump")
        return None
    return SmapsImage(plan, line_layout(k), {},
                      {a: [(v.start, v.end) for v in m.vmas] for a, m in mms.items()},
                      mnemonics=mn)


def read_texts(img: SmapsImage, k, paging, tasks, mms: dict, errors: list[str]) -> None:
    """Each VMA's header line and the other per-VMA texts, into img.texts."""
    vt = VmaTexts(k, img.mnemonics, img.plan.vm, paging)
    # d_path() is relative to the root of the task reading /proc/PID/smaps: the dump's
    # SMAPS lines were read by init (pid 1) in the initial mount namespace. A file in another
    # namespace (a container) never meets that root and is named from its namespace's root.
    root = next((vt.task_root(t.addr) for t in tasks if t.pid == 1), None)
    texts: dict[int, list[VmaText]] = {}
    for a, mm in mms.items():
        out = []
        for v in mm.vmas:
            try:
                out.append(vt.text(mm.raw, v, root))
            except (MemoryReadError, WalkError) as exc:
                errors.append(f"smaps: mm {a:x} VMA {v.addr:x}: {exc}")
                out.append(VmaText(None, None, None, None, None, "", None))
        texts[a] = out
    img.texts = texts
