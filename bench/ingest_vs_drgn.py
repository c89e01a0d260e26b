"""Ingest next to one reverse-map question (issue 21 item 5): in one run, on the benchmark
dump, `vmdex ingest` (whole process, smaps included, default workers, a new index each
time: the vmlinux's DWARF read, then with the kernel in the user's kernel cache, and into an
index that already holds the kernel), drgn 0.3.0 answering `foreach vm -R PHYS` (bench/drgn_rmap.py, whole process) and
crash 9.0.2's start-up + `foreach vm -R PHYS` (the dump's timings.txt); then where an
ingest's time goes (py-spy samples of a one-worker ingest, sorted into phases).

    .venv/bin/python bench/ingest_vs_drgn.py /root/dumps/bench-scale8 \
        [--runs 5] [--drgn /work/drgn-venv/bin/drgn] [--vmdex .venv/bin/vmdex] [--no-profile]

The runs alternate (vmdex, drgn, vmdex, drgn ...) so a change in the machine's load falls
on both; min and median of each, and the ratio of the medians and of the minima.
"""
from __future__ import annotations

import argparse
import collections
import compileall
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, VMDEX, crash_timings, machine, today


def timed_run(cmd: list[str], cache: str = "off"
              ) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, user+sys CPU s of the child and its descendants, result); `cache`: the
    VMDEX_KERNEL_CACHE the child sees (default off: the vmlinux's DWARF is read)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        before = os.times()
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err,
                             env=dict(os.environ, VMDEX_KERNEL_CACHE=cache))
        p.wait()
        wall = time.perf_counter() - t0
        after = os.times()
        cpu = (after.children_user - before.children_user) + \
            (after.children_system - before.children_system)
        out.seek(0), err.seek(0)
        return wall, cpu, subprocess.CompletedProcess(cmd, p.returncode, out.read(), err.read())


def question(dump_dir: Path) -> str:
    """The physical address of the oracle's first `foreach vm -R <phys>`."""
    for line in (dump_dir / "oracle" / "commands.tsv").read_text().splitlines():
        m = re.search(r"\tforeach vm -R ([0-9a-f]+)$", line)
        if m:
            return m.group(1)
    raise SystemExit(f"{dump_dir}: no foreach vm -R <phys> in oracle/commands.tsv")


def ingest_cmd(vmdex: str, db: str, vmlinux: Path, dump: Path, workers: int | None,
               name: str | None = None):
    cmd = [vmdex, "--db", db, "ingest", "--vmlinux", str(vmlinux)]
    if name:
        cmd += ["--name", name]
    if workers:
        cmd += ["--workers", str(workers)]
    return cmd + [str(dump)]


# --- where the time goes -------------------------------------------------------------------
# A sample belongs to the first phase whose marker is in its stack, and within it to the
# dump-reading part when a read/decompress frame is in the stack.
PHASES = [
    ("kernel types + symbols (vmlinux DWARF, .symtab)", ["choose_kernel"]),
    ("smaps: VMA header lines", ["prepare (indexer/walk/smaps_ingest.py", "read_texts ("]),
    ("walk: page tables", ["iter_user_leaves"]),
    ("walk: runs from leaves", ["RunBuilder."]),
    ("smaps: per-page figures", ["MmGatherer.", "gatherer ("]),
    ("walk: tasks, mms, VMAs, ps, sys", ["walk_dump", "_walk_rest"]),
    ("open the dump", ["open_dump"]),
    ("pointer symbols (vm -m/-v)", ["_pointer_symbols"]),
    ("index schema (Alembic upgrade)", ["upgrade (indexer/db.py"]),
    ("store (SQLite)", ["store_dump", "store_kernel"]),
    ("Python start-up + imports", ["_find_and_load", "<module>"]),
]
READS = [
    ("decompress", ["(indexer/dumpfile/codecs.py", "zstandard", "lzokay", "cramjam"]),
    ("dump reads", ["(indexer/dumpfile/"]),
]


