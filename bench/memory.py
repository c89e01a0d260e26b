"""Memory benchmark: peak RSS of `vmdex ingest` on the largest fixture dump (the 553 MB
6.1 ELF core), cold (empty index: DWARF read) and warm (layouts cached), plus any bigger
dump given on the command line. Target: peak RSS ≤ 1 GiB.

    .venv/bin/python bench/memory.py                     # the fixture ELF core
    .venv/bin/python bench/memory.py --dump BIG.kdump --vmlinux VMLINUX [--dump ...]

Peak RSS is the child's own rusage (ru_maxrss, via os.wait4), cross-checked with
`/usr/bin/time -v` ("Maximum resident set size") when that exists. A dump read through
mmap (ELF, plain kdump) counts the file pages it touched in RSS; they are clean page
cache the kernel can drop, so the figure is an upper bound on what the ingest needs.
Prints a Markdown section for RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
from pathlib import Path

from common import VMDEX, machine, timed, today

from tests import fixturedata as F

LIMIT_MIB = 1024
K61 = "linux-6.1.0-56-amd64"


def time_v_peak(cmd: list[str]) -> int | None:
    """Peak RSS in MiB as GNU time reports it, or None without /usr/bin/time."""
    if not os.path.exists("/usr/bin/time"):
        return None
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    return int(m.group(1)) // 1024 if m else None


def measure(dump: str, vmlinux: str) -> tuple[float, int, int | None, float, int, str]:
    with tempfile.TemporaryDirectory() as d:
        db = str(Path(d) / "m.db")
        cold_cmd = [VMDEX, "--db", db, "ingest", "--vmlinux", vmlinux, "--name", "cold", dump]
        cold, cold_rss, p = timed(cold_cmd)
        assert p.returncode == 0, p.stderr
        summary = p.stderr.decode(errors="replace").strip().splitlines()[-1]
        cross = time_v_peak([VMDEX, "--db", str(Path(d) / "t.db"), "ingest", "--vmlinux",
                             vmlinux, "--name", "cold", dump])
        warm, warm_rss, p = timed([VMDEX, "--db", db, "ingest", "--vmlinux", vmlinux,
                                   "--name", "warm", dump])
        assert p.returncode == 0, p.stderr
    return cold, cold_rss, cross, warm, warm_rss, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dump", action="append", default=[], help="extra dump to measure")
    ap.add_argument("--vmlinux", action="append", default=[],
                    help="its vmlinux (one per --dump, or one for all)")
    a = ap.parse_args()
    cases = [(f"{K61} vmcore.elf (fixture, {os.path.getsize(F.dump(K61, 'vmcore.elf')) >> 20} MiB)",
              str(F.dump(K61, "vmcore.elf")), str(F.vmlinux(K61)))]
    for i, d in enumerate(a.dump):
        v = a.vmlinux[i] if i < len(a.vmlinux) else a.vmlinux[-1]
        cases.append((f"{d} ({os.path.getsize(d) >> 20} MiB)", d, v))

    print(f"### Ingest memory ({today()}; {machine()})\n")
    print(f"Target: peak RSS ≤ {LIMIT_MIB} MiB.\n")
    print("| dump | cold s | cold peak MiB | (time -v) | warm s | warm peak MiB | ingested |")
    print("|---|---|---|---|---|---|---|")
    worst = 0
    for label, dump, vml in cases:
        cold, crss, cross, warm, wrss, summary = measure(dump, vml)
        worst = max(worst, crss, wrss, cross or 0)
        what = summary.split(": ", 1)[-1]
        print(f"| {label} | {cold:.2f} | {crss} | {cross if cross is not None else '–'} "
              f"| {warm:.2f} | {wrss} | {what} |")
    print(f"\nWorst peak: {worst} MiB ({'within' if worst <= LIMIT_MIB else 'OVER'} the "
          f"{LIMIT_MIB} MiB target).")


if __name__ == "__main__":
    main()
