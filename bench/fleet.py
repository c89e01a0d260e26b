"""Fleet benchmark: one PostgreSQL index holding ≥ 1,000 dumps.

    .venv/bin/python bench/fleet.py [--copies N] [DUMP VMLINUX]...    # prints Markdown

A throwaway PostgreSQL server (tests/pg.py). Real dumps of several kernels are ingested
(the fixtures' primary dumps and any DUMP VMLINUX pairs) with 1, 2 and 4 concurrent
ingest processes (`vmdex ingest --jobs N`, a fresh database each): dumps per minute. The
volume comes from copies under new names, made in SQL (every table's rows of a dump
inserted again under a new dump id: an index as large as that many ingests, in minutes).
Then, on the full index, each as a whole `vmdex` process, p50 and p99 over --runs:
`foreach vm -R PHYS` and `vm -p PID` on one dump, `ps`, and docs/schema.md's cross-dump
examples through `vmdex sql`; index bytes per dump and per million page-table entries.
crash's own timings of the same dump (the fixture's timings.txt) stand beside them.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, VMDEX, crash_timings, machine, timed, today

from tests import fixturedata as F
from tests.conftest import primary_variant
from tests.pg import new_database, new_reader, pg_server

K61 = "linux-6.1.0-56-amd64"


def psql(url: str):
    import psycopg

    return psycopg.connect("postgresql://" + url.split("://", 1)[1], autocommit=True)


def ingest_throughput(server: str, dumps: list[tuple[str, str]], jobs: int) -> float:
    """Dumps per minute, `jobs` ingest processes at once, into a fresh database."""
    url = new_database(server, f"thr{jobs}")
    args = []
    for i, (dump, vml) in enumerate(dumps):
        args.append((dump, vml, f"d{i}"))
    t0 = time.perf_counter()
    procs: list[subprocess.Popen] = []
    todo = list(args)
    while todo or procs:
        while todo and len(procs) < jobs:
            dump, vml, name = todo.pop(0)
            procs.append(subprocess.Popen([VMDEX, "--db", url, "ingest", "--workers", "1",
                                           "--vmlinux", vml, "--name", name, dump],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        for p in list(procs):
            if p.poll() is not None:
                assert p.returncode == 0, p.stderr.read()
                procs.remove(p)
        time.sleep(0.05)
    return len(args) / ((time.perf_counter() - t0) / 60)


def copy_dumps(url: str, copies: int) -> None:
    """Every dump's rows again under `copies` new dump ids (names NAME#k), table by table."""
    with psql(url) as db:
        cur = db.cursor()
        cols = {}
        for (t,) in cur.execute("SELECT table_name FROM information_schema.tables WHERE "
                                "table_schema = current_schema() AND table_type = 'BASE TABLE'"):
            cols[t] = [c for (c,) in db.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                "AND table_schema = current_schema() ORDER BY ordinal_position", (t,))]
        dcols = [c for c in cols["dumps"] if c not in ("id", "name")]
        cur.execute("CREATE TEMP TABLE copy_map AS SELECT d.id AS old, g AS k "
                    "FROM dumps d CROSS JOIN generate_series(1, %s) g", (copies,))
        cur.execute(f"INSERT INTO dumps (name, {', '.join(dcols)}) SELECT d.name || '#' || m.k, "
                    f"{', '.join('d.' + c for c in dcols)} FROM dumps d JOIN copy_map m "
                    "ON m.old = d.id")
        cur.execute("ALTER TABLE copy_map ADD COLUMN new bigint")
        cur.execute("UPDATE copy_map m SET new = n.id FROM dumps o, dumps n WHERE o.id = m.old "
                    "AND n.name = o.name || '#' || m.k")
        for t, cs in cols.items():
            if "dump_id" not in cs or t == "dumps":
                continue
            rest = [c for c in cs if c != "dump_id" and not (c == "id" and t != "kernels")]
            cur.execute(f"INSERT INTO {t} (dump_id, {', '.join(rest)}) SELECT m.new, "
                        f"{', '.join('x.' + c for c in rest)} FROM {t} x JOIN copy_map m "
                        "ON m.old = x.dump_id")
        cur.execute("ANALYZE")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def latency(cmd: list[str], runs: int) -> tuple[float, float, str]:
    times = []
    out = b""
    for _ in range(runs):
        wall, _, p = timed(cmd)
        assert p.returncode == 0, p.stderr[-300:]
        times.append(wall)
        out = p.stdout
    return pct(times, 0.5), pct(times, 0.99), f"{len(out)} bytes"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=125, help="copies of each real dump")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--index", help="an existing fleet index (URL): only the questions are "
                    "timed (the index is not built)")
    ap.add_argument("--one", help="with --index: an index holding only the 6.1 fixture dump, "
                    "for the 1-dump column")
    ap.add_argument("pairs", nargs="*")
    a = ap.parse_args()
    if a.index:
        print(f"### Fleet questions on {a.index.rsplit('/', 1)[-1]} ({today()}; {machine()})\n")
        return questions(a.index, a.runs, a.one)
    real = [(str(F.dump(k, primary_variant(k))), str(F.vmlinux(k))) for k in F.kernels()]
    real += list(zip(a.pairs[::2], a.pairs[1::2]))
    print(f"### Fleet: {len(real)} real dumps × {a.copies + 1} in one PostgreSQL index "
          f"({today()}; {machine()})\n")
    with pg_server() as server:
        print("| ingest processes at once | dumps per minute |\n|---|---|")
        for jobs in (1, 2, 4):
            print(f"| {jobs} | {ingest_throughput(server, real, jobs):.1f} |", flush=True)
        url = new_database(server, "fleet")
        for i, (dump, vml) in enumerate(real):
            subprocess.run([VMDEX, "--db", url, "ingest", "--vmlinux", vml, "--name",
                            f"real{i}-{Path(dump).parent.name}", dump], check=True,
                           capture_output=True)
        t0 = time.perf_counter()
        copy_dumps(url, a.copies)
        made = time.perf_counter() - t0
        with psql(url) as db:
            size = db.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            entries = db.execute("SELECT sum(npages) FROM page_runs").fetchone()[0]
            runs = db.execute("SELECT count(*) FROM page_runs").fetchone()[0]
            ndumps = db.execute("SELECT count(*) FROM dumps").fetchone()[0]
        print(f"\n{ndumps} dumps (copies made in {made:.0f} s); index {size / 2**30:.2f} GiB: "
              f"{size / ndumps / 2**20:.1f} MiB per dump, "
              f"{size / (entries / 1e6) / 2**20:.1f} MiB per million page-table entries "
              f"({runs} page runs for {entries} entries)\n")
        one = new_database(server, "one")
        subprocess.run([VMDEX, "--db", one, "ingest", "--vmlinux", str(F.vmlinux(K61)),
                        "--name", f"real0-{K61}", str(F.dump(K61, primary_variant(K61)))],
                       check=True, capture_output=True)
        questions(url, a.runs, one)