def profile(vmdex: str, vmlinux: Path, dump: Path, rate: int = 200) -> list[tuple]:
    """[(phase, seconds, {read part: seconds})] of one one-worker ingest sampled by py-spy."""
    bindir = Path(vmdex).parent        # the vmdex's own venv: its python, its code
    spy = shutil.which("py-spy", path=f"{bindir}:{Path(sys.executable).parent}") or \
        shutil.which("py-spy")
    if not spy:
        print("no py-spy: no breakdown", file=sys.stderr)
        return []
    with tempfile.TemporaryDirectory() as d:
        raw = Path(d) / "raw.txt"
        cmd = [spy, "record", "-r", str(rate), "-f", "raw", "-o", str(raw), "--",
               str(bindir / "python"), "-m", "vmdex.query.main"] + \
            ingest_cmd(vmdex, str(Path(d) / "p.db"), vmlinux, dump, 1)[1:]
        p = subprocess.run(cmd, capture_output=True,   # DWARF read: the cache off
                           env=dict(os.environ, VMDEX_KERNEL_CACHE="off"))
        if p.returncode or not raw.exists():
            print(f"py-spy failed: {p.stderr.decode()[-300:]}", file=sys.stderr)
            return []
        phases = collections.Counter()
        reads: dict = collections.defaultdict(collections.Counter)
        for line in raw.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if not stack.strip():
                continue
            phase = next((name for name, keys in PHASES if any(k in stack for k in keys)),
                         "other")
            phases[phase] += int(n)
            part = next((name for name, keys in READS if any(k in stack for k in keys)), None)
            if part:
                reads[phase][part] += int(n)
    return [(ph, n / rate, {k: v / rate for k, v in reads[ph].items()})
            for ph, n in phases.most_common()]


