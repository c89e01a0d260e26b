"""The `vmdex` command line: a thin skin over the ingest and the index.

    vmdex [--db URL_OR_PATH] ingest [--vmlinux VMLINUX | --vmlinux-from-dump | --vmlinux-required] [--name NAME] DUMP|DIR...
    vmdex [--db ...] [--dump NAME] vm ARGS...
    vmdex [--db ...] [--dump NAME] foreach FOREACH-ARGS... vm ARGS...
    vmdex [--db ...] [--dump NAME] [shell]        # crash's prompt (query.shell)

The entry point is query.main: `vm`/`foreach` lines and the shell are answered there
without importing Typer; everything else comes here. Imports are lazy: answering `vm`
must not pay for the ingest machinery.
"""
from __future__ import annotations

from typing import List, Optional

import typer

from vmdex.indexer.errors import VmdexError
from vmdex.query.answer import answer

app = typer.Typer(add_completion=False,
                  help="Index Linux crash dumps once; answer crash's `vm` from the index. "
                  "Without a command: a `vmdex>` prompt (see `shell`).")
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True,
                "help_option_names": []}


class State:
    db: Optional[str] = None
    dump: Optional[str] = None
    fmt: str = "text"


@app.callback(invoke_without_command=True)
def main_options(
    ctx: typer.Context,
    db: Optional[str] = typer.Option(None, "--db", help="Index: SQLite path or SQLAlchemy URL "
                                     "(default $VMDEX_DB or ./vmdex.db)."),
    dump: Optional[str] = typer.Option(None, "--dump", help="Dump name (needed when the index "
                                       "holds several)."),
    fmt: str = typer.Option("text", "--format", help="text (crash's output), json or csv."),
):
    State.db, State.dump, State.fmt = db, dump, fmt
    if ctx.invoked_subcommand is None:
        _shell()


def _shell() -> None:
    from vmdex.query.shell import run_shell

    raise typer.Exit(run_shell(State.db, State.dump, State.fmt))


@app.command()
def ingest(
    dumps: List[str] = typer.Argument(..., help="Dump file(s) (ELF, kdump-compressed or "
                                      "flattened; the files of a makedumpfile --split set "
                                      "make one dump), or /var/crash-style directories."),
    vmlinux: Optional[str] = typer.Option(None, "--vmlinux", help="The kernel's vmlinux with "
                                          "DWARF (default: the index's copy of the dump's "
                                          "kernel, $VMDEX_DEBUG_DIRS, /usr/lib/debug, "
                                          "$DEBUGINFOD_URLS)."),
    name: Optional[str] = typer.Option(None, "--name", help="Name in the index (default: the "
                                       "dump's file name; in a directory, the directory's)."),
    from_dump: bool = typer.Option(False, "--vmlinux-from-dump", help="Read the kernel's "
                                   "types and symbols from the dump itself (its BTF and "
                                   "kallsyms), not from any vmlinux: what vmdex does anyway "
                                   "when no vmlinux is found."),
    required: bool = typer.Option(False, "--vmlinux-required", help="Never read the kernel "
                                  "from the dump: refuse when no vmlinux is found."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Ingest up to N dumps at once, "
                             "one process per dump."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", min=1, help="Walk each "
                                          "dump's page tables in N processes (default: one "
                                          "per core, up to 4, shared by --jobs)."),
    to: Optional[str] = typer.Option(None, "--to", metavar="DEST", help="Write each dump "
                                     "to the warehouse folder DEST as Parquet "
                                     "(<table>/dump=<name>/, as `export` does, ids from "
                                     "names) instead of into an index."),
):
    """Read a dump once and index every task's address space."""
    from vmdex.query.ingest_cli import ingest_command

    ingest_command(State.db, dumps, vmlinux, name, from_dump, required, jobs, workers, to)


@app.command()
def sql(
    statement: str = typer.Argument(..., help="One read-only SQL statement (SELECT ...), "
                                    "or - to read it from stdin."),
    fmt: Optional[str] = typer.Option(None, "--format", help="table (default), csv or json."),
    timeout: Optional[float] = typer.Option(None, "--timeout", metavar="SECONDS",
                                            help="Stop the statement after SECONDS (default "
                                            "60; 0: no limit)."),
):
    """Run one read-only SQL query on the index (tables and v_* views: docs/schema.md)."""
    import sys

    from vmdex.query.sql import MAX_STATEMENT_BYTES, run_sql

    if statement == "-":   # read no more than the bound: a longer one is refused anyway
        statement = sys.stdin.read(MAX_STATEMENT_BYTES + 1)
    run_sql(State.db, statement, fmt or State.fmt, timeout)  # None: query.sql's default


@app.command("grant-reader")
def grant_reader(
    role: str = typer.Argument(..., help="Login role to create or grant (PostgreSQL)."),
    password: Optional[str] = typer.Option(None, "--password", help="Set its password."),
):
    """Make ROLE a reader of this PostgreSQL index, the role `vmdex sql` runs under."""
    from vmdex.query.manage import run_grant_reader

    run_grant_reader(State.db, role, password)


@app.command()
def dumps(
    fmt: Optional[str] = typer.Option(None, "--format", help="table (default), csv or json."),
):
    """List the dumps in the index."""
    from vmdex.query.manage import run_dumps

    run_dumps(State.db, fmt or State.fmt)


@app.command()
def export(
    dest: str = typer.Argument(..., help="Folder to write: <table>/dump=<name>/*.parquet "
                               "and views.duckdb.sql, views.spark.sql."),
    dump_names: Optional[List[str]] = typer.Option(None, "--dump-name", help="Only this "
                                                   "dump (repeat for more; default: all)."),
    force: bool = typer.Option(False, "--force", help="Replace DEST if it is not empty."),
):
    """Write the index as Parquet (Hive-style partitions by dump) for DuckDB, Spark, Trino."""
    from vmdex.query.export import run_export

    run_export(State.db, dest, dump_names or None, force)


@app.command()
def rm(name: str = typer.Argument(..., help="Name of the dump to remove.")):
    """Remove one dump from the index."""
    from vmdex.query.manage import run_rm

    run_rm(State.db, name)


def _answer(runner, argv: list[str]) -> None:
    raise typer.Exit(answer(runner, argv, State.db, State.dump, State.fmt))


@app.command(context_settings=PASS_THROUGH)
def vm(ctx: typer.Context):
    """crash's `vm` with crash's own arguments, answered from the index."""
    from vmdex.query.vm import run_vm

    _answer(run_vm, list(ctx.args))


@app.command(context_settings=PASS_THROUGH)
def foreach(ctx: typer.Context):
    """crash's `foreach TASK-SELECTORS... vm VM-ARGS...`, answered from the index."""
    from vmdex.query.foreach import run_foreach

    _answer(run_foreach, list(ctx.args))


@app.command(context_settings=PASS_THROUGH)
def smaps(ctx: typer.Context):
    """/proc/PID/smaps (--rollup: smaps_rollup) as the dump's kernel printed it; --all: every
    process by Pss."""
    from vmdex.query.smaps import run_smaps

    _answer(run_smaps, list(ctx.args))


@app.command()
def shell():
    """crash's prompt on one dump: vm, foreach ... vm, set, help, q; `| cmd`, `> file`.
    Reads commands from stdin when it is not a terminal."""
    _shell()


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
