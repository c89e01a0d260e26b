"""SQL benchmark: bulk-load throughput of the store (SQLite executemany, PostgreSQL COPY and,
for comparison, PostgreSQL executemany) and the time of docs/schema.md's example queries on
an index holding every fixture dump, on SQLite and on PostgreSQL.

    .venv/bin/python bench/sql.py            # prints a Markdown section for RESULTS.md

PostgreSQL: a throwaway server from tests/pg.py (or $VMDEX_TEST_PG_URL).
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from common import VMDEX, machine, timed, today

from tests import fixturedata as F
from tests.pg import new_database, new_reader, pg_server

REPS = 5
TILE = 20   # the synthetic dump: every mm's page runs repeated this many times


class WalkedRuns:
    """A dump's page runs walked once and kept, standing in for the live per-mm walk
    (`DumpImage.page_runs`) so the store can be timed alone, repeatedly."""

    def __init__(self, runs: dict):
        self.runs = runs

    def __call__(self):
        return iter(self.runs.items())


def walked(img) -> dict:
    """mm -> all its runs (the streamed chunks joined), from one live walk."""
    from dataclasses import fields

    from vmdex.indexer.walk.pages import PageRuns

    parts: dict = {}
    for item in img.page_runs():
        if isinstance(item, tuple):   # (mm, runs); not the walk's smaps sums
            parts.setdefault(item[0], []).append(item[1])
    return {mm: PageRuns(**{f.name: np.concatenate([getattr(c, f.name) for c in chunks])
                            for f in fields(PageRuns)}) for mm, chunks in parts.items()}


def rows_of(img) -> int:
    return (1 + len(img.tasks) + len(img.mms) + sum(len(m.vmas) for m in img.mms.values())
            + sum(len(r) for r in img.page_runs.runs.values()) + len(img.faults)
            + (len(img.swap[1]) if img.swap else 0) + len(img.errors))


def tiled(img):
    """The same dump with TILE× the page runs (shifted up by 1 TiB per copy)."""
    from vmdex.indexer.walk.pages import PageRuns

    runs = {}
    for mm, r in img.page_runs.runs.items():
        shift = (np.arange(TILE, dtype=np.uint64) << np.uint64(40)).repeat(len(r))
        cols = {f: np.tile(getattr(r, f), TILE) for f in
                ("vma_index", "va", "npages", "level", "kind", "pa", "swap_type",
                 "swap_offset", "pte")}
        cols["va"] = cols["va"] + shift
        runs[mm] = PageRuns(**cols)
    return replace(img, page_runs=WalkedRuns(runs))


def load_rate(location: str, img, kernel_id: int, label: str) -> tuple[float, int]:
    """Median rows/s of store_dump over REPS stores of `img` under new names."""
    from vmdex.indexer import store
    from vmdex.indexer.db import make_engine

    engine = make_engine(location)
    rates = []
    try:
        for i in range(REPS):
            t0 = time.perf_counter()
            store.store_dump(engine, replace(img, name=f"{label}-{i}"), kernel_id, 0.0)
            rates.append(rows_of(img) / (time.perf_counter() - t0))
    finally:
        engine.dispose()
    return statistics.median(rates), rows_of(img)


def walked(location: str, kernel: str, variant: str):
    """Ingest one dump into `location` (creating the schema and the kernel row) and return
    the walked image and its kernel id."""
    from sqlalchemy import select

    from vmdex.indexer import schema as S
    from vmdex.indexer.ingest import ingest
    from vmdex.indexer.target import IndexTarget

    from vmdex.indexer.dumpfile import open_dump
    from vmdex.indexer.ingest import walk_dump
    from vmdex.indexer.kernel.symtab import build_id
    from vmdex.indexer.kernel.types import load_kernel_types
    from vmdex.indexer.kernel.vmcoreinfo import VmcoreInfo

    index = IndexTarget(location)
    try:
        ingest(index, F.dump(kernel, variant), F.vmlinux(kernel), "walked")  # schema, kernel
        with index.engine.connect() as conn:
            kid = conn.execute(select(S.dumps.c.kernel_id)
                               .where(S.dumps.c.name == "walked")).scalar()
    finally:
        index.dispose()
    vmlinux = F.vmlinux(kernel)
    types, symtab = load_kernel_types(vmlinux)
    with open_dump(F.dump(kernel, variant)) as phys:
        img = walk_dump(phys, VmcoreInfo.parse(phys.vmcoreinfo), types, symtab.address,
                        vmlinux, build_id(vmlinux), "walked")
        img = replace(img, page_runs=WalkedRuns(walked(img)), smaps=None)
    return img, kid


def bulk_section(pg_url: str) -> None:
    from vmdex.indexer import store

    kernel = "linux-6.1.0-56-amd64"
    variant = "vmcore.mdf-c-d31"
    print(f"#### Bulk load (`store_dump`, one transaction per dump; median of {REPS})\n")
    print(f"Rows = every row written for the dump (dumps, tasks, mms, VMAs, page runs, swap "
          f"devices). `{kernel}/{variant}` as ingested, and the same with its page runs "
          f"repeated {TILE}× (a dump with more mapped memory).\n")
    print("| engine | method | rows per dump | rows/s (fixture dump) | rows per dump | "
          "rows/s (page runs ×{}) |".format(TILE))
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        sq = str(Path(d) / "bulk.db")
        img, kid = walked(sq, kernel, variant)
        big = tiled(img)
        r1, n1 = load_rate(sq, img, kid, "a")
        r2, n2 = load_rate(sq, big, kid, "b")
        print(f"| SQLite | executemany, batches of {store.BATCH} | {n1} | {r1:,.0f} | {n2} | "
              f"{r2:,.0f} |")
    db = new_database(pg_url, "bench_bulk")
    img, kid = walked(db, kernel, variant)
    big = tiled(img)
    r1, n1 = load_rate(db, img, kid, "a")
    r2, n2 = load_rate(db, big, kid, "b")
    print(f"| PostgreSQL | COPY FROM STDIN (psycopg) | {n1} | {r1:,.0f} | {n2} | {r2:,.0f} |")
    copy = store._copy
    try:  # the same load without COPY: SQLAlchemy executemany on psycopg
        store._copy = _executemany
        r1, n1 = load_rate(db, img, kid, "c")
        r2, n2 = load_rate(db, big, kid, "d")
    finally:
        store._copy = copy
    print(f"| PostgreSQL | executemany (for comparison) | {n1} | {r1:,.0f} | {n2} | "
          f"{r2:,.0f} |\n")


def _executemany(conn, table, rows) -> None:
    from vmdex.indexer import store

    rows = list(rows)
    for i in range(0, len(rows), store.BATCH):
        conn.execute(store.insert(table), rows[i:i + store.BATCH])


def examples() -> dict[str, str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.test_sql import doc_examples

    return doc_examples()


def all_dumps() -> list[tuple[str, str]]:
    return [(k, v) for k in F.kernels() for v in F.dump_variants(k)]


def fill(location: str) -> float:
    """Every fixture dump (all formats), two ingest processes at a time; wall seconds."""
    t0 = time.perf_counter()
    procs = []
    todo = list(all_dumps())
    while todo or procs:
        while todo and len(procs) < 2:
            k, v = todo.pop(0)
            procs.append(subprocess.Popen(
                [VMDEX, "--db", location, "ingest", "--vmlinux", str(F.vmlinux(k)), "--name",
                 f"{k}/{v}", str(F.dump(k, v))], stderr=subprocess.PIPE))
        p = procs.pop(0)
        err = p.communicate()[1]
        assert p.returncode == 0, err
    return time.perf_counter() - t0


def query_section(pg_url: str) -> None:
    from vmdex.query.sql import query

    for k, v in all_dumps():   # unpack the .xz fixtures before timing anything
        F.dump(k, v), F.vmlinux(k)
    with tempfile.TemporaryDirectory() as d:
        sq = str(Path(d) / "fleet.db")
        pg = new_database(pg_url, "bench_fleet")
        secs = {"SQLite": fill(sq), "PostgreSQL": fill(pg)}
        pg = new_reader(pg)   # vmdex sql runs under a reader role on PostgreSQL
        cols, rows = query(sq, "SELECT count(*), sum(task_count), sum(vma_count), "
                               "sum(page_run_count) FROM dumps")
        pages = query(sq, "SELECT count(*) FROM v_pages")[1][0][0]
        n, ntasks, nvmas, nruns = rows[0]
        print("#### Example queries of docs/schema.md on every fixture dump\n")
        print(f"{n} dumps ({ntasks} tasks, {nvmas} VMAs, {nruns} page runs = {pages} pages); "
              f"filled by `vmdex ingest`, two processes at a time, in {secs['SQLite']:.1f} s "
              f"(SQLite) and {secs['PostgreSQL']:.1f} s (PostgreSQL). In-process = "
              "`query.sql.query()` (connect, run, fetch), best of 5; CLI = a whole "
              "`vmdex sql --format csv` process, best of 3.\n")
        print("| query | rows | SQLite in-process ms | SQLite CLI s | PostgreSQL in-process ms "
              "| PostgreSQL CLI s |")
        print("|---|---|---|---|---|---|")
        for name, sql in examples().items():
            cells = []
            nrows = None
            for loc in (sq, pg):
                best = float("inf")
                for _ in range(5):
                    t0 = time.perf_counter()
                    _, got = query(loc, sql)
                    best = min(best, time.perf_counter() - t0)
                nrows = len(got) if nrows is None else nrows
                cli = min(timed([VMDEX, "--db", loc, "sql", "--format", "csv", sql])[0]
                          for _ in range(3))
                cells += [f"{best * 1000:.1f}", f"{cli:.3f}"]
            print(f"| `{name}` | {nrows} | " + " | ".join(cells) + " |")
        print()


def main() -> None:
    print(f"### SQL: bulk load and cross-dump queries ({today()}; {machine()}; "
          f"nproc {__import__('os').cpu_count()})\n")
    with pg_server() as url:
        import psycopg

        with psycopg.connect("postgresql://" + url.split("://", 1)[1]) as c:
            ver = c.execute("SHOW server_version").fetchone()[0]
        import sqlite3

        print(f"SQLite {sqlite3.sqlite_version} (WAL); PostgreSQL {ver} (throwaway server "
              "from tests/pg.py: fsync off, synchronous_commit off, shared_buffers 128MB).\n")
        bulk_section(url)
        query_section(url)


if __name__ == "__main__":
    main()
