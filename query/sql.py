"""`vmdex sql "SELECT ..."`: one read-only statement against the index, printed as a table,
CSV or JSON as the rows arrive.

Confinement is the database engines' job, not a look at the text:
- SQLite: the file is opened with mode=ro, PRAGMA query_only is on, and an authorizer
  callback (sqlite3 set_authorizer) denies every action but reading: no INSERT/UPDATE/
  DELETE, no CREATE/DROP/ALTER, no ATTACH, no transaction control, no PRAGMA beyond a short
  list of introspection ones. Python's sqlite3 refuses a string holding several statements.
- PostgreSQL: the session's role must be a plain reader (query.pgreader: no superuser, no
  server-file/program/signal role, no write right on vmdex's tables), checked before the
  statement is sent. The session defaults to read-only transactions and the statement runs
  in a READ ONLY transaction that is rolled back, through the extended protocol, where the
  server parses exactly one command.

Bounded: a statement runs at most `timeout` seconds (SQLite: a progress handler; PostgreSQL:
statement_timeout, and a cancel request from the client should the statement have undone
it), its text is at most MAX_STATEMENT_BYTES, and rows are streamed, never all held.
"""
from __future__ import annotations

import contextlib
import re
import sqlite3
import sys
import threading
import time
from typing import IO, Iterator

from vmdex.indexer.errors import VmdexError
from vmdex.query.render.tables import FORMATS, WRITERS

DEFAULT_TIMEOUT = 60.0
MAX_STATEMENT_BYTES = 1 << 20
FETCH_ROWS = 500           # rows fetched from the engine at a time
_PROGRESS_STEPS = 10_000   # SQLite VM instructions between two looks at the clock

# SQLite authorizer action codes → what a refusal message calls them.
_ACTIONS = {
    getattr(sqlite3, f"SQLITE_{n}"): n.replace("_", " ")
    for n in ("CREATE_INDEX", "CREATE_TABLE", "CREATE_TEMP_INDEX", "CREATE_TEMP_TABLE",
              "CREATE_TEMP_TRIGGER", "CREATE_TEMP_VIEW", "CREATE_TRIGGER", "CREATE_VIEW",
              "DELETE", "DROP_INDEX", "DROP_TABLE", "DROP_TEMP_INDEX", "DROP_TEMP_TABLE",
              "DROP_TEMP_TRIGGER", "DROP_TEMP_VIEW", "DROP_TRIGGER", "DROP_VIEW", "INSERT",
              "PRAGMA", "READ", "SELECT", "TRANSACTION", "UPDATE", "ATTACH", "DETACH",
              "ALTER_TABLE", "REINDEX", "ANALYZE", "CREATE_VTABLE", "DROP_VTABLE", "FUNCTION",
              "SAVEPOINT", "RECURSIVE")
    if hasattr(sqlite3, f"SQLITE_{n}")
}
_READS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
          getattr(sqlite3, "SQLITE_RECURSIVE", 33)}
# PRAGMAs that only describe the schema (their argument, if any, names a table or index).
_READ_PRAGMAS = {"table_info", "table_xinfo", "table_list", "index_list", "index_info",
                 "index_xinfo", "foreign_key_list", "database_list", "collation_list",
                 "function_list", "module_list", "pragma_list", "compile_options"}
_SCHEMA_TABLES = {"sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"}
_DENIED_FUNCTIONS = {"load_extension"}


