"""Several `vmdex ingest` processes on one index at once, on SQLite and on PostgreSQL: every
dump goes in complete, row for row what a single ingest stores (the oracle_index fixture,
built one ingest at a time), and `vmdex dumps` / `vmdex rm` see and remove exactly them.

The indexes start empty, so the four processes also race to create the schema.
"""
from __future__ import annotations

import json
import subprocess

import pytest

from vmdex.indexer import schema as S
from tests import fixturedata as F
from tests.conftest import VMDEX, vmdex

K61 = "linux-6.1.0-56-amd64"
K510 = "linux-5.10.0-32-cloud-amd64"
TABLES = tuple(t.name for t in S.BULK_TABLES)   # every per-dump table
# sys's facts about the dump file itself (DUMPFILE and its suffixes), not its memory
FILE_FACTS = {"dumpfile", "dump_kind", "partial", "incomplete", "excluded_vmemmap"}
# ps -a's argument pages: user pages, which a -d 31 variant of the same memory leaves out
USER_PAGES = {"args", "env", "args_error"}
COUNTS = ("task_count", "vma_count", "page_run_count", "error_count")
# name -> (kernel, dump variant): two processes even read the same file
CONCURRENT = {
    "c1": (K61, "vmcore.kdump-zlib"),
    "c2": (K61, "vmcore.kdump-zlib"),
    "c3": (K510, "vmcore.mdf-c-d31"),
    "c4": (K61, "vmcore.mdf-c-d31"),
}


@pytest.fixture(params=["sqlite", "pg"])
def empty_index(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "concurrent.db")
    from tests.pg import new_database

    return new_database(request.getfixturevalue("pg_server_url"), "concurrent")


def _norm(v):
    if isinstance(v, memoryview):
        return bytes(v)
    if isinstance(v, bool):
        return int(v)
    return v


def dump_content(db, name: str) -> dict:
    """Every row of one dump, per table, without dump ids, sorted; plus the dumps counts."""
    from vmdex.query.conn import connect

    conn = connect(str(db), dbapi=True)      # the driver's cursors: column names
    try:
        row = conn.one(f"SELECT id, {', '.join(COUNTS)} FROM dumps WHERE name = ?", (name,))
        assert row is not None, f"dump {name} missing from {db}"
        out = {"counts": tuple(row[1:])}
        for t in TABLES:
            cur = conn.dbapi.cursor()
            cur.execute(f"SELECT * FROM {t} WHERE dump_id = " + ("%s" if conn.pyformat else "?"),
                        (row[0],))
            cols = [d[0] for d in cur.description]
            keep = [i for i, c in enumerate(cols) if c != "dump_id" and
                    not (t == "task_info" and c in USER_PAGES)]
            rows = cur.fetchall()
            if t == "dump_info":   # what names the file and its format differs per variant
                rows = [r for r in rows if r[cols.index("key")] not in FILE_FACTS]
            out[t] = sorted(tuple(_norm(r[i]) for i in keep) for r in rows)
        return out
    finally:
        conn.close()


@pytest.fixture(scope="module")
def reference(oracle_index):
    """Per kernel: the rows one `vmdex ingest` at a time stored (SQLite)."""
    return {k: dump_content(db, name) for k, (db, name) in oracle_index.items()}


def _same(got: dict, want: dict, label: str) -> None:
    assert got["counts"] == want["counts"], label
    for t in TABLES:
        assert len(got[t]) == len(want[t]), f"{label}: {t} has {len(got[t])} rows, " \
                                            f"a single ingest stores {len(want[t])}"
        assert got[t] == want[t], f"{label}: {t} rows differ"


