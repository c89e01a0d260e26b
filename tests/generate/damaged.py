"""Damaged copies of a fixture dump, made the same way every time from the dump itself:
cut short at several points, pages holding VMAs or page tables excluded as makedumpfile
would, and a page table with corrupt compressed data. crash's answers on each copy are
recorded like any generated questions; vmdex must give the same answers.

The copies are of the folder's plain kdump-compressed dump (vmcore.mdf-c-d31 or any
vmcore.mdf-*), written into a cache directory and reused while the source is unchanged.
"""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from tests import damage as D
from tests.generate.facts import Facts

PAGE = 4096


def source(folder: Path) -> Path | None:
    for p in sorted(folder.glob("vmcore.mdf-*")):
        if not p.name.endswith(".xz"):
            return p
    return None


def _page_offset(vmlinux: Path, dump: Path, tmp: Path) -> int:
    db = tmp / "good.db"
    if not db.exists():
        subprocess.run([str(Path(sys.executable).parent / "vmdex"), "--db", str(db), "ingest",
                        "--vmlinux", str(vmlinux), "--name", "good", str(dump)], check=True,
                       stdout=subprocess.DEVNULL)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (po,) = con.execute("SELECT page_offset FROM dumps WHERE name = 'good'").fetchone()
    finally:
        con.close()
    return po & (1 << 64) - 1


def recipes(facts: Facts, raw: bytes, page_offset: int) -> dict[str, dict[int, bytes] | int]:
    """name -> patches (file offset -> bytes) or a length to cut the file to."""
    from tests.test_bad_input import _lose_page, _table_path

    L = D.kdump_layout_of(raw)
    out: dict[str, dict[int, bytes] | int] = {
        "cut-last4k": len(raw) - PAGE,
        "cut-90": len(raw) * 9 // 10 // PAGE * PAGE,
        "cut-60": len(raw) * 6 // 10 // PAGE * PAGE + 1234,
    }
    users = sorted(facts.user_tasks, key=lambda t: (-len(t.vmas), t.pid))
    dumpable = set(L.dumpable_pfns())
    # Pages holding VMA structs: the 3rd VMA of the task with most VMAs, the 1st of another.
    vma_pfns = []
    for t, i in ((users[0], 2), (users[-1], 0)):
        if len(t.vmas) > i:
            pfn = (t.vmas[i].addr - page_offset) >> 12
            if pfn in dumpable and pfn not in vma_pfns:
                vma_pfns.append(pfn)
    if vma_pfns:
        out["excluded-vma"] = _lose_page(raw, L, vma_pfns[0], "excluded")
        out["past-eof-vma"] = _lose_page(raw, L, vma_pfns[-1], "past-eof")
    # The PTE page under the first present page of the task with the most mapped pages.
    mapped = sorted(facts.user_tasks, key=lambda t: -sum(p.phys is not None
                                                           for v in t.vmas for p in v.pages))
    t = mapped[0]
    va = next(p.vaddr for v in t.vmas for p in v.pages if p.phys is not None)
    pte_pfn = _table_path(raw, L, t.pgd - page_offset, va)[-1] >> 12
    if pte_pfn in dumpable:
        out["excluded-pte"] = _lose_page(raw, L, pte_pfn, "excluded")
        out["corrupt-pte"] = _lose_page(raw, L, pte_pfn, "corrupt")
    return out


def make(folder: Path, facts: Facts, vmlinux: Path, cache: Path) -> dict[str, Path]:
    """The damaged copies of the folder's kdump dump, by name."""
    src = source(folder)
    if src is None:
        return {}
    cache.mkdir(parents=True, exist_ok=True)
    raw = src.read_bytes()
    out = {}
    for name, r in recipes(facts, raw, _page_offset(vmlinux, src, cache)).items():
        dst = cache / f"{src.name}.{name}"
        if not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime:
            tmp = dst.with_suffix(".tmp")
            if isinstance(r, int):
                D.prefix_copy(src, tmp, r)
            else:
                D.patched_copy(src, tmp, r)
            tmp.replace(dst)
        out[name] = dst
    return out
