"""`vmdex export DEST`: the index as Parquet, the way a warehouse keeps it.

DEST/<table>/dump=<name>/part-0.parquet holds one dump's rows of a table that has dump_id
(Hive-style partitions: Spark, Trino, DuckDB and Hive read `dump` as a column); the tables
without (kernels, page_numbers, smaps_layouts) are DEST/<table>/part-0.parquet. Column types
come from the index's own declarations, so an empty table still has its schema. Rows are
streamed in batches: memory does not grow with the size of a dump.

DEST/views.duckdb.sql and DEST/views.spark.sql define every table over its files and the
v_* views (docs/schema.md) in that engine's SQL: the views' generator (the migrations)
writes them with integer division and two's-complement hex as the index's own engines do.
Needs the `export` extra (pyarrow).
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from vmdex.indexer.errors import VmdexError
from vmdex.migrations.views import head_views
from vmdex.query.conn import connect

BATCH = 65536
SKIP = {"alembic_version"}
PART = "part-0.parquet"


def _arrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise VmdexError("export needs pyarrow: pip install 'vmdex[export]'") from None
    return pa, pq


def _columns(conn, table: str) -> list[tuple[str, str]]:
    """(name, declared type) of a table's columns, in order."""
    if conn.pyformat:
        return [(n, t) for n, t in conn.all(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = ? AND table_schema = current_schema() "
            "ORDER BY ordinal_position", (table,))]
    return [(r[1], r[2]) for r in conn.all(f'PRAGMA table_info("{table}")')]


def _tables(conn) -> list[str]:
    if conn.pyformat:
        rows = conn.all("SELECT table_name FROM information_schema.tables WHERE "
                        "table_schema = current_schema() AND table_type = 'BASE TABLE'")
    else:
        rows = conn.all("SELECT name FROM sqlite_master WHERE type = 'table' "
                        "AND name NOT LIKE 'sqlite_%'")
    return sorted(r[0] for r in rows if r[0] not in SKIP)


def _arrow_type(pa, declared: str):
    t = declared.lower()
    if "int" in t:
        return pa.int64()
    if "bool" in t:
        return pa.bool_()
    if any(w in t for w in ("real", "float", "double", "numeric")):
        return pa.float64()
    if any(w in t for w in ("blob", "bytea", "binary")):
        return pa.binary()
    return pa.string()


def _write(pa, pq, conn, sql: str, params, schema, path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    names = schema.names
    n = 0
    with pq.ParquetWriter(str(path), schema) as w:
        batch: list[tuple] = []
        for row in conn.iter(sql, params, BATCH):
            batch.append(row)
            if len(batch) == BATCH:
                w.write_batch(_batch(pa, batch, names, schema))
                n += len(batch)
                batch = []
        if batch or not n:
            w.write_batch(_batch(pa, batch, names, schema))
            n += len(batch)
    return n


def _batch(pa, rows: list[tuple], names: list[str], schema):
    cols = list(zip(*rows)) if rows else [[] for _ in names]
    out = []
    for values, field in zip(cols, schema):
        if pa.types.is_boolean(field.type):
            values = [None if v is None else bool(v) for v in values]
        elif pa.types.is_binary(field.type):
            values = [None if v is None else bytes(v) for v in values]
        out.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(out, schema=schema)


def export(location: str | None, dest: str, names: list[str] | None = None) -> dict:
    """Write the index (or the dumps `names`) under `dest`; {table: rows written}."""
    pa, pq = _arrow()
    out = Path(dest)
    conn = connect(location)
    try:
        dumps = conn.all("SELECT id, name FROM dumps ORDER BY name")
        if names:
            missing = sorted(set(names) - {n for _, n in dumps})
            if missing:
                raise VmdexError(f"export: no dump named {missing[0]!r} in the index")
            dumps = [(i, n) for i, n in dumps if n in names]
        counts: dict[str, int] = {}
        tables = _tables(conn)
        for table in tables:
            cols = _columns(conn, table)
            schema = pa.schema([(c, _arrow_type(pa, t)) for c, t in cols])
            select = f"SELECT {', '.join(q(c) for c, _ in cols)} FROM {table}"
            if "dump_id" not in [c for c, _ in cols]:
                where, params = "", ()
                if table == "dumps" and names:          # the dumps chosen, no others
                    ids = [i for i, _ in dumps]
                    where = f" WHERE id IN ({', '.join('?' * len(ids))})"
                    params = tuple(ids)
                counts[table] = _write(pa, pq, conn, select + where, params, schema,
                                       out / table / PART)
                continue
            for dump_id, name in dumps:
                part = out / table / f"dump={_partition(name)}" / PART
                counts[table] = counts.get(table, 0) + _write(
                    pa, pq, conn, select + " WHERE dump_id = ?", (dump_id,), schema, part)
        for engine in ("duckdb", "spark"):
            (out / f"views.{engine}.sql").write_text(views_sql(engine, out.resolve(), tables))
        return counts
    finally:
        conn.close()


def q(column: str) -> str:
    return f'"{column}"'


def _partition(name: str) -> str:
    """A dump name as a Hive partition value (/ and other specials escaped as Hive does)."""
    return re.sub(r'[\x00-\x1f"#%\'*/:=?\\\x7f{}\[\]^]',
                  lambda m: f"%{ord(m.group()):02X}", name)


def views_sql(engine: str, dest: Path, tables: list[str]) -> str:
    """Statements that make DEST's tables and the v_* views queryable in `engine`."""
    lines = [f"-- vmdex export for {engine}: run in a session, then query the v_* views"]
    for t in tables:
        if engine == "duckdb":
            glob = f"{dest}/{t}/**/*.parquet"
            lines.append(f"CREATE OR REPLACE VIEW {t} AS SELECT * FROM read_parquet("
                         f"'{glob}', hive_partitioning = true, union_by_name = true);")
        else:
            lines.append(f"CREATE OR REPLACE TEMPORARY VIEW {t} USING parquet "
                         f"OPTIONS (path '{dest}/{t}', recursiveFileLookup 'false');")
    for name, sql in head_views("sqlite").items():
        lines.append(f"CREATE OR REPLACE {'TEMPORARY ' if engine == 'spark' else ''}"
                     f"VIEW {name} AS {_dialect(engine, sql.strip())};")
    return "\n".join(lines) + "\n"


def _dialect(engine: str, sql: str) -> str:
    """The SQLite form of a view (what the generator writes for it) in `engine`'s SQL:
    hex text of a stored int64 by hex() of its two's complement, lower case (SQLite's
    printf('%x')); integer division of integers where `/` would give a fraction."""
    sql = re.sub(r"printf\('%x', (.*?)\) END", r"lower(hex(\1)) END", sql)
    if "printf(" in sql:
        raise VmdexError(f"export: a view uses printf in a form not translated: {sql[:80]}")
    return sql.replace(" / ", " // " if engine == "duckdb" else " div ")


def run_export(location: str | None, dest: str, names: list[str] | None, force: bool) -> None:
    out = Path(dest)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise VmdexError(f"export: {dest} is not empty (--force replaces it)")
        shutil.rmtree(out)
    tmp = out.with_name(out.name + f".partial-{os.getpid()}")
    try:
        counts = export(location, str(tmp), names)
        # the views name the files by path: written for the final place
        for engine in ("duckdb", "spark"):
            f = tmp / f"views.{engine}.sql"
            f.write_text(f.read_text().replace(str(tmp.resolve()), str(out.resolve())))
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    total = sum(counts.values())
    print(f"exported {len(counts)} tables, {total} rows to {dest}")
