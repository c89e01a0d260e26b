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

if __name__ == "__main__":
    main(sys.argv[1:])
