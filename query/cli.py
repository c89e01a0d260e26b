"""The `vmdex` command line: a thin skin over the ingest and the index.

    vmdex [--db URL_OR_PATH] ingest [--vmlinux VMLINUX] [--name NAME] DUMP|DIR...
    vmdex [--db ...] [--dump NAME] vm ARGS...
    vmdex [--db ...] [--dump NAME] foreach FOREACH-ARGS... vm ARGS...

The entry point is query.main: `vm`/`foreach` lines are answered there without importing
Typer; everything else comes here. Imports are lazy: answering `vm` must not pay for the
ingest machinery.
"""
from __future__ import annotations

from typing import List, Optional

import typer

from indexer.errors import VmdexError
from query.answer import answer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Index Linux crash dumps once; answer crash's `vm` from the index.")
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True,
                "help_option_names": []}


class State:
    db: Optional[str] = None
    dump: Optional[str] = None
    fmt: str = "text"


@app.callback()
def main_options(
    db: Optional[str] = typer.Option(None, "--db", help="Index: SQLite path or SQLAlchemy URL "
                                     "(default $VMDEX_DB or ./vmdex.db)."),
    dump: Optional[str] = typer.Option(None, "--dump", help="Dump name (needed when the index "
                                       "holds several)."),
    fmt: str = typer.Option("text", "--format", help="text (crash's output), json or csv."),
):
    State.db, State.dump, State.fmt = db, dump, fmt


@app.command()
def ingest(
    dumps: List[str] = typer.Argument(..., help="Dump file(s) (ELF, kdump-compressed or "
                                      "flattened), or /var/crash-style directories."),
    vmlinux: Optional[str] = typer.Option(None, "--vmlinux", help="The kernel's vmlinux with "
                                          "DWARF (default: the index's copy of the dump's "
                                          "kernel, $VMDEX_DEBUG_DIRS, /usr/lib/debug, "
                                          "$DEBUGINFOD_URLS)."),
    name: Optional[str] = typer.Option(None, "--name", help="Name in the index (default: the "
                                       "dump's file name; in a directory, the directory's)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Ingest up to N dumps at once, "
                             "one process per dump."),
):
    """Read a dump once and index every task's address space."""
    from query.ingest_cli import collect_dumps, run_ingest, run_ingest_each

    if name and len(dumps) > 1:
        raise VmdexError("--name applies to a single dump")
    todo, walked = collect_dumps(State.db, dumps, name)
    if jobs > 1 and len(todo) > 1:
        from query.ingest_cli import run_ingest_many

        run_ingest_many(State.db, todo, vmlinux, jobs)
        return
    if walked:   # a crash directory: one bad dump must not keep the others out
        run_ingest_each(State.db, todo, vmlinux)
        return
    for d, n in todo:
        run_ingest(State.db, d, vmlinux, n)


@app.command()
def sql(
    statement: str = typer.Argument(..., help="One read-only SQL statement (SELECT ...)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="table (default), csv or json."),
):
    """Run one read-only SQL query on the index (tables and v_* views: docs/schema.md)."""
    from query.sql import run_sql

    run_sql(State.db, statement, fmt or State.fmt)


@app.command()
def dumps(
    fmt: Optional[str] = typer.Option(None, "--format", help="table (default), csv or json."),
):
    """List the dumps in the index."""
    from query.manage import run_dumps

    run_dumps(State.db, fmt or State.fmt)


@app.command()
def rm(name: str = typer.Argument(..., help="Name of the dump to remove.")):
    """Remove one dump from the index."""
    from query.manage import run_rm

    run_rm(State.db, name)


def _answer(runner, argv: list[str]) -> None:
    raise typer.Exit(answer(runner, argv, State.db, State.dump, State.fmt))


@app.command(context_settings=PASS_THROUGH)
def vm(ctx: typer.Context):
    """crash's `vm` with crash's own arguments, answered from the index."""
    from query.vm import run_vm

    _answer(run_vm, list(ctx.args))


@app.command(context_settings=PASS_THROUGH)
def foreach(ctx: typer.Context):
    """crash's `foreach TASK-SELECTORS... vm VM-ARGS...`, answered from the index."""
    from query.foreach import run_foreach

    _answer(run_foreach, list(ctx.args))


def run_app() -> int:
    """The Typer app for everything but the vm/foreach hot path (see query.main)."""
    try:
        rc = app(standalone_mode=False)  # returns the code of a typer.Exit raised inside
        return rc if isinstance(rc, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return 1
    except VmdexError:
        raise
    except Exception as exc:
        show = getattr(exc, "show", None)  # usage errors from the command-line parser
        if show is not None and hasattr(exc, "exit_code"):
            show()
            return exc.exit_code
        raise


def main() -> None:
    from query.main import main as entry

    entry()
