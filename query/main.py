"""`vmdex` entry point: every failure is one line on stderr and a non-zero exit.

Exit status: 0 ok, 1 crash-level command error, 2 vmdex error (bad input, no index),
3 internal error, 130 interrupted (docs/errors.md). `vm`/`foreach` lines are answered
without importing the Typer app, to keep each answer's start-up short.
"""
from __future__ import annotations

import os
import sys

from indexer.errors import VmdexError


def _run() -> int:
    from query.answer import answer, query_words

    fast = query_words(sys.argv[1:])
    if fast is not None:
        return answer(*fast)
    from query.cli import run_app

    return run_app()


def main() -> None:
    try:
        code = _run()
    except VmdexError as exc:
        sys.stderr.write(f"vmdex: {exc}\n")
        code = 2
    except KeyboardInterrupt:
        sys.stderr.write("vmdex: interrupted\n")
        code = 130
    except BrokenPipeError:
        code = 141
    except Exception as exc:
        if os.environ.get("VMDEX_DEBUG"):
            raise
        if _is_database_error(exc):   # a damaged or unreachable index: bad input, not a bug
            sys.stderr.write(f"vmdex: index error: {_one_line(getattr(exc, 'orig', None) or exc)}"
                             "\n")
            code = 2
        else:
            sys.stderr.write(f"vmdex: internal error: {type(exc).__name__}: {_one_line(exc)} "
                             "(set VMDEX_DEBUG=1 for a traceback)\n")
            code = 3
    sys.exit(code)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _is_database_error(exc: BaseException) -> bool:
    """sqlite3 / psycopg / SQLAlchemy errors (checked by module: none is imported here)."""
    mod = type(exc).__module__ or ""
    return mod.split(".")[0] in ("sqlite3", "psycopg", "sqlalchemy") and \
        type(exc).__name__.endswith("Error")


if __name__ == "__main__":
    main()
