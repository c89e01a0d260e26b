"""A read-only DBAPI connection to the index, without SQLAlchemy on the query path.

Answering a `vm` command must start fast; importing SQLAlchemy alone costs ~0.2 s, so
queries use the driver directly (sqlite3, or psycopg for PostgreSQL URLs). SQL is written
with `?` placeholders and adapted to the driver's style here.
"""
from __future__ import annotations

import os

from vmdex.indexer.errors import VmdexError

HEAD = "0010"  # must equal indexer.db.HEAD (checked by a test)


class Conn:
    def __init__(self, dbapi, pyformat: bool):
        self.dbapi = dbapi
        self.pyformat = pyformat
        self._cursors = 0

    def all(self, sql: str, params=()) -> list[tuple]:
        cur = self.dbapi.cursor()
        cur.execute(sql.replace("?", "%s") if self.pyformat else sql, tuple(params))
        rows = cur.fetchall()
        cur.close()
        return rows

    def iter(self, sql: str, params=(), size: int = 4096):
        """The rows one at a time, fetched `size` at a time: a result of millions of rows
        (the runs of one giant VMA) is never held whole (PostgreSQL: a server-side cursor)."""
        if self.pyformat:
            self._cursors += 1
            cur = self.dbapi.cursor(name=f"vmdex_iter_{self._cursors}")
            cur.itersize = size
            cur.execute(sql.replace("?", "%s"), tuple(params))
        else:
            cur = self.dbapi.cursor()
            cur.execute(sql, tuple(params))
        try:
            while rows := cur.fetchmany(size):
                yield from rows
        finally:
            cur.close()

    def one(self, sql: str, params=()):
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def close(self) -> None:
        self.dbapi.close()


def connect(location: str | None, dbapi: bool = False):
    """The index, read-only: a Conn, or for PostgreSQL on the answer path a
    query.libpq.LibpqConn (same methods, no psycopg import). `dbapi`: a Conn over the
    driver's DBAPI connection (`vmdex sql` runs statements on it)."""
    from vmdex.indexer.location import url_for

    url = url_for(location)
    if url.startswith("sqlite:///"):
        import sqlite3

        path = url.split("///", 1)[1]
        if not os.path.exists(path):
            raise VmdexError(f"no index at {path} (run `vmdex ingest` first)")
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=120)
        db.execute("PRAGMA query_only=ON")
        conn = Conn(db, False)
    elif url.startswith(("postgresql", "postgres")) and not dbapi and _libpq() is not None:
        from vmdex.query.libpq import LibpqConn

        try:
            conn = LibpqConn(_libpq(), "postgresql://" + url.split("://", 1)[1])
        except ConnectionError as exc:
            raise VmdexError(f"cannot connect to {_safe(url)}: {exc}") from None
    elif url.startswith(("postgresql", "postgres")):
        from vmdex.indexer.location import need_psycopg

        need_psycopg()
        import psycopg

        # postgresql+psycopg://user@host/db → libpq's postgresql://user@host/db
        dsn = "postgresql://" + url.split("://", 1)[1]
        try:
            # Every transaction of this session is READ ONLY (BEGIN READ ONLY by psycopg,
            # and the session default should a statement end that transaction).
            db = psycopg.connect(dsn, autocommit=False,
                                 options="-c default_transaction_read_only=on")
        except psycopg.OperationalError as exc:
            msg = str(exc).strip().splitlines()
            raise VmdexError(f"cannot connect to {_safe(url)}: "
                             f"{msg[-1] if msg else exc}") from None
        db.read_only = True
        conn = Conn(db, True)
    else:
        raise VmdexError(f"unsupported index URL: {url}")
    _ensure_schema(conn, location)
    return conn


_LIB: list = []


def _libpq():
    """libpq for the answer path (query.libpq), loaded once; None: use psycopg."""
    if not _LIB:
        from vmdex.query.libpq import load

        _LIB.append(load())
    return _LIB[0]


def _safe(url: str) -> str:
    """The URL without its password."""
    head, sep, tail = url.partition("://")
    if "@" in tail.split("/", 1)[0]:
        cred, host = tail.split("@", 1)
        tail = cred.split(":", 1)[0] + "@" + host
    return head + sep + tail


def _ensure_schema(conn: Conn, location: str | None) -> None:
    try:
        row = conn.one("SELECT version_num FROM alembic_version")
    except Exception:
        row = None
    if row is None:
        raise VmdexError(f"{location or 'the index'} is not a vmdex index (no schema version)")
    if row[0] != HEAD:
        # An index written by an older vmdex: bring it up to date once (rare, so the
        # SQLAlchemy/Alembic import is paid only here).
        from vmdex.indexer.db import make_engine, upgrade

        engine = make_engine(location)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