class _Authorizer:
    """Allow reads only; remember the first refusal to explain it."""

    def __init__(self):
        self.refused: str | None = None

    def __call__(self, action, arg1, arg2, db, source):
        if action in _READS:
            if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
                return self._deny(f"function {arg2}()")
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in _READ_PRAGMAS:
            return sqlite3.SQLITE_OK
        # Reading a pragma table-valued function (SELECT * FROM pragma_table_info('t')) makes
        # SQLite check UPDATE on the schema table's columns while it sets the function up; a
        # real UPDATE of sqlite_master is still refused by SQLite itself (no writable_schema,
        # which the PRAGMA rule above refuses), by query_only, and by the read-only open.
        if (action == sqlite3.SQLITE_UPDATE and (arg1 or "").lower() in _SCHEMA_TABLES
                and source is None):
            return sqlite3.SQLITE_OK
        what = _ACTIONS.get(action, f"action {action}")
        if action == sqlite3.SQLITE_PRAGMA:
            what += f" {arg1}" + (f"={arg2}" if arg2 is not None else "")
        elif action == sqlite3.SQLITE_ATTACH:
            what += f" {arg1!r}" if arg1 else ""
        elif action == sqlite3.SQLITE_ALTER_TABLE:
            what += f" {arg2}" if arg2 else ""
        elif arg1:
            what += f" {arg1}"
        return self._deny(what)

    def _deny(self, what: str) -> int:
        if self.refused is None:
            self.refused = what
        return sqlite3.SQLITE_DENY


def _refused(what: str, statement: str = "") -> VmdexError:
    """One line: the statement's verb (for the reader only), then what the engine denied."""
    m = re.match(r"\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*([A-Za-z]+)", statement, re.S)
    verb = f"{m.group(1).upper()}: " if m else ""
    return VmdexError(f"refused: {verb}vmdex sql is read-only, one query at a time "
                      f"(denied: {what})")


def _timed_out(timeout: float) -> VmdexError:
    return VmdexError(f"sql: statement stopped after {timeout:g} s "
                      "(vmdex sql --timeout SECONDS)")


def _one_line(exc: Exception) -> str:
    msg = str(exc).strip().splitlines()
    return msg[0] if msg else type(exc).__name__


@contextlib.contextmanager
def open_query(location: str | None, statement: str,
               timeout: float = DEFAULT_TIMEOUT) -> Iterator[tuple[list[str], Iterator[tuple]]]:
    """Run one read-only statement; yield (column names, an iterator over its rows).
    timeout 0 means no time bound."""
    from vmdex.query.conn import connect

    if not statement.strip():
        raise VmdexError("sql: empty statement")
    if len(statement.encode()) > MAX_STATEMENT_BYTES:
        raise VmdexError(f"sql: statement longer than {MAX_STATEMENT_BYTES} bytes")
    if timeout < 0:
        raise VmdexError("sql: --timeout must be 0 (none) or more seconds")
    conn = connect(location, dbapi=True)
    try:
        run = _PgQuery if conn.pyformat else _SqliteQuery
        q = run(conn.dbapi, statement, timeout)
        try:
            yield q.columns, q.rows()
        finally:
            q.close()
    finally:
        conn.close()


def query(location: str | None, statement: str,
          timeout: float = DEFAULT_TIMEOUT) -> tuple[list[str], list[tuple]]:
    """Run one read-only statement; return (column names, all rows)."""
    with open_query(location, statement, timeout) as (cols, rows):
        return cols, list(rows)


class _SqliteQuery:
    def __init__(self, db: sqlite3.Connection, statement: str, timeout: float):
        self.statement, self.timeout = statement, timeout
        self.auth = _Authorizer()
        db.set_authorizer(self.auth)
        if timeout:
            deadline = time.monotonic() + timeout
            db.set_progress_handler(lambda: time.monotonic() > deadline, _PROGRESS_STEPS)
        self.db = db
        self.cur = db.cursor()
        try:
            self.cur.execute(statement)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        if self.auth.refused:   # denied but tolerated by SQLite (cannot happen for SQLITE_DENY)
            raise _refused(self.auth.refused, statement)
        self.columns = [d[0] for d in self.cur.description or ()]
        if not self.columns:  # a statement that returns nothing (e.g. a no-op PRAGMA)
            raise _refused("a statement that is not a query", statement)

    def rows(self) -> Iterator[tuple]:
        while True:
            try:
                chunk = self.cur.fetchmany(FETCH_ROWS)
            except sqlite3.Error as exc:
                raise self._error(exc) from None
            if not chunk:
                return
            yield from chunk

    def _error(self, exc: sqlite3.Error) -> VmdexError:
        msg = _one_line(exc)
        if isinstance(exc, sqlite3.ProgrammingError) and "one statement at a time" in msg:
            return _refused("more than one statement")
        if self.auth.refused:
            return _refused(self.auth.refused, self.statement)
        if isinstance(exc, sqlite3.OperationalError) and msg == "interrupted":
            return _timed_out(self.timeout)
        if "readonly" in msg or "read-only" in msg or "query_only" in msg:
            return _refused(msg, self.statement)
        return VmdexError(f"sql: {msg}")

    def close(self) -> None:
        self.db.set_progress_handler(None, 0)


