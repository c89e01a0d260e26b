"""`vmdex export`: the index as Hive-partitioned Parquet, read back by DuckDB (embedded)
and Spark (local mode): docs/schema.md's cross-dump examples and every v_* view give the
rows `vmdex sql` gives on SQLite and PostgreSQL. Real fixture dumps, the installed CLI."""
from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import vmdex

REPO = Path(__file__).resolve().parents[1]
VIEWS = ("v_dumps", "v_tasks", "v_vmas", "v_task_vmas", "v_pages", "v_smaps",
         "v_smaps_rollup")


def doc_examples() -> dict[str, str]:
    text = (REPO / "docs" / "schema.md").read_text()
    found = re.findall(r"<!-- (?:smaps-)?example: (\w+) -->\s*```sql\n(.*?)```", text, re.S)
    return {name: sql.strip() for name, sql in found}


def sql_rows(db, sql: str) -> list[tuple]:
    p = vmdex("sql", "--format", "json", "--timeout", "0", sql, db=db, check=True)
    return [tuple(r.values()) for r in json.loads(p.stdout)]


@pytest.fixture(scope="module")
def exported(fleet_sqlite, tmp_path_factory):
    dest = tmp_path_factory.mktemp("export") / "warehouse"
    p = vmdex("export", str(dest), db=fleet_sqlite, check=True)
    assert p.stdout.decode().startswith("exported "), p.stdout
    return dest


def test_layout_is_hive_partitions(exported, fleet_sqlite):
    names = [r[0] for r in sql_rows(fleet_sqlite, "SELECT name FROM dumps ORDER BY name")]
    parts = sorted(p.name for p in (exported / "page_runs").iterdir())
    assert len(parts) == len(names) and all(p.startswith("dump=") for p in parts)
    assert (exported / "kernels" / "part-0.parquet").is_file()
    assert (exported / "views.duckdb.sql").is_file() and (exported / "views.spark.sql").is_file()


@pytest.fixture(scope="module")
def duck(exported):
    import duckdb      # the test extras: CI installs it (no skip)

    con = duckdb.connect()
    con.execute((exported / "views.duckdb.sql").read_text())
    return con


@pytest.mark.parametrize("name", sorted(doc_examples()))
def test_duckdb_doc_examples(duck, fleet_sqlite, name):
    sql = doc_examples()[name]
    got = [tuple(r) for r in duck.execute(sql).fetchall()]
    assert got and got == sql_rows(fleet_sqlite, sql)


@pytest.mark.parametrize("view", VIEWS)
def test_duckdb_views_whole(duck, fleet_sqlite, view):
    """Every row and column of each view, as SQLite has them."""
    db = sqlite3.connect(f"file:{fleet_sqlite}?mode=ro", uri=True)
    cols = [r[1] for r in db.execute(f"PRAGMA table_info({view})")]
    order = ", ".join(f'"{c}"' for c in cols)
    want = db.execute(f"SELECT * FROM {view} ORDER BY {order}").fetchall()
    db.close()
    got = [tuple(r) for r in duck.execute(f"SELECT * FROM {view} ORDER BY {order}").fetchall()]
    assert len(got) == len(want) and got == want


def test_export_from_postgresql(fleet_pg, fleet_sqlite, tmp_path):
    """The same warehouse from a PostgreSQL index: the examples' rows as on SQLite."""
    import duckdb

    dest = tmp_path / "pg"
    vmdex("export", str(dest), db=fleet_pg, check=True)
    con = duckdb.connect()
    con.execute((dest / "views.duckdb.sql").read_text())
    for name, sql in doc_examples().items():
        assert [tuple(r) for r in con.execute(sql).fetchall()] == \
            sql_rows(fleet_sqlite, sql), name


def spark_rows(dest: Path, queries: dict[str, str]) -> dict[str, list[tuple]]:
    """Each query's rows from Spark SQL in local mode over the warehouse at `dest`."""
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[1]").appName("vmdex-export")
             .config("spark.ui.enabled", "false")
             .config("spark.sql.session.timeZone", "UTC").getOrCreate())
    try:
        for stmt in (dest / "views.spark.sql").read_text().split(";\n"):
            if stmt.strip() and not stmt.strip().startswith("--"):
                spark.sql(stmt)
        return {name: [tuple(r) for r in spark.sql(sql).collect()]
                for name, sql in queries.items()}
    finally:
        spark.stop()


def test_spark_doc_examples(exported, fleet_sqlite):
    """Spark SQL in local mode over the same files (Java from Debian's packages)."""
    for name, got in spark_rows(exported, doc_examples()).items():
        assert got == sql_rows(fleet_sqlite, doc_examples()[name]), name


