"""First ingest of a kernel (empty index) with its vmlinux (DWARF + .symtab) against
without (`--vmlinux-from-dump`: BTF + kallsyms read from the dump), wall time and peak
RSS, for every fixture kernel's primary dump and any extra `DUMP VMLINUX` pairs given.

    .venv/bin/python bench/kernel_source.py [DUMP VMLINUX]...   # a Markdown table
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from common import VMDEX, machine, timed, today

from tests import fixturedata as F
from tests.conftest import primary_variant

REPEAT = 3


def first_ingest(dump: str, kernel_args: list[str]) -> tuple[float, int]:
    """Best of REPEAT cold ingests (a new index each time): (seconds, peak MiB)."""
    best = None
    for _ in range(REPEAT):
        with tempfile.TemporaryDirectory() as d:
            secs, rss, p = timed([VMDEX, "--db", str(Path(d) / "b.db"), "ingest",
                                  *kernel_args, dump])
            assert p.returncode == 0, p.stderr
        best = (secs, rss) if best is None or secs < best[0] else best
    return best


def main(extra: list[str]) -> None:
    pairs = [(f"{k} {primary_variant(k)}", str(F.dump(k, primary_variant(k))),
              str(F.vmlinux(k))) for k in F.kernels()]
    pairs += [(Path(d).parent.name + " " + Path(d).name, d, v)
              for d, v in zip(extra[::2], extra[1::2])]
    print(f"### First ingest: vmlinux vs the dump's BTF + kallsyms ({today()}; {machine()})\n")
    print("| dump | vmlinux s | peak MiB | from the dump s | peak MiB |")
    print("|---|---|---|---|---|")
    for label, dump, vml in pairs:
        dw = first_ingest(dump, ["--vmlinux", vml])
        bt = first_ingest(dump, ["--vmlinux-from-dump"])
        print(f"| {label} | {dw[0]:.2f} | {dw[1]} | {bt[0]:.2f} | {bt[1]} |")


if __name__ == "__main__":
    main(sys.argv[1:])
