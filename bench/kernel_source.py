"""First ingest of a kernel (empty index) with its vmlinux (DWARF + .symtab) against
without (`--vmlinux-from-dump`: BTF + kallsyms read from the dump): wall time, CPU time
(the process and its walk workers: steadier than wall on a shared machine) and peak RSS,
in pairs run in turn, for every fixture kernel's primary dump and any extra
`DUMP VMLINUX` pairs given.

    .venv/bin/python bench/kernel_source.py [DUMP VMLINUX]...   # a Markdown table
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import VMDEX, machine, timed, today

from tests import fixturedata as F
from tests.conftest import primary_variant

PAIRS = 5


def cold_ingest(dump: str, kernel_args: list[str]) -> tuple[float, float, int]:
    """One cold ingest (a new index): (wall s, CPU s of the process and its walk workers,
    peak MiB)."""
    with tempfile.TemporaryDirectory() as d:
        before = os.times()
        secs, rss, p = timed([VMDEX, "--db", str(Path(d) / "b.db"), "ingest", *kernel_args,
                              dump])
        after = os.times()
        assert p.returncode == 0, p.stderr
    cpu = (after.children_user - before.children_user) + \
        (after.children_system - before.children_system)
    return secs, cpu, rss


def main(extra: list[str]) -> None:
    pairs = [(f"{k} {primary_variant(k)}", str(F.dump(k, primary_variant(k))),
              str(F.vmlinux(k))) for k in F.kernels()]
    pairs += [(Path(d).parent.name + " " + Path(d).name, d, v)
              for d, v in zip(extra[::2], extra[1::2])]
    print(f"### First ingest: vmlinux vs the dump's BTF + kallsyms ({today()}; {machine()}; "
          f"load average {os.getloadavg()[0]:.1f} at the start)\n")
    print(f"Medians of {PAIRS} pairs run in turn (from the dump, then the vmlinux), after one "
          "warm-up pair; the ratios are taken pair by pair.\n")
    print("| dump | vmlinux wall s | CPU s | peak MiB | from the dump wall s | CPU s | peak MiB "
          "| dump/vmlinux wall | CPU |")
    print("|---|---|---|---|---|---|---|---|---|")
    med = statistics.median
    for label, dump, vml in pairs:
        runs = []
        for i in range(PAIRS + 1):
            a = cold_ingest(dump, ["--vmlinux-from-dump"])
            b = cold_ingest(dump, ["--vmlinux", vml])
            if i:                       # the first pair warms the page cache
                runs.append((a, b))
        a = [r[0] for r in runs]
        b = [r[1] for r in runs]
        print(f"| {label} | {med(x[0] for x in b):.2f} | {med(x[1] for x in b):.2f} | "
              f"{max(x[2] for x in b)} | {med(x[0] for x in a):.2f} | "
              f"{med(x[1] for x in a):.2f} | {max(x[2] for x in a)} | "
              f"{med(x[0] / y[0] for x, y in runs):.2f} | "
              f"{med(x[1] / y[1] for x, y in runs):.2f} |", flush=True)
    print("\nThe kernel step alone (types and symbols read, serialised as the index stores "
          f"them; CPU s in this process, best of {PAIRS}; the walk and store are the same "
          "either way):\n")
    print("| dump | vmlinux (DWARF + .symtab) | from the dump (BTF + kallsyms) | ratio |")
    print("|---|---|---|---|")
    for label, dump, vml in pairs:
        dw, bt = kernel_step(dump, Path(vml))
        print(f"| {label} | {dw:.3f} | {bt:.3f} | {bt / dw:.2f} |", flush=True)


def kernel_step(dump: str, vmlinux: Path) -> tuple[float, float]:
    """CPU seconds (best of PAIRS, in turn) of choosing and reading the kernel into an
    empty index, from the vmlinux and from the dump."""
    from sqlalchemy import create_engine

    from vmdex.indexer.db import upgrade
    from vmdex.indexer.dumpfile import open_dump
    from vmdex.indexer.kernel import source as S
    from vmdex.indexer.kernel.vmcoreinfo import VmcoreInfo

    best = {"vmlinux": 1e9, "dump": 1e9}
    for _ in range(PAIRS):
        for way in best:
            with tempfile.TemporaryDirectory() as d, open_dump(Path(dump)) as phys:
                engine = create_engine(f"sqlite:///{d}/k.db")
                upgrade(engine)
                info = VmcoreInfo.parse(phys.vmcoreinfo)
                t0 = time.process_time()
                kc = S.choose_kernel(engine, phys, info, dump,
                                     vmlinux if way == "vmlinux" else None,
                                     S.FROM_DUMP if way == "dump" else None, lambda *a: None)
                kc.symtab.address("init_task")
                kc.symtab.to_bytes(), kc.types.to_json()
                best[way] = min(best[way], time.process_time() - t0)
                engine.dispose()
    return best["vmlinux"], best["dump"]

if __name__ == "__main__":
    main(sys.argv[1:])
