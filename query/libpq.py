"""PostgreSQL for the answer path through libpq itself (ctypes), not psycopg.

Importing psycopg costs ~0.4 s (it loads its C extension's metadata and dozens of modules),
more than the whole of a `vm -R` answer. The answer path only runs vmdex's own SELECTs with
integer and text parameters, so it talks to libpq directly: the system's libpq.so.5, else
the copy psycopg[binary] ships (found without importing psycopg). `vmdex sql` and the
writers keep psycopg. Values come back as text and are converted by their column's type.
"""
from __future__ import annotations

import ctypes
import glob
import os

from vmdex.indexer.errors import VmdexError

CONNECTION_OK = 0
PGRES_COMMAND_OK, PGRES_TUPLES_OK = 1, 2
BATCH = 4096            # rows fetched at a time by iter()

_c = ctypes.c_void_p
_SIGNATURES = {
    "PQconnectdb": (_c, [ctypes.c_char_p]),
    "PQstatus": (ctypes.c_int, [_c]),
    "PQerrorMessage": (ctypes.c_char_p, [_c]),
    "PQfinish": (None, [_c]),
    "PQexecParams": (_c, [_c, ctypes.c_char_p, ctypes.c_int, _c,
                          ctypes.POINTER(ctypes.c_char_p), _c, _c, ctypes.c_int]),
    "PQresultStatus": (ctypes.c_int, [_c]),
    "PQresultErrorMessage": (ctypes.c_char_p, [_c]),
    "PQntuples": (ctypes.c_int, [_c]),
    "PQnfields": (ctypes.c_int, [_c]),
    "PQftype": (ctypes.c_uint, [_c, ctypes.c_int]),
    "PQgetvalue": (ctypes.c_char_p, [_c, ctypes.c_int, ctypes.c_int]),
    "PQgetisnull": (ctypes.c_int, [_c, ctypes.c_int, ctypes.c_int]),
    "PQclear": (None, [_c]),
}


def _bytea(v: bytes) -> bytes:
    return bytes.fromhex(v[2:].decode()) if v.startswith(b"\\x") else v


def _decimal(v: bytes):
    from decimal import Decimal      # rare on the answer path: imported when met
    return Decimal(v.decode())


# type OID -> conversion of the text form (others stay str)
_CONVERT = {20: int, 21: int, 23: int, 26: int, 16: lambda v: v == b"t",
            700: float, 701: float, 1700: lambda v: int(v) if b"." not in v else _decimal(v),
            17: _bytea}


def load() -> ctypes.CDLL | None:
    """libpq, or None when neither the system's nor psycopg[binary]'s copy is there."""
    for name in _candidates():
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        for fn, (res, args) in _SIGNATURES.items():
            f = getattr(lib, fn)
            f.restype, f.argtypes = res, args
        return lib
    return None


def _candidates():
    yield "libpq.so.5"                  # the system's (Debian: libpq5)
    import importlib.util

    spec = importlib.util.find_spec("psycopg_binary")      # finds, does not import
    for where in (spec.submodule_search_locations or []) if spec else []:
        yield from sorted(glob.glob(os.path.join(where + ".libs", "libpq*.so*")))


class LibpqConn:
    """The answer path's Conn (query.conn) over one libpq connection whose every
    transaction is read-only (the session default, set at connect)."""

    pyformat = True         # PostgreSQL (query.index picks its SQL dialect by this)

    def __init__(self, lib: ctypes.CDLL, dsn: str):
        self.lib = lib
        sep = "&" if "?" in dsn else "?"
        ro = "options=-c%20default_transaction_read_only%3Don"
        self.pg = lib.PQconnectdb(f"{dsn}{sep}{ro}".encode())
        if lib.PQstatus(self.pg) != CONNECTION_OK:
            msg = (lib.PQerrorMessage(self.pg) or b"").decode(errors="replace").strip()
            lib.PQfinish(self.pg)
            self.pg = None
            raise ConnectionError(" ".join(line.strip() for line in msg.splitlines())
                                  or "connection failed")
        self._cursors = 0
        self._open = 0          # iter()s in progress: the first one owns the transaction

    def _exec(self, sql: str, params=()):
        lib = self.lib
        n = 0
        out = []
        for ch in sql.split("?"):          # vmdex's SQL has no '?' but its placeholders
            out.append(ch)
            n += 1
            out.append(f"${n}")
        text = "".join(out[:-1])
        values = (ctypes.c_char_p * max(1, len(params)))(
            *[None if p is None else str(int(p) if isinstance(p, bool) else p).encode()
              for p in params])
        res = lib.PQexecParams(self.pg, text.encode(), len(params), None, values, None,
                               None, 0)
        status = lib.PQresultStatus(res)
        if status not in (PGRES_COMMAND_OK, PGRES_TUPLES_OK):
            msg = (lib.PQresultErrorMessage(res) or lib.PQerrorMessage(self.pg) or b"")
            lib.PQclear(res)
            raise VmdexError(f"index query failed: {msg.decode(errors='replace').strip()}")
        return res

    def _rows(self, res) -> list[tuple]:
        lib = self.lib
        try:
            nrows, ncols = lib.PQntuples(res), lib.PQnfields(res)
            conv = [_CONVERT.get(lib.PQftype(res, c)) for c in range(ncols)]
            get, null = lib.PQgetvalue, lib.PQgetisnull
            rows = []
            for r in range(nrows):
                row = []
                for c, f in enumerate(conv):
                    v = get(res, r, c)
                    if not v and null(res, r, c):
                        row.append(None)
                    else:
                        row.append(f(v) if f else v.decode())
                rows.append(tuple(row))
            return rows
        finally:
            lib.PQclear(res)

    def all(self, sql: str, params=()) -> list[tuple]:
        return self._rows(self._exec(sql, params))

    def one(self, sql: str, params=()):
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def iter(self, sql: str, params=(), size: int = BATCH):
        """The rows a batch at a time through a cursor: a result of millions of rows is
        never held whole."""
        self._cursors += 1
        name = f"vmdex_iter_{self._cursors}"
        if not self._open:
            self.lib.PQclear(self._exec("BEGIN READ ONLY"))
        self._open += 1
        try:
            self.lib.PQclear(self._exec(f"DECLARE {name} NO SCROLL CURSOR FOR {sql}", params))
            while rows := self._rows(self._exec(f"FETCH FORWARD {int(size)} FROM {name}")):
                yield from rows
        finally:
            self._open -= 1
            self.lib.PQclear(self._exec("ROLLBACK" if not self._open else f"CLOSE {name}"))

    def close(self) -> None:
        if self.pg:
            self.lib.PQfinish(self.pg)
            self.pg = None
