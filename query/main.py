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
        sys.stderr.write(f"vmdex: internal error: {type(exc).__name__}: {exc} "
                         "(set VMDEX_DEBUG=1 for a traceback)\n")
        code = 3
    sys.exit(code)


if __name__ == "__main__":
    main()
