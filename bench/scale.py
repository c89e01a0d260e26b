"""Scale benchmark: ingest a big dump (e.g. the fixture tools' `--scale 8` benchmark dump)
and time the same `vm` / `foreach vm -R` commands on it and on the small 512 MiB fixture.

    .venv/bin/python bench/scale.py --dump /root/bigdump/linux-6.1.0-56-amd64-scale8/vmcore.kdump-zlib \
        --vmlinux ~/.cache/vmdex-fixtures/k/6.1.0-56-amd64/vmlinux

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
    rows = [("vm <bulk pid>", f"vm {bulk}" if bulk else None),
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dump", required=True)
    ap.add_argument("--vmlinux", required=True)
    ap.add_argument("--oracle", help="perf oracle dir (default: <dump dir>/oracle if present)")
    ap.add_argument("--small-dump", default=str(SMALL / "vmcore.kdump-zlib"))
    ap.add_argument("--small-vmlinux", default=str(Path.home() / ".cache/vmdex-fixtures/linux-6.1.0-56-amd64/vmlinux"))
    ap.add_argument("--small-oracle", help="default: <small dump dir>/oracle if present")
    ap.add_argument("--db", help="SQLite index of the big dump (default: a temporary file)")
    ap.add_argument("--small-db", help="SQLite index of the small dump (default: a temporary file)")
    ap.add_argument("--reuse", action="store_true", help="keep existing --db/--small-db instead of re-ingesting")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--foreach-p", action="store_true",
                    help="also time `foreach vm -p > /dev/null` once per dump (51.6M lines on the scale-8 dump)")
    a = ap.parse_args()

    def odir(given, dump):
        d = Path(given) if given else Path(dump).parent / "oracle"
        return d if d.is_dir() else None

    with tempfile.TemporaryDirectory() as tmp:
        big_db = Path(a.db or Path(tmp) / "big.db")
        small_db = Path(a.small_db or Path(tmp) / "small.db")
        bw, bp, bmsg = ingest(big_db, a.vmlinux, a.dump, a.reuse)
        sw, sp, smsg = ingest(small_db, a.small_vmlinux, a.small_dump, a.reuse)
        bc, sc = counts(big_db), counts(small_db)
        big_oracle, small_oracle = odir(a.oracle, a.dump), odir(a.small_oracle, a.small_dump)
        bplan, splan = plan(big_db, big_oracle, "wl_bulk"), plan(small_db, small_oracle, "wl_anon")
        bres, sres = measure(big_db, bplan, a.runs), measure(small_db, splan, a.runs)
        ct = crash_times(Path(a.dump).parent / "timings.txt")
        fvp = {}
        if a.foreach_p:
            for name, db in (("small", small_db), ("big", big_db)):
                fvp[name] = counted([VMDEX, "--db", str(db), "foreach", "vm", "-p"])

    f = lambda x, fmt="{:.2f}": "–" if x is None else fmt.format(x)
    print(f"### {today()}; {machine()}\n")
    print(f"Big dump: `{a.dump}` ({Path(a.dump).stat().st_size / 2**20:.0f} MiB); "
          f"small: `{a.small_dump}` ({Path(a.small_dump).stat().st_size / 2**20:.0f} MiB).\n")
    print("| | tasks | mms | VMAs | page runs | pages | wl_bulk | ingest wall s | ingest peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, c, w, p in (("small", sc, sw, sp), ("big", bc, bw, bp)):
        print(f"| {name} | {c['tasks']} | {c['mms']} | {c['vmas']} | {c['page_runs']} | {c['pages']} | "
              f"{c['wl_bulk']} | {f(w)} | {f(p, '{}')} |")
    print(f"\nvmdex: small: {smsg}; big: {bmsg}\n")
    startup = [v for k, v in ct.items() if k.startswith("startup_only_session")]
    if ct:
        print(f"crash 9.0.2 on the big dump (`timings.txt`): start-up alone {min(startup):.1f} s"
              f"{', `foreach vm -p` ' + f(ct.get('foreach vm -p'), '{:.1f}') + ' s' if 'foreach vm -p' in ct else ''}"
              f"; the column below is the command alone, after start-up.\n")
    print("| command | small cmd | small s | big cmd | big s | big peak MiB | big output bytes | "
          "crash big s (cmd only) | big == crash |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, _, _ in bplan:
        b, s = bres[label], sres.get(label)
        crash = ct.get(b[3]) if b[3].startswith("foreach") else None
        print(f"| `{label}` | {'`' + s[3] + '`' if s else '–'} | {f(s[0], '{:.3f}') if s else '–'} | "
              f"`{b[3]}` | {b[0]:.3f} | {b[1]} | {b[4]} | {f(crash, '{:.1f}')} | {b[2]} |")
    if fvp:
        (sw_, _, _, _), (bw_, bp_, bn, brc) = fvp["small"], fvp["big"]
        same = f"exit {brc}" if brc else ("same size" if bn == ct.get("foreach_vm_p_bytes") else "**size differs**")
        print(f"| `foreach vm -p` (once, output counted and dropped) | `foreach vm -p` | {sw_:.3f} | `foreach vm -p` | "
              f"{bw_:.3f} | {bp_} | {bn} | {f(ct.get('foreach vm -p'), '{:.1f}')} | {same} |")
    small_diff = [f"`{s[3]}`" for s in sres.values() if s[2] not in ("yes", "–")]
    print("\nSmall side: `<bulk pid>` is `wl_anon` (the fixture has no `wl_bulk`); its outputs "
          + (f"differ from crash for: {', '.join(small_diff)}" if small_diff
             else "are byte-identical to the fixture's oracle files."))


if __name__ == "__main__":
    main()