def test_four_ingests_at_once(empty_index, reference):
    db = empty_index
    procs = {}
    for name, (k, v) in CONCURRENT.items():   # all started before any is waited for
        procs[name] = subprocess.Popen(
            [VMDEX, "--db", db, "ingest", "--vmlinux", str(F.vmlinux(k)), "--name", name,
             str(F.dump(k, v))], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for name, p in procs.items():
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, f"{name}: {err.decode()[-2000:]}"
        assert f"ingested {name}:".encode() in err
    for name, (k, _) in CONCURRENT.items():
        _same(dump_content(db, name), reference[k], name)

    # vmdex dumps: exactly those four, with the counts of a single ingest
    p = vmdex("dumps", "--format", "json", db=db, check=True)
    listed = {d["name"]: d for d in json.loads(p.stdout)}
    assert sorted(listed) == sorted(CONCURRENT)
    for name, (k, v) in CONCURRENT.items():
        d = listed[name]
        assert (d["tasks"], d["vmas"], d["page_runs"]) == reference[k]["counts"][:3]
        assert d["dump_file"].endswith(v)
        assert d["release"] in k
        assert d["kernel_from"] == "vmlinux"
    table = vmdex("dumps", db=db, check=True).stdout.decode().splitlines()
    assert table[0].split() == ["name", "release", "kernel_from", "dump_file", "ingested_at",
                                "tasks", "vmas", "page_runs"]
    assert [line.split()[0] for line in table[2:]] == sorted(CONCURRENT)

    # vmdex rm: one dump gone, every row of it, the others untouched
    p = vmdex("rm", "c2", db=db)
    assert p.returncode == 0, p.stderr
    p = vmdex("dumps", "--format", "csv", db=db, check=True)
    assert [line.split(",")[0] for line in p.stdout.decode().splitlines()[1:]] == \
        ["c1", "c3", "c4"]
    if "://" in db:   # vmdex sql runs under a reader role on PostgreSQL
        from tests.pg import new_reader

        reader = new_reader(db)
    else:
        reader = db
    orphans = vmdex("sql", "--format", "json", "SELECT count(*) AS n FROM tasks WHERE dump_id "
                    "NOT IN (SELECT id FROM dumps)", db=reader, check=True)
    assert json.loads(orphans.stdout) == [{"n": 0}]
    _same(dump_content(db, "c1"), reference[K61], "c1 after rm c2")
    p = vmdex("rm", "c2", db=db)
    assert p.returncode == 2
    assert p.stderr.decode() == "vmdex: no dump named 'c2' in the index (have: c1, c3, c4)\n"


def test_ingest_jobs(empty_index, reference, tmp_path):
    """`vmdex ingest --jobs 2` with two good dumps and a bad file: the good ones go in
    complete, the bad one is named, the exit status says something failed."""
    bad = tmp_path / "vmcore.bogus"
    bad.write_bytes(b"not a dump\n" * 100)
    dumps = [str(F.dump(K61, "vmcore.kdump-zlib")), str(bad), str(F.dump(K61, "vmcore.mdf-c-d31"))]
    p = vmdex("ingest", "--jobs", "2", "--vmlinux", str(F.vmlinux(K61)), *dumps,
              db=empty_index)
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert f"vmdex: {bad}: " in err
    assert err.strip().splitlines()[-1] == f"vmdex: 1 of 3 dumps not ingested: {bad}"
    for name in ("vmcore.kdump-zlib", "vmcore.mdf-c-d31"):
        assert f"ingested {name}:" in err
        _same(dump_content(empty_index, name), reference[K61], name)
    p = vmdex("dumps", "--format", "json", db=empty_index, check=True)
    assert sorted(d["name"] for d in json.loads(p.stdout)) == ["vmcore.kdump-zlib",
                                                               "vmcore.mdf-c-d31"]


def test_fleet_errors_name_a_few_dumps_not_all(oracle_index, tmp_path):
    """A fleet index holds thousands of dumps: an unknown or missing --dump names the first
    few and how many there are, in one line, not every name."""
    import shutil
    import sqlite3

    db = tmp_path / "many.db"
    shutil.copy(next(iter(oracle_index.values()))[0], db)
    with sqlite3.connect(db) as c:
        cols = [r[1] for r in c.execute("PRAGMA table_info(dumps)") if r[1] not in ("id", "name")]
        for k in range(30):
            c.execute(f"INSERT INTO dumps (name, {', '.join(cols)}) SELECT name || '#{k:02d}', "
                      f"{', '.join(cols)} FROM dumps WHERE id = (SELECT min(id) FROM dumps)")
        total = c.execute("SELECT count(*) FROM dumps").fetchone()[0]
        first = [n for (n,) in c.execute("SELECT name FROM dumps ORDER BY name LIMIT 10")]
    listed = ", ".join(first) + f", ... ({total} in all: `vmdex dumps` lists them)"
    for args, want in ((("--dump", "nope", "vm", "1"),
                        f"vmdex: no dump named 'nope' in the index (have: {listed})\n"),
                       (("vm", "1"), "vmdex: the index holds several dumps; choose one with "
                                     f"--dump: {listed}\n"),
                       (("rm", "nope"), f"vmdex: no dump named 'nope' in the index (have: "
                                        f"{listed})\n")):
        p = vmdex(*args, db=db)
        assert (p.returncode, p.stderr.decode()) == (2, want)
