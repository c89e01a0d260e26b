"""Scale benchmark: ingest big dumps (the fixture tools' `--scale N` dumps: many processes;
`--big "GIB COPIES ..."` dumps: one giant address space) and time the same `vm` /
`foreach vm -R` commands on each and on the small 512 MiB fixture, next to crash's own
timings of the same dump (its `timings.txt`), all in one run.

    .venv/bin/python bench/scale.py --dump ~/.cache/vmdex-matrix/big-6.1/vmcore.mdf-c-d31 \
        --dump ~/.cache/vmdex-matrix/big68-6.1/vmcore.mdf-c-d31 --foreach-p

--vmlinux defaults to the `vmlinux` beside each dump (make-dumps.sh links it there).

Each command runs as a whole `vmdex` process (best of --runs). Commands and addresses come
from the dump's perf oracle (`<dump dir>/oracle/cases.json` + `commands.tsv`, made by
`make-dumps.sh --oracle perf`) when present, and the output is then compared byte for byte
with crash's file; without an oracle they are picked from the index (a `wl_bulk` pid, page 0
of `/data/blob.bin` in `wl_filemap`). The small side uses the same roles with `wl_anon` in
place of `wl_bulk`. Prints Markdown.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

from common import VMDEX, machine, timed, today

SMALL = Path("/work/shared/fixtures/linux-6.1.0-56-amd64")


def ingest(db: Path, vmlinux: str, dump: str, reuse: bool) -> tuple[float | None, int | None, str]:
    if reuse and db.exists():
        return None, None, "(reused index)"
    db.unlink(missing_ok=True)
    wall, peak, p = timed([VMDEX, "--db", str(db), "ingest", "--vmlinux", vmlinux, dump])
    if p.returncode:
        raise SystemExit(f"ingest of {dump} failed ({p.returncode}):\n{p.stderr.decode()[-3000:]}")
    return wall, peak, (p.stdout + p.stderr).decode().strip().splitlines()[-1]


def q(db: Path, sql: str, *args):
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return c.execute(sql, args).fetchall()
    finally:
        c.close()


def counts(db: Path) -> dict:
    (t, v, r), = q(db, "select task_count, vma_count, page_run_count from v_dumps")
    (mms,), = q(db, "select count(*) from mms")
    (pages,), = q(db, "select coalesce(sum(npages), 0) from page_runs")
    (bulk,), = q(db, "select count(*) from tasks where comm = 'wl_bulk'")
    return dict(tasks=t, mms=mms, vmas=v, page_runs=r, pages=pages, wl_bulk=bulk)


def pids(db: Path, comm: str) -> list[int]:
    return [r[0] for r in q(db, "select pid from tasks where comm = ? and pid = tgid order by pid", comm)]


def phys_at(db: Path, mm: int, va: int) -> int | None:
    r = q(db, "select pa + (? - va) from page_runs where mm = ? and kind = 0 and pa is not null "
              "and va <= ? and ? < va + npages * 4096 limit 1", va, mm, va, va)
    return r[0][0] if r else None


def first_phys_of_largest_vma(db: Path, pid: int) -> int | None:
    (mm,), = q(db, "select mm from tasks where pid = ?", pid)
    r = q(db, "select r.vma_seq from page_runs r join vmas v on v.mm = r.mm and v.seq = r.vma_seq "
              "where r.mm = ? and r.kind = 0 and r.pa is not null and v.file_path is null "
              "group by r.vma_seq order by sum(r.npages) desc, r.vma_seq limit 1", mm)
    if not r:
        return None
    (pa,), = q(db, "select pa from page_runs where mm = ? and vma_seq = ? and kind = 0 and pa is not null "
                   "order by va limit 1", mm, r[0][0])
    return pa


def blob_page0(db: Path, pid: int) -> int | None:
    (mm,), = q(db, "select mm from tasks where pid = ?", pid)
    r = q(db, "select vm_start from vmas where mm = ? and file_path = '/data/blob.bin' "
              "and vm_end - vm_start = 2097152 and vm_pgoff = 0 order by seq limit 1", mm)
    return phys_at(db, mm, r[0][0]) if r else None


def oracle_files(oracle: Path) -> dict[str, Path]:
    out = {}
    tsv = oracle / "commands.tsv"
    if tsv.exists():
        for line in tsv.read_text().splitlines():
            if line.startswith("#") or "\t" not in line:
                continue
            f, cmd = line.split("\t", 1)
            out[cmd] = oracle / f
    return out


def plan(db: Path, oracle: Path | None, big_role: str) -> list[tuple[str, str, Path | None]]:
    """[(role label, vmdex command, crash's output file or None)]"""
    cases = {}
    if oracle and (oracle / "cases.json").exists():
        cases = json.loads((oracle / "cases.json").read_text())
    files = oracle_files(oracle) if oracle else {}
    filemap = (cases.get("roles", {}).get("filemap") or next(iter(pids(db, "wl_filemap")), None))
    if "pid_bulk" in cases:                                   # perf oracle of a SCALE dump
        bulk, sparse = cases["pid_bulk"], (cases.get("sparse_pids") or [None])[0]
        pa, pf = int(cases["phys_anon"], 16), cases.get("phys_file") and int(cases["phys_file"], 16)
    else:
        cand = pids(db, big_role)
        bulk = cases.get("roles", {}).get(big_role.removeprefix("wl_")) or (cand[len(cand) // 2] if cand else None)
        sparse = next(iter(pids(db, "wl_sparse")), None)
        pa = int(cases["phys_anon"], 16) if "phys_anon" in cases else bulk and first_phys_of_largest_vma(db, bulk)
        pf = int(cases["phys_file"], 16) if "phys_file" in cases else filemap and blob_page0(db, filemap)
    big = cases.get("pid_big")     # a --big dump: the one giant address space
    phys_big = next((c.split()[-1] for c, f in files.items() if f.name.endswith("phys-big.txt")),
                    None)
    rows = [("vm <big pid>", f"vm {big}" if big else None),
            ("vm -p <big pid>", f"vm -p {big}" if big else None),
            ("foreach vm -R <big mapping phys>", f"foreach vm -R {phys_big}" if phys_big else None),
            ("vm <bulk pid>", f"vm {bulk}" if bulk else None),
            ("vm <sparse pid>", f"vm {sparse}" if sparse else None),
            ("vm <wl_filemap pid>", f"vm {filemap}" if filemap else None),
            ("vm -p <bulk pid>", f"vm -p {bulk}" if bulk else None),
            ("foreach vm -R <bulk anon phys>", f"foreach vm -R {pa:x}" if pa else None),
            ("foreach vm -R <blob.bin page 0 phys>", f"foreach vm -R {pf:x}" if pf else None),
            ("foreach vm -R /data/blob.bin", "foreach vm -R /data/blob.bin")]
    return [(label, cmd, files.get(cmd)) for label, cmd in rows if cmd]


def measure(db: Path, cmds, runs: int) -> dict[str, tuple[float, int, str]]:
    res = {}
    for label, cmd, ref in cmds:
        if ref is None and "-p" in cmd.split():   # millions of lines, no oracle: count only
            rs = [counted([VMDEX, "--db", str(db), *cmd.split()]) for _ in range(runs)]
            res[label] = (min(r[0] for r in rs), max(r[1] for r in rs),
                          f"exit {rs[0][3]}" if rs[0][3] else "–", cmd, rs[0][2])
            continue
        rs = [timed([VMDEX, "--db", str(db), *cmd.split()]) for _ in range(runs)]
        out = rs[0][2]
        if out.returncode:
            same = f"exit {out.returncode}"
        elif ref is None:
            same = "–"
        else:
            same = "yes" if out.stdout == ref.read_bytes() else "**no**"
        res[label] = (min(r[0] for r in rs), max(r[1] for r in rs), same, cmd, len(out.stdout))
    return res


def counted(cmd: list[str]) -> tuple[float, int, int, int]:
    """(wall s, peak RSS MiB, stdout bytes, exit code) of a command whose output is only counted."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    n = 0
    while chunk := p.stdout.read(1 << 20):
        n += len(chunk)
    _, status, ru = os.wait4(p.pid, 0)
    return time.perf_counter() - t0, ru.ru_maxrss // 1024, n, os.waitstatus_to_exitcode(status)


def crash_times(timings: Path) -> dict[str, float]:
    out = {}
    if timings.exists():
        for line in timings.read_text().splitlines():
            m = re.match(r"(.+?): ([0-9.]+)$", line)
            if m:
                out[m.group(1).replace(" > /dev/null", "")] = float(m.group(2))
    return out


def report_big(dump: str, db: Path, res: dict, plan_rows, counts_: dict, ingest_: tuple,
               small: dict, fvp: tuple | None) -> None:
    f = lambda x, fmt="{:.2f}": "–" if x is None else fmt.format(x)
    ct = crash_times(Path(dump).parent / "timings.txt")
    wall, peak, msg = ingest_
    c = counts_
    print(f"#### `{dump}` ({Path(dump).stat().st_size / 2**20:.0f} MiB)\n")
    print(f"{c['tasks']} tasks, {c['mms']} mms, {c['vmas']} VMAs, {c['page_runs']} page runs, "
          f"{c['pages']} present or swapped pages; ingest {f(wall)} s, peak RSS "
          f"{f(peak, '{}')} MiB ({msg}).\n")
    startup = [v for k, v in ct.items() if k.startswith("startup_only_session")]
    if startup:
        print(f"crash 9.0.2 on this dump (`timings.txt`): start-up alone {min(startup):.1f} s; "
              "its column is the command alone, after start-up.\n")
    print("| command | vmdex s (whole process, best of runs) | peak MiB | output bytes | "
          "crash s (cmd only) | == crash | small fixture s |")
    print("|---|---|---|---|---|---|---|")
    for label, _, _ in plan_rows:
        b, s = res[label], small.get(label)
        crash = ct.get(b[3])
        print(f"| `{b[3]}` ({label}) | {b[0]:.3f} | {b[1]} | {b[4]} | {f(crash, '{:.1f}')} | "
              f"{b[2]} | {f(s[0], '{:.3f}') if s else '–'} |")
    if fvp:
        bw_, bp_, bn, brc = fvp
        same = f"exit {brc}" if brc else ("same size" if bn == ct.get("foreach_vm_p_bytes")
                                          else "**size differs**")
        lines = ct.get("foreach_vm_p_lines")
        print(f"| `foreach vm -p` (once, output counted) | {bw_:.3f} | {bp_} | {bn} | "
              f"{f(ct.get('foreach vm -p'), '{:.1f}')} | {same} | – |")
        if lines:
            print(f"\n`foreach vm -p`: {lines / bw_ / 1e6:.1f} M lines/s for vmdex, "
                  f"{lines / ct['foreach vm -p'] / 1e6:.1f} M lines/s for crash.")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dump", required=True, action="append", help="a big dump (repeatable)")
    ap.add_argument("--vmlinux", action="append", help="its vmlinux (repeatable, in --dump "
                    "order; default: the vmlinux beside the dump)")
    ap.add_argument("--small-dump", default=str(SMALL / "vmcore.kdump-zlib"))
    ap.add_argument("--small-vmlinux", default=str(Path.home() / ".cache/vmdex-fixtures/linux-6.1.0-56-amd64/vmlinux"))
    ap.add_argument("--db", action="append", help="SQLite index per big dump (default: temporary)")
    ap.add_argument("--small-db", help="SQLite index of the small dump (default: a temporary file)")
    ap.add_argument("--reuse", action="store_true", help="keep existing --db/--small-db instead of re-ingesting")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--foreach-p", action="store_true",
                    help="also time `foreach vm -p` once per dump (output counted, not kept)")
    a = ap.parse_args()

    def odir(dump):
        d = Path(dump).parent / "oracle"
        return d if d.is_dir() else None

    with tempfile.TemporaryDirectory() as tmp:
        small_db = Path(a.small_db or Path(tmp) / "small.db")
        sw, sp, smsg = ingest(small_db, a.small_vmlinux, a.small_dump, a.reuse)
        sres = measure(small_db, plan(small_db, odir(a.small_dump), "wl_anon"), a.runs)
        print(f"### {today()}; {machine()}\n")
        print(f"Small fixture `{a.small_dump}`: ingest {sw or 0:.2f} s, peak {sp} MiB.\n")
        for i, dump in enumerate(a.dump):
            vmlinux = (a.vmlinux[i] if a.vmlinux and i < len(a.vmlinux)
                       else str(Path(dump).parent / "vmlinux"))
            db = Path(a.db[i] if a.db and i < len(a.db) else Path(tmp) / f"big{i}.db")
            ing = ingest(db, vmlinux, dump, a.reuse)
            rows = plan(db, odir(dump), "wl_bulk")
            res = measure(db, rows, a.runs)
            fvp = (counted([VMDEX, "--db", str(db), "foreach", "vm", "-p"])
                   if a.foreach_p else None)
            report_big(dump, db, res, rows, counts(db), ing, sres, fvp)
        small_diff = [f"`{s[3]}`" for s in sres.values() if s[2] not in ("yes", "–")]
        print("Small side: `<bulk pid>` is `wl_anon` (the fixture has no `wl_bulk`); its outputs "
              + (f"differ from crash for: {', '.join(small_diff)}" if small_diff
                 else "are byte-identical to the fixture's oracle files."))


if __name__ == "__main__":
    main()
