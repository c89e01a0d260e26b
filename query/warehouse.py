"""`vmdex ingest --to DEST`: dumps added one by one to a warehouse folder of Parquet files.

Where `vmdex export` writes a whole index once, this adds dumps to a folder that many
ingests (other processes, other machines) write into, so nothing may depend on their order:

* ids come from names: a dump's `dump_id` (and `dumps.id`) is a hash of its name and a
  kernel's `kernels.id` a hash of its build id, so rows from any index land under the same
  ids and no writer needs to know the others';
* every table is partitioned by what its rows belong to: `<table>/dump=<name>/` (dumps
  included), `kernels/build=<build id>/`, and `page_numbers/` once;
* a dump appears whole: its partitions are written in a staging folder inside DEST and
  renamed into place, the `dumps` partition last (every v_* view joins `dumps`); a dump of
  the same name is replaced, its `dumps` partition taken away first;
* views.duckdb.sql and views.spark.sql (query.export.views_sql) are written anew, by rename.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Callable

from vmdex.indexer.errors import VmdexError
from vmdex.query.conn import connect
from vmdex.query.export import (PART, _arrow, _arrow_type, _columns, _partition,
                                _tables, _write, q, views_sql)


def stable_id(kind: str, key: str) -> int:
    """A positive int64 from `kind` and `key` (a dump name, a build id)."""
    digest = hashlib.sha256(f"{kind}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def ingest_to(dest: str, ingest: Callable[[str], None]) -> None:
    """`vmdex ingest --to DEST`: `ingest` fills a temporary SQLite index, whose dumps then
    go to DEST. When some dumps of a crash directory fail, the others still go."""
    made = not os.path.exists(dest)
    _arrow()                    # no pyarrow, or no place for the files: said before any
    _check_dest(Path(dest))     # dump is read
    with tempfile.TemporaryDirectory(prefix="vmdex-to-") as tmp:
        staging = os.path.join(tmp, "staging.db")
        failed = None
        try:
            ingest(staging)
        except VmdexError as exc:
            failed = exc
        added = add_dumps(staging, dest) if os.path.exists(staging) else []
        if added:
            print(f"wrote {', '.join(added)} to {dest}", file=sys.stderr)
        elif made:      # nothing went in: a DEST this ingest made is not left behind
            try:        # (only if empty: another ingest may be writing into it already)
                os.rmdir(dest)
            except OSError:
                pass
        if failed is not None:
            raise failed


def add_dumps(location: str, dest: str) -> list[str]:
    """Add every dump of the index at `location` to the warehouse folder `dest`; returns
    their names."""
    pa, pq = _arrow()
    out = Path(dest)
    _check_dest(out)
    conn = connect(location)
    stage = out / f".staging-{uuid.uuid4().hex}"
    try:
        dumps = conn.all("SELECT d.id, d.name, k.id, k.build_id FROM dumps d "
                         "JOIN kernels k ON k.id = d.kernel_id ORDER BY d.name")
        tables = _tables(conn)
        schemas = {t: _columns(conn, t) for t in tables}
        for dump_id, name, kernel_id, build_id in dumps:
            _add_one(pa, pq, conn, out, stage, schemas, dump_id, name, kernel_id, build_id)
        if dumps:
            _write_views(out, stage, tables)
        return [d[1] for d in dumps]
    finally:
        conn.close()
        shutil.rmtree(stage, ignore_errors=True)


def _check_dest(out: Path) -> None:
    """DEST is a warehouse folder of this layout, or can be made one."""
    if (out / "dumps" / PART).exists():
        raise VmdexError(f"{out}: written by `vmdex export` (one file per table): "
                         "`ingest --to` needs a folder of its own")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VmdexError(f"{out}: cannot be the warehouse folder: {exc.strerror}") from None


def _add_one(pa, pq, conn, out: Path, stage: Path, schemas: dict, dump_id: int, name: str,
             kernel_id: int, build_id: str) -> None:
    new_dump, new_kernel = stable_id("dump", name), stable_id("kernel", build_id)
    part = f"dump={_partition(name)}"
    written: list[str] = []
    for table, cols in schemas.items():
        names = [c for c, _ in cols]
        schema = pa.schema([(c, _arrow_type(pa, t)) for c, t in cols])
        # the stored ids replaced by the warehouse's
        swap = {"dump_id": "?"} if "dump_id" in names else \
            {"id": "?", "kernel_id": "?"} if table == "dumps" else \
            {"id": "?"} if table == "kernels" else {}
        select = ", ".join(f"{swap[c]} AS {q(c)}" if c in swap else q(c) for c in names)
        if "dump_id" in names:
            sql, params, where = f"SELECT {select} FROM {table} WHERE dump_id = ?", \
                (new_dump, dump_id), f"{table}/{part}"
        elif table == "dumps":
            sql, params, where = f"SELECT {select} FROM dumps WHERE id = ?", \
                (new_dump, new_kernel, dump_id), f"dumps/{part}"
        elif table == "kernels":
            where = f"kernels/build={_partition(build_id)}"
            if (out / where).exists():
                continue                  # one build's kernel: written by whoever came first
            sql, params = f"SELECT {select} FROM kernels WHERE id = ?", (new_kernel, kernel_id)
        else:                             # page_numbers: the same for every index
            where = table
            if (out / where / PART).exists():
                continue
            sql, params = f"SELECT {select} FROM {table}", ()
        _write(pa, pq, conn, sql, params, schema, stage / where / PART)
        written.append(where)
    # moved in: the dump's old `dumps` partition away first, its new one last
    old = stage / "old"
    _move(out / "dumps" / part, old / "dumps" / part)
    for where in sorted(written, key=lambda w: w.startswith("dumps/")):
        target = out / where
        if where == "page_numbers":
            target.mkdir(parents=True, exist_ok=True)
            os.replace(stage / where / PART, target / PART)
            continue
        if where.startswith("kernels/"):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(stage / where, target)
            except OSError:
                if not target.exists():
                    raise             # else another ingest wrote this build's kernel first
            continue
        _move(target, old / where)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(stage / where, target)
    shutil.rmtree(old, ignore_errors=True)


def _move(src: Path, dst: Path) -> None:
    if src.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, dst)


def _write_views(out: Path, stage: Path, tables: list[str]) -> None:
    stage.mkdir(parents=True, exist_ok=True)
    for engine in ("duckdb", "spark"):
        tmp = stage / f"views.{engine}.sql"
        tmp.write_text(views_sql(engine, out.resolve(), tables))   # _tables(): SKIP left out
        os.replace(tmp, out / f"views.{engine}.sql")
