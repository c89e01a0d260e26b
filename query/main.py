"""`vmdex` entry point: every failure is one line on stderr and a non-zero exit.

Exit status: 0 ok, 1 crash-level command error, 2 vmdex error (bad input, no index),
3 internal error, 130 interrupted (docs/errors.md). `vm`/`foreach` lines, and the shell
(`vmdex` with no command), and plain `ingest` lines are run without importing the Typer
app, to keep each start-up short.
"""
from __future__ import annotations

import os
import sys


def _run() -> int:
    from vmdex.query.answer import answer, query_words, shell_words

    fast = query_words(sys.argv[1:])
    if fast is not None:
        return answer(*fast)
    shell = shell_words(sys.argv[1:])
    if shell is not None:
        from vmdex.query.shell import run_shell

        return run_shell(*shell)
    from vmdex.query.ingest_cli import ingest_command, ingest_words

    ingest = ingest_words(sys.argv[1:])
    if ingest is not None:
        ingest_command(**ingest)
        return 0
    from vmdex.query.cli import run_app

    return run_app()


def main() -> None:
    try:
        code = _run()
    except KeyboardInterrupt:
        sys.stderr.write("vmdex: interrupted\n")
        code = 130
    except BrokenPipeError:
        code = 141
    except Exception as exc:
        from vmdex.indexer.errors import VmdexError
        from vmdex.query.answer import failure

        if os.environ.get("VMDEX_DEBUG") and not isinstance(exc, VmdexError):
            raise
        line, code = failure(exc)
        sys.stderr.write(line)
    sys.exit(code)


if __name__ == "__main__":
    main()
