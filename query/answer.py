"""Answering `vm` / `foreach` without the Typer app: the hot path stays import-light.

`vmdex [--db X] [--dump N] [--format F] vm|foreach ...` is recognised here and run
directly; anything else (ingest, sql, --help, ...) goes to the Typer app in query.cli.
"""
from __future__ import annotations

import sys

from indexer.errors import VmdexError

_GLOBAL = ("--db", "--dump", "--format")


def query_words(argv: list[str]):
    """(runner, words, db, dump, fmt) for a vm/foreach command line, else None."""
    opts = {"--db": None, "--dump": None, "--format": "text"}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("vm", "foreach"):
            if a == "vm":
                from query.vm import run_vm as runner
            else:
                from query.foreach import run_foreach as runner
            return runner, argv[i + 1:], opts["--db"], opts["--dump"], opts["--format"]
        key, eq, val = a.partition("=")
        if key not in _GLOBAL:
            return None
        if not eq:
            if i + 1 >= len(argv):
                return None
            i += 1
            val = argv[i]
        opts[key] = val
        i += 1
    return None


def answer(runner, argv: list[str], db: str | None, dump: str | None, fmt: str) -> int:
    """Run one vm/foreach command against the index; returns the exit status."""
    from query.conn import connect
    from query.index import DumpIndex
    from query.vm import Out

    if fmt not in ("text", "json", "csv"):
        raise VmdexError(f"--format must be text, json or csv, not {fmt!r}")
    out = Out(sys.stdout, sys.stderr)
    opened: list[DumpIndex] = []

    def open_index() -> DumpIndex:
        """The index, opened on first use only (usage errors never touch it), once."""
        if not opened:
            opened.append(DumpIndex(connect(db), dump))
        return opened[0]

    try:
        return runner(open_index, argv, out, fmt)
    finally:
        out.flush()
        for idx in opened:
            idx.c.close()
