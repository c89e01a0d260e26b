"""Streaming benchmark: how fast `vm -p PID` and `foreach vm -p` reach a pipe, in MB/s, for
--format text, json and csv, with the peak RSS of the vmdex process; next to crash 9.0.2's
`vm -p PID` on the same dump (a pipe too, timed inside one crash session) and crash's
`foreach vm -p` from the dump's `timings.txt` when it is there.

    .venv/bin/python bench/stream.py --dump ~/.cache/vmdex-matrix/trixie-scale1/vmcore.mdf-c-d31 \
        [--db INDEX] [--pid PID] [--runs 5] [--formats text,json,csv] [--crash]

The index is built from --dump (with the `vmlinux` beside it) unless --db names an existing
one. PID defaults to the process with the largest address space (the sparse reservation:
most of its lines are crash's `(not mapped)`). Each run is a whole `vmdex` process whose
stdout is read by `wc -c`; wall time is to the end of both. Prints Markdown.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import VMDEX, crash_timings, machine, today

CRASH = "/work/shared/fixtures/tools/crash9.sh"
FORMATS = ("text", "json", "csv")


def piped(cmd: list[str]) -> tuple[float, int, int]:
    """(wall s, peak RSS MiB of cmd, bytes) for `cmd | wc -c`."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    wc = subprocess.Popen(["wc", "-c"], stdin=p.stdout, stdout=subprocess.PIPE)
    p.stdout.close()          # wc holds the pipe's only reader
    _, status, ru = os.wait4(p.pid, 0)
    n = int(wc.communicate()[0])
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{cmd} failed ({os.waitstatus_to_exitcode(status)})")
    return wall, ru.ru_maxrss // 1024, n


def biggest_pid(db: str) -> int:
    """The process with the largest total_vm (ps's VSZ), from the index."""
    out = subprocess.run([VMDEX, "--db", db, "ps", "-u"], capture_output=True, text=True,
                         check=True).stdout
    rows = [line[1:].split() for line in out.splitlines()[1:]]
    return int(max(rows, key=lambda r: int(r[6]))[0])


def crash_vm_p(vmlinux: str, dump: str, pid: int) -> tuple[float, int] | None:
    """(seconds, bytes) of crash's `vm -p PID | wc -c` after its start-up, in one session
    stamped by `!date` as the fixture tools time crash."""
    if not os.path.exists(CRASH):
        return None
    stamp = "!date +%s.%N"
    with tempfile.NamedTemporaryFile("w", suffix=".crash") as f:
        f.write(f"{stamp}\nvm -p {pid} | wc -c\n{stamp}\nquit\n")
        f.flush()
        p = subprocess.run([CRASH, "-s", vmlinux, dump], stdin=open(f.name),
                           capture_output=True, text=True, errors="replace")
    st = [float(x) for x in re.findall(r"^(\d{9,}\.\d+)\s*$", p.stdout, re.M)]
    n = re.findall(r"^(\d+)\s*$", p.stdout, re.M)
    if len(st) < 2 or not n:
        print(f"crash run failed:\n{p.stdout[-2000:]}{p.stderr[-2000:]}", file=sys.stderr)
        return None
    return st[1] - st[0], int(n[0])


def ensure_index(a) -> str:
    if a.db and os.path.exists(a.db):
        return a.db
    db = a.db or tempfile.mktemp(suffix=".db", prefix="stream-")
    vml = a.vmlinux or str(Path(a.dump).parent / "vmlinux")
    subprocess.run([VMDEX, "--db", db, "ingest", "--vmlinux", vml, a.dump], check=True,
                   capture_output=True)
    return db


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dump", required=True)
    ap.add_argument("--vmlinux")
    ap.add_argument("--db")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--crash", action="store_true", help="time crash's vm -p PID too")
    a = ap.parse_args()
    db = ensure_index(a)
    pid = a.pid or biggest_pid(db)
    print(f"### {today()}; {machine()}\n")
    print(f"`{Path(a.dump).parent.name}/{Path(a.dump).name}`, PID {pid}; {a.runs} runs each, "
          "output read by `wc -c`\n")
    print("| command | format | bytes | wall s min / median | MB/s at min / median | "
          "peak RSS MiB (max) |")
    print("|---|---|---|---|---|---|")
    for words in (["vm", "-p", str(pid)], ["foreach", "vm", "-p"]):
        for fmt in a.formats.split(","):
            runs = [piped([VMDEX, "--db", db, "--format", fmt, *words]) for _ in range(a.runs)]
            walls = [r[0] for r in runs]
            size = runs[0][2]
            assert all(r[2] == size for r in runs), runs
            lo, med = min(walls), statistics.median(walls)
            print(f"| `{' '.join(words)}` | {fmt} | {size:,} | {lo:.2f} / {med:.2f} | "
                  f"{size / lo / 1e6:.0f} / {size / med / 1e6:.0f} | "
                  f"{max(r[1] for r in runs)} |", flush=True)
    if a.crash:
        vml = a.vmlinux or str(Path(a.dump).parent / "vmlinux")
        got = crash_vm_p(vml, a.dump, pid)
        if got:
            print(f"\ncrash 9.0.2 `vm -p {pid} | wc -c` (after start-up): {got[0]:.2f} s, "
                  f"{got[1]:,} bytes, {got[1] / got[0] / 1e6:.0f} MB/s")
    tim = Path(a.dump).parent / "timings.txt"
    if tim.exists():
        t = crash_timings(Path(a.dump).parent)
        if "foreach_vm_p" in t:
            n = int(t.get("foreach_vm_p_bytes", 0))
            print(f"\ncrash 9.0.2 `foreach vm -p` (timings.txt, to a file, after start-up): "
                  f"{t['foreach_vm_p']} s, {n:,} bytes"
                  + (f", {n / float(t['foreach_vm_p']) / 1e6:.0f} MB/s" if n else ""))


if __name__ == "__main__":
    main()
