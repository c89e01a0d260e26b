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


def test_spark_doc_examples(exported, fleet_sqlite):
    """Spark SQL in local mode over the same files (Java from Debian's packages)."""
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[1]").appName("vmdex-export")
             .config("spark.ui.enabled", "false")
             .config("spark.sql.session.timeZone", "UTC").getOrCreate())
    try:
        for stmt in (exported / "views.spark.sql").read_text().split(";\n"):
            if stmt.strip() and not stmt.strip().startswith("--"):
                spark.sql(stmt)
        for name, sql in doc_examples().items():
            got = [tuple(r) for r in spark.sql(sql).collect()]
            assert got == sql_rows(fleet_sqlite, sql), name
    finally:
        spark.stop()


def test_refuses_a_non_empty_dest_and_unknown_dump(fleet_sqlite, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep").write_text("mine")
    p = vmdex("export", str(tmp_path / "x"), db=fleet_sqlite)
    assert p.returncode == 2 and b"not empty" in p.stderr and p.stderr.count(b"\n") == 1
    assert (tmp_path / "x" / "keep").read_text() == "mine"
    p = vmdex("export", "--dump-name", "nope", str(tmp_path / "y"), db=fleet_sqlite)
    assert p.returncode == 2 and b"no dump named 'nope'" in p.stderr
    assert not (tmp_path / "y").exists() and not list(tmp_path.glob("y.partial-*"))
