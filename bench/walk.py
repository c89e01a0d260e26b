"""The page-table walk alone: PTEs/s with 1 and 2 (or --workers) processes, per dump, next
to crash's `foreach vm -p` on the same dump (its timings.txt).

    .venv/bin/python bench/walk.py ~/.cache/vmdex-matrix/big-6.1/vmcore.mdf-c-d31 ...

The walk is timed from the first page-table read to the last run handed to the store
(walk_dump's page_runs(), consumed without storing), best of --runs; PTEs = pages of the
runs (present and swap entries). The vmlinux is the one beside the dump.
"""
from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from common import machine, today


def walk_once(dump: Path, workers: int) -> tuple[float, int, int]:
    from vmdex.indexer.dumpfile import open_dump
    from vmdex.indexer.ingest import walk_dump
    from vmdex.indexer.kernel.symtab import build_id
    from vmdex.indexer.kernel.types import load_kernel_types
    from vmdex.indexer.kernel.vmcoreinfo import VmcoreInfo
    from vmdex.indexer.walk.parallel import DropMm

    vml = dump.parent / "vmlinux"
    types, symtab = _kernel(vml, load_kernel_types)
    with open_dump(dump) as phys:
        img = walk_dump(phys, VmcoreInfo.parse(phys.vmcoreinfo), types, symtab.address, vml,
                        build_id(vml), "bench", workers=workers)
        t0 = time.perf_counter()
        ptes = runs = 0
        for item in img.page_runs():
            if isinstance(item, DropMm):
                raise SystemExit(f"{dump}: an mm was walked again (cross-linked tables?)")
            if not isinstance(item, tuple):   # smaps sums, not runs
                continue
            ptes += int(item[1].npages.sum())
            runs += len(item[1])
        return time.perf_counter() - t0, ptes, runs


_kernels: dict = {}


def _kernel(vml: Path, load):
    if vml not in _kernels:
        _kernels[vml] = load(vml)
    return _kernels[vml]


def crash_foreach_p(dump: Path) -> float | None:
    t = dump.parent / "timings.txt"
    if t.exists():
        m = re.search(r"^foreach vm -p > /dev/null: ([0-9.]+)$", t.read_text(), re.M)
        return float(m.group(1)) if m else None
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dumps", nargs="+")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    print(f"### {today()}; {machine()}\n")
    print(f"| dump | PTEs | runs | 1 process s | PTEs/s | {a.workers} processes s | PTEs/s | "
          "speed-up | crash `foreach vm -p` s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for d in map(Path, a.dumps):
        one = min(walk_once(d, 1) for _ in range(a.runs))
        many = min(walk_once(d, a.workers) for _ in range(a.runs))
        assert one[1:] == many[1:], (one, many)
        crash = crash_foreach_p(d)
        print(f"| `{d.parent.name}/{d.name}` | {one[1]:,} | {one[2]:,} | {one[0]:.2f} | "
              f"{one[1] / one[0] / 1e6:.1f} M | {many[0]:.2f} | {many[1] / many[0] / 1e6:.1f} M | "
              f"{one[0] / many[0]:.2f}× | {crash if crash is not None else '–'} |")


if __name__ == "__main__":
    main()
