"""Answering `vm` / `foreach` without the Typer app: the hot path stays import-light.

`vmdex [--db X] [--dump N] [--format F] vm|foreach ...` is recognised here and run
directly, as is the shell (`vmdex [options]` alone or `vmdex [options] shell`, answered by
query.shell through the same answer()); anything else (ingest, sql, --help, ...) goes to
the Typer app in query.cli. failure() is the one line every uncaught error becomes.
"""
from __future__ import annotations

import sys

from vmdex.indexer.errors import VmdexError

_GLOBAL = ("--db", "--dump", "--format")


def _global_options(argv: list[str]):
    """(db, dump, fmt, the words after the global options), or None for a line whose
    global options are not plain (the Typer app then says what is wrong)."""
    opts = {"--db": None, "--dump": None, "--format": "text"}
    i = 0
    while i < len(argv):
        a = argv[i]
        key, eq, val = a.partition("=")
        if key not in _GLOBAL:
            break
        if not eq:
            if i + 1 >= len(argv):
                return None
            i += 1
            val = argv[i]
        opts[key] = val
        i += 1
    return opts["--db"], opts["--dump"], opts["--format"], argv[i:]


def query_words(argv: list[str]):
    """(runner, words, db, dump, fmt) for a vm/foreach command line, else None."""
    parsed = _global_options(argv)
    if parsed is None or not parsed[3] or parsed[3][0] not in ("vm", "foreach", "smaps", "ps",
                                                               "sys"):
        return None
    db, dump, fmt, rest = parsed
    if rest[0] == "sys":
        from vmdex.query.sys import run_sys as runner
    elif rest[0] == "smaps":
        from vmdex.query.smaps import run_smaps as runner
    elif rest[0] == "ps":
        from vmdex.query.ps import run_ps as runner
    elif rest[0] == "vm":
        from vmdex.query.vm import run_vm as runner
    else:
        from vmdex.query.foreach import run_foreach as runner
    return runner, rest[1:], db, dump, fmt


def shell_words(argv: list[str]):
    """(db, dump, fmt) for `vmdex [options]` alone or `vmdex [options] shell`, else None."""
    parsed = _global_options(argv)
    if parsed is None or parsed[3] not in ([], ["shell"]):
        return None
    return parsed[:3]


def answer(runner, argv: list[str], db: str | None, dump: str | None, fmt: str, *,
           index=None, stdout=None) -> int:
    """Run one vm/foreach command against the index; returns the exit status.

    The shell passes its open `index` (which holds its `set` context) and, for `| cmd` and
    `> file`, the `stdout` to write to; stderr stays the terminal, as in crash."""
    from vmdex.query.conn import connect
    from vmdex.query.index import DumpIndex
    from vmdex.query.vm import Out

    check_format(fmt)
    out = Out(sys.stdout if stdout is None else stdout, sys.stderr)
    opened: list[DumpIndex] = []

    def open_index() -> DumpIndex:
        """The index, opened on first use only (usage errors never touch it), once."""
        if index is not None:
            return index
        if not opened:
            opened.append(DumpIndex(connect(db), dump))
        return opened[0]

    try:
        return runner(open_index, argv, out, fmt)
    finally:
        out.flush()
        for idx in opened:
            idx.c.close()


def check_format(fmt: str) -> None:
    if fmt not in ("text", "json", "csv"):
        raise VmdexError(f"--format must be text, json or csv, not {fmt!r}")


def failure(exc: BaseException) -> tuple[str, int]:
    """The one line (for stderr) and exit status an uncaught error becomes (docs/errors.md):
    2 for vmdex's own errors and a damaged or unreachable index, 3 for a bug."""
    if isinstance(exc, VmdexError):
        return f"vmdex: {exc}\n", 2
    if _is_database_error(exc):   # a damaged or unreachable index: bad input, not a bug
        return f"vmdex: index error: {_one_line(getattr(exc, 'orig', None) or exc)}\n", 2
    return (f"vmdex: internal error: {type(exc).__name__}: {_one_line(exc)} "
            "(set VMDEX_DEBUG=1 for a traceback)\n", 3)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _is_database_error(exc: BaseException) -> bool:
    """sqlite3 / psycopg / SQLAlchemy errors (checked by module: none is imported here)."""
    mod = type(exc).__module__ or ""
    return mod.split(".")[0] in ("sqlite3", "psycopg", "sqlalchemy") and \
        type(exc).__name__.endswith("Error")
