"""Open an index (SQLite path or SQLAlchemy URL) and bring its schema to the current version."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine

from vmdex.indexer.errors import VmdexError
from vmdex.indexer.location import need_psycopg, url_for

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
HEAD = "0010"  # newest migration id; checked cheaply before Alembic is imported (query/conn.py too)


def make_engine(location: str | None = None, readonly: bool = False) -> Engine:
    """An engine for the index; SQLite write transactions take the lock up front
    (BEGIN IMMEDIATE) so concurrent ingests queue instead of failing on lock upgrade."""
    url = url_for(location)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]
        if readonly:
            if not Path(path).exists():
                raise VmdexError(f"no index at {path} (run `vmdex ingest` first)")
        engine = create_engine(url, connect_args={"timeout": 120})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            # WAL: readers keep answering while an ingest writes; writers queue on the lock.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=120000")
            cur.execute("PRAGMA foreign_keys=ON")
            if readonly:
                cur.execute("PRAGMA query_only=ON")
            cur.close()
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below

        @event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")
        return engine
    if url.startswith(("postgresql://", "postgres://")):  # plain libpq URL: use psycopg 3
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("postgresql+psycopg"):
        need_psycopg()
    return create_engine(url, pool_pre_ping=True)



def schema_version(engine: Engine) -> str | None:
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except Exception:
            return None


def upgrade(engine: Engine) -> None:
    """Create or migrate the schema with Alembic (only when it is not at HEAD already)."""
    if schema_version(engine) == HEAD:
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        # Concurrent ingests on a fresh index: one migrates, the others wait and then find
        # the schema current (SQLite: BEGIN IMMEDIATE already serialises this transaction).
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7236981)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
