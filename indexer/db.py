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
        return _version(conn)


def _version(conn) -> str | None:
    """The index's Alembic revision; None for an index without one (asked without an
    error, which would abort a PostgreSQL transaction)."""
    if not _table_names(conn) & {"alembic_version"}:
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _table_names(conn) -> set[str]:
    if conn.dialect.name == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
    else:
        sql = ("SELECT table_name FROM information_schema.tables "
               "WHERE table_schema = current_schema()")
    return {r[0] for r in conn.execute(text(sql))}


def upgrade(engine: Engine) -> None:
    """Bring the schema to HEAD: a brand-new index is created at HEAD directly (the tables of
    indexer/schema.py, the views of migrations/views.py, the revision stamped), an older one
    is migrated by Alembic. Nothing is done when the index is at HEAD already."""
    if schema_version(engine) == HEAD:
        return
    with engine.begin() as conn:
        # Concurrent ingests on a fresh index: one creates or migrates, the others wait and
        # then find the schema current (SQLite: BEGIN IMMEDIATE already serialises this).
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7236981)")
        if not _table_names(conn):
            create_at_head(conn)
        else:
            migrate(conn)


def create_at_head(conn) -> None:
    """The schema Alembic's migrations would build on an empty database, without Alembic
    (its import and run cost a new index 0.2-0.3 s); tests/test_sql.py compares the two."""
    from vmdex.indexer.schema import metadata
    from vmdex.migrations.views import RUN_PAGES, head_views

    metadata.create_all(conn)
    conn.execute(metadata.tables["page_numbers"].insert(), [{"n": i} for i in range(RUN_PAGES)])
    for name, sql in head_views(conn.dialect.name).items():
        conn.execute(text(f"CREATE VIEW {name} AS {sql}"))  # as Alembic's op.execute does
    conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                         "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))")
    conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": HEAD})


def migrate(conn) -> None:
    """Alembic's upgrade to HEAD on `conn` (inside the caller's transaction)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")