class _PgQuery:
    def __init__(self, db, statement: str, timeout: float):
        self.db, self.statement, self.timeout = db, statement, timeout
        self.watchdog = self.stream = None
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        from vmdex.query.pgreader import unfit_reasons

        cur = self.db.cursor()
        role = cur.execute("SELECT current_user").fetchone()[0]
        reasons = unfit_reasons(cur, role)
        if reasons:
            raise VmdexError(
                f"refused: role {role} reaches beyond the index ({'; '.join(reasons)}); "
                "vmdex sql runs only under a plain reader role: make one with "
                "`vmdex --db ADMIN_URL grant-reader NAME` (docs/schema.md)")
        if self.timeout:
            cur.execute("SELECT set_config('statement_timeout', %s, true)",
                        (f"{int(self.timeout * 1000)}ms",))
            # Should the statement itself reset statement_timeout, the client still cancels.
            cancel = getattr(self.db, "cancel_safe", None) or self.db.cancel
            self.watchdog = threading.Timer(self.timeout + 2.0, cancel)
            self.watchdog.daemon = True
            self.watchdog.start()
        self.cur = self.db.cursor()
        self.stream = self.cur.stream(self.statement)  # the extended protocol: one command only
        self.first = self._next()
        if self.cur.description is None:
            raise _refused("a statement that is not a query", self.statement)
        self.columns = [d.name for d in self.cur.description]

    def _next(self):
        import psycopg

        try:
            return next(self.stream, None)
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def rows(self) -> Iterator[tuple]:
        row = self.first
        while row is not None:
            yield row
            row = self._next()

    def _error(self, exc) -> VmdexError:
        import psycopg

        msg = _one_line(exc)
        if isinstance(exc, psycopg.errors.QueryCanceled):
            return _timed_out(self.timeout)
        if isinstance(exc, (psycopg.errors.ReadOnlySqlTransaction,
                            psycopg.errors.ActiveSqlTransaction,
                            psycopg.errors.InsufficientPrivilege)):
            return _refused(msg, self.statement)
        if isinstance(exc, psycopg.errors.SyntaxError) and "multiple commands" in msg:
            return _refused("more than one statement")
        if isinstance(exc, psycopg.ProgrammingError) and "didn't produce a result" in msg:
            return _refused("a statement that is not a query", self.statement)
        if isinstance(exc, psycopg.ProgrammingError) and "COPY" in msg:
            return _refused("COPY (use SELECT)", self.statement)   # needs the copy protocol
        return VmdexError(f"sql: {msg}")

    def close(self) -> None:
        import psycopg

        if self.watchdog is not None:
            self.watchdog.cancel()
        try:
            if self.stream is not None:
                self.stream.close()
        except psycopg.Error:
            pass
        try:
            self.db.rollback()
        except psycopg.Error:
            pass


def output_format(fmt: str | None) -> str:
    f = (fmt or "table").lower()
    if f == "text":  # the app-wide default (crash's text) means a table here
        f = "table"
    if f not in FORMATS:
        raise VmdexError(f"unknown format {fmt!r}: choose table, csv or json")
    return f


def run_sql(location: str | None, statement: str, fmt: str | None,
            timeout: float | None = None, out: IO[str] = sys.stdout) -> None:
    f = output_format(fmt)
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    with open_query(location, statement, timeout) as (cols, rows):
        WRITERS[f](cols, rows, out)