def questions(url: str, runs: int, one: str | None = None) -> None:
    """p50/p99 of each question as a whole `vmdex` process on the index at `url`, and the
    p50 of the same on an index holding that one dump (`one`): what the fleet costs."""
    with psql(url) as db:
        ndumps = db.execute("SELECT count(*) FROM dumps").fetchone()[0]
        name = db.execute("SELECT name FROM dumps WHERE name LIKE %s ORDER BY id LIMIT 1",
                          (f"real%-{K61}",)).fetchone()[0]
    cases = json.loads((F.oracle_dir(K61) / "cases.json").read_text())
    phys, pid = cases["phys_anon"], str(cases["roles"]["filemap"])
    crash = crash_timings(F.kernel_dir(K61))
    print("| question (whole `vmdex` process) | p50 s | p99 s | 1-dump index p50 s | output "
          "| crash 9.0.2 |")
    print("|---|---|---|---|---|---|")
    asks = [(f"foreach vm -R {phys}", ["foreach", "vm", "-R", phys],
             crash.get("foreach_vm_R_phys", "?")),
            (f"vm -p {pid}", ["vm", "-p", pid], "-"), ("ps", ["ps"], "-"),
            (f"smaps {pid}", ["smaps", pid], "-")]
    for label, words, c in asks:
        p50, p99, out = latency([VMDEX, "--db", url, "--dump", name, *words], runs)
        alone = "-"
        if one:
            alone = f"{latency([VMDEX, '--db', one, *words], runs)[0]:.3f}"
        print(f"| `{label}` on one of {ndumps} dumps | {p50:.3f} | {p99:.3f} | {alone} | {out} "
              f"| {c} |", flush=True)
    reader = new_reader(url)      # vmdex sql runs as a plain reader role
    text = (REPO / "docs" / "schema.md").read_text()
    for ex, sql in re.findall(r"<!-- example: (\w+) -->\s*```sql\n(.*?)```", text, re.S):
        p50, p99, out = latency([VMDEX, "--db", reader, "sql", "--timeout", "0",
                                 "--format", "csv", sql], max(3, runs // 4))
        print(f"| docs/schema.md `{ex}` over all {ndumps} dumps (`vmdex sql`) | {p50:.3f} "
              f"| {p99:.3f} | - | {out} | - |", flush=True)

if __name__ == "__main__":
    sys.exit(main())
