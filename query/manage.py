"""`vmdex dumps` (what the index holds) and `vmdex rm NAME` (forget one dump)."""
from __future__ import annotations

import sys
from typing import IO

from indexer.errors import VmdexError

COLUMNS = ["name", "release", "dump_file", "ingested_at", "tasks", "vmas", "page_runs"]


def list_dumps(location: str | None) -> tuple[list[str], list[tuple]]:
    from query.conn import connect

    conn = connect(location)
    try:
        rows = conn.all("SELECT name, release, source_path, ingested_at, task_count, "
                        "vma_count, page_run_count FROM dumps ORDER BY name")
    finally:
        conn.close()
    return COLUMNS, rows


def run_dumps(location: str | None, fmt: str | None, out: IO[str] = sys.stdout) -> None:
    from query.sql import output_format, write_csv, write_json, write_table

    f = output_format(fmt)
    cols, rows = list_dumps(location)
    {"table": write_table, "csv": write_csv, "json": write_json}[f](cols, rows, out)


def run_rm(location: str | None, name: str) -> None:
    from indexer.db import make_engine
    from indexer.store import remove_dump

    _, rows = list_dumps(location)  # also: the index exists and has the current schema
    names = [r[0] for r in rows]
    if name not in names:
        have = ", ".join(names) if names else "none"
        raise VmdexError(f"no dump named {name!r} in the index (have: {have})")
    engine = make_engine(location)
    try:
        if not remove_dump(engine, name):   # removed meanwhile by someone else
            raise VmdexError(f"no dump named {name!r} in the index")
    finally:
        engine.dispose()
    print(f"removed {name}", file=sys.stderr)