def test_refuses_a_non_empty_dest_and_unknown_dump(fleet_sqlite, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep").write_text("mine")
    p = vmdex("export", str(tmp_path / "x"), db=fleet_sqlite)
    assert p.returncode == 2 and b"not empty" in p.stderr and p.stderr.count(b"\n") == 1
    assert (tmp_path / "x" / "keep").read_text() == "mine"
    p = vmdex("export", "--dump-name", "nope", str(tmp_path / "y"), db=fleet_sqlite)
    assert p.returncode == 2 and b"no dump named 'nope'" in p.stderr
    assert not (tmp_path / "y").exists() and not list(tmp_path.glob("y.partial-*"))


# --- ingest --to DEST: dumps added to a warehouse one ingest at a time ----------------------
K61, K510, MDF = "linux-6.1.0-56-amd64", "linux-5.10.0-32-cloud-amd64", "vmcore.mdf-c-d31"


def listing(dest: Path) -> dict[str, bytes]:
    return {str(p.relative_to(dest)): p.read_bytes() for p in sorted(dest.rglob("*"))
            if p.is_file()}


def test_ingest_to_warehouse(tmp_path):
    """Each `ingest --to` process adds its dump to DEST; DuckDB and Spark over DEST give
    docs/schema.md's examples the rows of an index holding the same dumps, DuckDB every
    v_* view's rows (ids aside: in DEST they come from names); a dump ingested again is
    replaced, not doubled; a failed ingest leaves DEST as it was."""
    import duckdb

    from tests import fixturedata as F
    from vmdex.query.warehouse import stable_id

    dest, db = tmp_path / "warehouse", tmp_path / "same.db"
    for i, (name, k) in enumerate((("a", K61), ("b/5.10", K510), ("a", K61))):
        args = ("ingest", "--vmlinux", str(F.vmlinux(k)), "--name", name, str(F.dump(k, MDF)))
        p = vmdex(args[0], "--to", str(dest), *args[1:], check=True)
        assert p.stderr.decode().splitlines()[-1] == f"wrote {name} to {dest}", p.stderr
        if i < 2:                           # the third: "a" again, to be replaced in DEST
            vmdex(*args, db=db, check=True)
    assert sorted(p.name for p in (dest / "dumps").iterdir()) == ["dump=a", "dump=b%2F5.10"]

    con = duckdb.connect()
    con.execute((dest / "views.duckdb.sql").read_text())
    for name, sql in doc_examples().items():
        assert [tuple(r) for r in con.execute(sql).fetchall()] == sql_rows(db, sql), name
    assert con.execute("SELECT name, id FROM dumps ORDER BY name").fetchall() == \
        [("a", stable_id("dump", "a")), ("b/5.10", stable_id("dump", "b/5.10"))]
    lite = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    for view in VIEWS:
        # ids come from names; when the dump was ingested is not the dump
        cols = [r[1] for r in lite.execute(f"PRAGMA table_info({view})")
                if r[1] not in ("dump_id", "ingested_at", "ingest_seconds")]
        order = ", ".join(f'"{c}"' for c in cols)
        sel = f"SELECT {order} FROM {view} ORDER BY {order}"
        want = lite.execute(sel).fetchall()
        assert want and [tuple(r) for r in con.execute(sel).fetchall()] == want, view
    lite.close()
    for name, got in spark_rows(dest, doc_examples()).items():
        assert got == sql_rows(db, doc_examples()[name]), name

    before = listing(dest)
    p = vmdex("ingest", "--to", str(dest), "--vmlinux", str(F.vmlinux(K61)), "--name", "c",
              str(F.vmlinux(K61)))                                   # not a dump
    assert p.returncode == 2 and p.stderr.count(b"\n") == 1, p.stderr
    assert listing(dest) == before
    p = vmdex("ingest", "--to", str(dest), str(F.dump(K61, MDF)), db=db)
    assert p.returncode == 2 and b"--db does not apply" in p.stderr
    assert listing(dest) == before
    # not a folder for it: a file, or a folder `vmdex export` wrote (one dumps file)
    vmdex("export", str(tmp_path / "exported"), db=db, check=True)
    (tmp_path / "file").write_text("mine")
    for where, why in (("file", b"cannot be the warehouse folder"),
                       ("exported", b"written by `vmdex export`")):
        p = vmdex("ingest", "--to", str(tmp_path / where), str(F.dump(K61, MDF)))
        assert p.returncode == 2 and why in p.stderr and p.stderr.count(b"\n") == 1, p.stderr
    assert (tmp_path / "file").read_text() == "mine"
    # a failed ingest into a DEST that did not exist leaves no DEST behind
    p = vmdex("ingest", "--to", str(tmp_path / "new" / "wh"), "--vmlinux",
              str(F.vmlinux(K61)), str(F.vmlinux(K61)))
    assert p.returncode == 2 and p.stderr.count(b"\n") == 1, p.stderr
    assert not (tmp_path / "new" / "wh").exists()


def test_ingest_to_from_processes_at_once(tmp_path):
    """Four `ingest --to` processes at once into one folder, two builds (as a fleet's ingest
    machines write a shared warehouse): every dump is there whole, each build's kernel once."""
    import subprocess

    import duckdb

    from tests import fixturedata as F
    from tests.conftest import VMDEX

    dest = tmp_path / "warehouse"
    runs = [(f"n{i}", k) for i, k in enumerate((K61, K61, K510, K510))]
    procs = [subprocess.Popen([VMDEX, "ingest", "--to", str(dest), "--workers", "1",
                               "--vmlinux", str(F.vmlinux(k)), "--name", name,
                               str(F.dump(k, MDF))], stderr=subprocess.PIPE,
                              stdout=subprocess.DEVNULL) for name, k in runs]
    for p in procs:
        assert p.wait() == 0, p.stderr.read()
    assert len(list((dest / "kernels").iterdir())) == 2
    assert not list(dest.glob(".staging-*"))
    con = duckdb.connect()
    con.execute((dest / "views.duckdb.sql").read_text())
    got = dict(con.execute("SELECT dump, count(*) FROM v_tasks GROUP BY dump").fetchall())
    assert sorted(got) == ["n0", "n1", "n2", "n3"]
    assert got["n0"] == got["n1"] > 0 and got["n2"] == got["n3"] > 0     # each dump whole
    assert con.execute("SELECT count(DISTINCT build_id) FROM v_dumps").fetchone() == (2,)