def profiles(vmdex: str, vmlinux: Path, dump: Path, n: int) -> list[tuple]:
    """profile() n times, each phase's figures the median over the runs (load varies)."""
    got = [{ph: (sec, rd) for ph, sec, rd in profile(vmdex, vmlinux, dump)} for _ in range(n)]
    got = [g for g in got if g]
    if not got:
        return []
    phases = {ph for g in got for ph in g}
    out = []
    for ph in phases:
        secs = statistics.median(g.get(ph, (0.0, {}))[0] for g in got)
        parts = {k: statistics.median(g.get(ph, (0.0, {}))[1].get(k, 0.0) for g in got)
                 for k in {k for g in got for k in g.get(ph, (0, {}))[1]}}
        out.append((ph, secs, parts))
    return sorted(out, key=lambda r: -r[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dump_dir", type=Path)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--formats", default="mdf-c-d31,kdump-zlib")
    ap.add_argument("--vmdex", default=VMDEX)
    ap.add_argument("--drgn", default="/work/drgn-venv/bin/drgn")
    ap.add_argument("--phys", help="the question (default: the oracle's first foreach vm -R)")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--profile-runs", type=int, default=3,
                    help="profiled ingests per dump file (the breakdown is their median)")
    ap.add_argument("--baseline", help="another vmdex (e.g. the code before a change), timed "
                    "in the same rounds and profiled the same way")
    a = ap.parse_args()
    d = a.dump_dir
    vmlinux = d / "vmlinux"
    phys = a.phys or question(d)
    # as setup.sh does: the modules byte-compiled (this machine sets PYTHONDONTWRITEBYTECODE)
    for sub in ("indexer", "query", "migrations"):
        compileall.compile_dir(str(REPO / sub), quiet=1)
    ct = crash_timings(d)
    load0 = os.getloadavg()
    print(f"### {today()} {time.strftime('%H:%M')}; {machine()}\n")
    print(f"Dump `{d}` ({ct.get('tasks', '?')}); question `foreach vm -R {phys}`; "
          f"{a.runs} runs each, alternating.\n")
    base_col = " baseline ingest s min / median (CPU s) |" if a.baseline else ""
    print("| dump file | vmdex ingest s min / median (CPU s median) | new index, kernel in the "
          "user's kernel cache s min / median | warm: the index holds the "
          "kernel s min / median |" + base_col +
          " drgn 0.3.0 rmap s min / median (CPU s) | crash start-up + foreach vm -R s |"
          " ingest / drgn (median; min) |")
    print("|---|---|---|---|---|---|---|" + ("---|" if a.baseline else ""))
    crash_start = min(float(ct[k]) for k in ct if k.startswith("startup_only_session_run"))
    crash_cmd = float(ct.get(f"foreach vm -R {phys} > /dev/null", "nan"))
    crash_file = ct.get("primary dump", "?").split()[0]
    for fmt in a.formats.split(","):
        dump = d / f"vmcore.{fmt}"
        ing, kept, warm, base, drg, drg_err = [], [], [], [], [], None
        with tempfile.TemporaryDirectory() as tmp:
            warm_db = str(Path(tmp) / "warm.db")    # a first dump of the kernel: its types
            cache = str(Path(tmp) / "kernels")      # ... and the user's kernel cache
            if timed_run(ingest_cmd(a.vmdex, warm_db, vmlinux, dump, None, "seed"),
                         cache)[2].returncode:
                raise SystemExit("seed ingest failed")
            for i in range(a.runs):
                w, c, p = timed_run(ingest_cmd(a.vmdex, warm_db, vmlinux, dump, None, f"w{i}"))
                if p.returncode:
                    raise SystemExit(p.stderr.decode())
                warm.append(w)
                db = str(Path(tmp) / f"i{i}.db")
                w, c, p = timed_run(ingest_cmd(a.vmdex, db, vmlinux, dump, None))
                if p.returncode:
                    raise SystemExit(p.stderr.decode())
                ing.append((w, c))
                w, c, p = timed_run(ingest_cmd(a.vmdex, str(Path(tmp) / f"k{i}.db"), vmlinux,
                                               dump, None), cache)
                if p.returncode:
                    raise SystemExit(p.stderr.decode())
                kept.append(w)
                if a.baseline:
                    w, c, p = timed_run(ingest_cmd(a.baseline, str(Path(tmp) / f"b{i}.db"),
                                                   vmlinux, dump, None))
                    if p.returncode:
                        raise SystemExit(p.stderr.decode())
                    base.append((w, c))
                if drg_err is None:
                    w, c, p = timed_run([a.drgn, "-q", "-c", str(dump), "-s", str(vmlinux),
                                         str(REPO / "bench" / "drgn_rmap.py"), phys, "--quiet"])
                    if p.returncode:
                        drg_err = (p.stderr.decode().strip().splitlines() or ["?"])[-1]
                    else:
                        drg.append((w, c))
        iw = [w for w, _ in ing]
        ic = statistics.median(c for _, c in ing)
        cell_i = f"{min(iw):.2f} / {statistics.median(iw):.2f} ({ic:.2f}) | " \
                 f"{min(kept):.2f} / {statistics.median(kept):.2f} | " \
                 f"{min(warm):.2f} / {statistics.median(warm):.2f}"
        if base:
            bw = [w for w, _ in base]
            cell_i += f" | {min(bw):.2f} / {statistics.median(bw):.2f} " \
                      f"({statistics.median(c for _, c in base):.2f})"
        if drg:
            dw = [w for w, _ in drg]
            dc = statistics.median(c for _, c in drg)
            cell_d = f"{min(dw):.2f} / {statistics.median(dw):.2f} ({dc:.2f})"
            ratio = f"{statistics.median(iw) / statistics.median(dw):.2f}; " \
                    f"{min(iw) / min(dw):.2f}"
        else:
            cell_d, ratio = f"cannot open it: `{drg_err}`", "–"
        cell_c = f"{crash_start:.2f} + {crash_cmd:.2f}" if fmt == crash_file.split(".", 1)[-1] \
            else "–"
        print(f"| {fmt} | {cell_i} | {cell_d} | {cell_c} | {ratio} |", flush=True)
    load1 = os.getloadavg()
    print(f"\nLoad average (1, 5, 15 min) before {tuple(round(x, 2) for x in load0)}, "
          f"after {tuple(round(x, 2) for x in load1)}. crash: its timings.txt "
          f"({ct.get('primary dump', '?')}; start-up = best of its start-up-only sessions).")
    if a.no_profile:
        return
    for fmt in a.formats.split(","):
        runs = [("now", profiles(a.vmdex, vmlinux, d / f"vmcore.{fmt}", a.profile_runs))]
        if a.baseline:
            runs.append(("baseline", profiles(a.baseline, vmlinux, d / f"vmcore.{fmt}",
                                              a.profile_runs)))
        if not runs[0][1]:
            continue
        totals = {k: sum(s for _, s, _ in rows) for k, rows in runs}
        print(f"\nWhere a one-worker ingest of `vmcore.{fmt}` spends its time (py-spy "
              f"samples of the whole process, s, median of {a.profile_runs} runs per phase; "
              "in brackets the part reading the dump: decompress / other reads):\n")
        print("| phase | " + " | ".join(f"{k} ({totals[k]:.2f} s)" for k, _ in runs) + " |")
        print("|---|" + "---|" * len(runs))
        table = {k: {ph: (s, rd) for ph, s, rd in rows} for k, rows in runs}
        for ph, _, _ in runs[0][1] + [r for r in (runs[1][1] if len(runs) > 1 else [])
                                      if r[0] not in table["now"]]:
            cells = []
            for k, _ in runs:
                s_, rd = table[k].get(ph, (0.0, {}))
                extra = f" ({rd.get('decompress', 0):.2f} / {rd.get('dump reads', 0):.2f})" \
                    if rd else ""
                cells.append(f"{s_:.2f}{extra}")
            print(f"| {ph} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
