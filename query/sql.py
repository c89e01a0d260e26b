"""`vmdex sql "SELECT ..."`: one read-only statement against the index, printed as a table,
CSV or JSON.

Read-only is enforced by the database engines, not by looking at the text:
- SQLite: the file is opened with mode=ro, PRAGMA query_only is on, and an authorizer
  callback (sqlite3 set_authorizer) denies every action but reading: no INSERT/UPDATE/
  DELETE, no CREATE/DROP/ALTER, no ATTACH, no transaction control, no PRAGMA beyond a short
  list of introspection ones. Python's sqlite3 refuses a string holding several statements.
- PostgreSQL: the session defaults to read-only transactions and the statement runs in a
  READ ONLY transaction that is rolled back; it is sent as a server-side prepared statement,
  which the server refuses to build from more than one command.
"""
from __future__ import annotations

import csv
import json
import re
import sqlite3
import sys
from decimal import Decimal
from typing import IO

from indexer.errors import VmdexError

FORMATS = ("table", "csv", "json")

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


def _one_line(exc: Exception) -> str:
    msg = str(exc).strip().splitlines()
    return msg[0] if msg else type(exc).__name__


def query(location: str | None, statement: str) -> tuple[list[str], list[tuple]]:
    """Run one read-only statement; return (column names, rows)."""
    from query.conn import connect

    if not statement.strip():
        raise VmdexError("sql: empty statement")
    conn = connect(location)
    try:
        if conn.pyformat:
            return _query_pg(conn.dbapi, statement)
        return _query_sqlite(conn.dbapi, statement)
    finally:
        conn.close()


def _query_sqlite(db: sqlite3.Connection, statement: str):
    auth = _Authorizer()
    db.set_authorizer(auth)
    cur = db.cursor()
    try:
        cur.execute(statement)
        rows = cur.fetchall()
    except sqlite3.ProgrammingError as exc:
        if "one statement at a time" in str(exc):
            raise _refused("more than one statement") from None
        raise VmdexError(f"sql: {_one_line(exc)}") from None
    except sqlite3.Error as exc:
        if auth.refused:
            raise _refused(auth.refused, statement) from None
        msg = _one_line(exc)
        if "readonly" in msg or "read-only" in msg or "query_only" in msg:
            raise _refused(msg, statement) from None
        raise VmdexError(f"sql: {msg}") from None
    if auth.refused:   # denied but tolerated by SQLite (cannot happen for SQLITE_DENY)
        raise _refused(auth.refused, statement)
    cols = [d[0] for d in cur.description or ()]
    if not cols:  # a statement that returns nothing (e.g. a no-op PRAGMA) is not a query
        raise _refused("a statement that is not a query", statement)
    return cols, rows


def _query_pg(db, statement: str):
    import psycopg

    try:
        # prepare=True: the extended protocol, where the server parses exactly one command.
        cur = db.execute(statement, prepare=True)
        if cur.description is None:
            raise _refused("a statement that is not a query", statement)
        cols = [d.name for d in cur.description]
        rows = cur.fetchall()
    except psycopg.errors.ReadOnlySqlTransaction as exc:
        raise _refused(_one_line(exc), statement) from None
    except psycopg.errors.ActiveSqlTransaction as exc:
        raise _refused(_one_line(exc), statement) from None
    except psycopg.errors.SyntaxError as exc:
        if "multiple commands" in str(exc):
            raise _refused("more than one statement") from None
        raise VmdexError(f"sql: {_one_line(exc)}") from None
    except psycopg.errors.InsufficientPrivilege as exc:
        raise _refused(_one_line(exc), statement) from None
    except psycopg.ProgrammingError as exc:
        if "COPY" in str(exc):   # COPY needs the copy protocol: not a query here
            raise _refused("COPY (use SELECT)", statement) from None
        raise VmdexError(f"sql: {_one_line(exc)}") from None
    except psycopg.Error as exc:
        raise VmdexError(f"sql: {_one_line(exc)}") from None
    finally:
        try:
            db.rollback()
        except psycopg.Error:
            pass
    return cols, rows


# --- output ---------------------------------------------------------------------------
def _plain(v):
    """A JSON-able value: Decimal → int/float, bytes → hex text."""
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    return v


def _text(v, null: str) -> str:
    v = _plain(v)
    if v is None:
        return null
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def write_table(cols: list[str], rows: list[tuple], out: IO[str]) -> None:
    cells = [[_text(v, "NULL") for v in r] for r in rows]
    numeric = [all(isinstance(_plain(r[i]), (int, float)) and not isinstance(r[i], bool)
                   for r in rows if r[i] is not None) and any(r[i] is not None for r in rows)
               for i in range(len(cols))]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]

    def line(vals, align=True):
        parts = [v.rjust(w) if align and num else v.ljust(w)
                 for v, w, num in zip(vals, widths, numeric)]
        return "  ".join(parts).rstrip() + "\n"

    out.write(line(cols, align=False))
    out.write("  ".join("-" * w for w in widths) + "\n")
    for r in cells:
        out.write(line(r))


def write_csv(cols: list[str], rows: list[tuple], out: IO[str]) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow(["" if v is None else _text(v, "") for v in r])


def write_json(cols: list[str], rows: list[tuple], out: IO[str]) -> None:
    json.dump([dict(zip(cols, map(_plain, r))) for r in rows], out, indent=1)
    out.write("\n")


def output_format(fmt: str | None) -> str:
    f = (fmt or "table").lower()
    if f == "text":  # the app-wide default (crash's text) means a table here
        f = "table"
    if f not in FORMATS:
        raise VmdexError(f"unknown format {fmt!r}: choose table, csv or json")
    return f


def run_sql(location: str | None, statement: str, fmt: str | None,
            out: IO[str] = sys.stdout) -> None:
    f = output_format(fmt)
    cols, rows = query(location, statement)
    {"table": write_table, "csv": write_csv, "json": write_json}[f](cols, rows, out)
