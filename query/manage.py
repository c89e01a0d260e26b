"""`vmdex dumps` (what the index holds) and `vmdex rm NAME` (forget one dump)."""
from __future__ import annotations

import sys
from typing import IO

from vmdex.indexer.errors import VmdexError

COLUMNS = ["name", "release", "kernel_from", "dump_file", "ingested_at", "tasks", "vmas",
           "page_runs"]


def list_dumps(location: str | None) -> tuple[list[str], list[tuple]]:
    from vmdex.query.conn import connect

    conn = connect(location)
    try:
        # kernel_from: where the kernel types and symbols this dump was ingested with were
        # read (older rows: their kernel row's source)
        rows = conn.all("SELECT d.name, d.release, "
                        "COALESCE(d.kernel_source, k.source, 'vmlinux'), "
                        "d.source_path, d.ingested_at, d.task_count, d.vma_count, "
                        "d.page_run_count FROM dumps d JOIN kernels k ON k.id = d.kernel_id "
                        "ORDER BY d.name")
    finally:
        conn.close()
    return COLUMNS, rows


def run_dumps(location: str | None, fmt: str | None, out: IO[str] = sys.stdout) -> None:
    from vmdex.query.render.tables import WRITERS
    from vmdex.query.sql import output_format

    cols, rows = list_dumps(location)
    WRITERS[output_format(fmt)](cols, rows, out)


def run_rm(location: str | None, name: str) -> None:
    from vmdex.indexer.db import make_engine
    from vmdex.indexer.store import remove_dump

    _, rows = list_dumps(location)  # also: the index exists and has the current schema
    names = [r[0] for r in rows]
    if name not in names:
        from vmdex.query.index import some_names
        raise VmdexError(f"no dump named {name!r} in the index (have: {some_names(names)})")
    engine = make_engine(location)
    try:
        if not remove_dump(engine, name):   # removed meanwhile by someone else
            raise VmdexError(f"no dump named {name!r} in the index")
    finally:
        engine.dispose()
    print(f"removed {name}", file=sys.stderr)


def run_grant_reader(location: str | None, role: str, password: str | None) -> None:
    """Make `role` a reader of this PostgreSQL index: what `vmdex sql` accepts to run under.
    Run it as the role that ingests (it owns the tables and runs the migrations)."""
    from vmdex.indexer.location import need_psycopg, url_for
    from vmdex.query.conn import connect
    from vmdex.query.pgreader import grant_reader_statements, unfit_reasons

    url = url_for(location)
    if not url.startswith(("postgresql", "postgres")):
        raise VmdexError("grant-reader is for PostgreSQL indexes; an SQLite index is "
                         "confined by vmdex sql itself")
    need_psycopg()
    import psycopg

    connect(location).close()   # the index exists, at the current schema
    dsn = "postgresql://" + url.split("://", 1)[1]
    with psycopg.connect(dsn, autocommit=False) as db:
        cur = db.cursor()
        schema, database = cur.execute(
            "SELECT n.nspname, current_database() FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.oid = to_regclass('alembic_version')").fetchone()
        exists = cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        try:
            for stmt in grant_reader_statements(role, schema, database, not exists, password):
                cur.execute(stmt)
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()
            raise VmdexError(f"grant-reader: {first[0] if first else exc}") from None
        reasons = unfit_reasons(cur, role)
        if reasons:   # e.g. an existing role that was a superuser: say so, change nothing
            db.rollback()
            raise VmdexError(f"grant-reader: role {role} cannot be a reader: "
                             + "; ".join(reasons))
        db.commit()
    print(f"{'granted' if exists else 'created'} reader role {role}: "
          f"vmdex --db postgresql+psycopg://{role}@HOST/{database} sql ...", file=sys.stderr)
