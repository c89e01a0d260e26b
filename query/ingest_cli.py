"""`vmdex ingest`: progress on a terminal, a one-line summary otherwise."""
from __future__ import annotations

import os
import sys
from pathlib import Path


class _Bar:
    """A rich progress bar per stage (tasks, mm, page tables) when stderr is a terminal."""

    def __init__(self):
        from rich.progress import Progress

        self.p = Progress(transient=True, console=None)
        self.tasks: dict[str, int] = {}
        self.p.start()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.p.add_task(stage, total=total or None)
        self.p.update(self.tasks[stage], completed=done, total=total or None)

    def stop(self) -> None:
        self.p.stop()


# `vmdex ingest`'s options as the Typer app declares them (query/cli.py): name -> takes a value
_OPTIONS = {"--vmlinux": True, "--name": True, "--to": True, "--jobs": True, "-j": True,
            "--workers": True, "-w": True, "--vmlinux-from-dump": False,
            "--vmlinux-required": False}
_SAME = {"-j": "--jobs", "-w": "--workers"}


def ingest_words(argv: list[str]) -> dict | None:
    """ingest_command's arguments for a plain `vmdex [--db DB] ingest ...` line, or None for
    anything else, which the Typer app then parses (and says what is wrong): the app's
    parser and the TypeAdapters it builds cost an ingest 0.15-0.2 s of CPU."""
    from vmdex.query.answer import _global_options

    parsed = _global_options(argv)
    if parsed is None or not parsed[3] or parsed[3][0] != "ingest":
        return None
    seen: dict[str, str | bool] = {}
    dumps: list[str] = []
    words = parsed[3][1:]
    i = 0
    while i < len(words):
        w = words[i]
        if w == "--":
            dumps += words[i + 1:]
            break
        if not w.startswith("-") or w == "-":
            dumps.append(w)
            i += 1
            continue
        key, eq, val = w.partition("=")
        takes = _OPTIONS.get(key)
        key = _SAME.get(key, key)
        if takes is None or key in seen or (eq and not takes):
            return None                  # unknown, repeated, --help...: the app's to say
        if takes and not eq:
            if i + 1 >= len(words) or words[i + 1].startswith("-"):
                return None
            i += 1
            val = words[i]
        seen[key] = val if takes else True
        i += 1
    counts = {}
    for key in ("--jobs", "--workers"):
        if key in seen:
            v = seen[key]
            if not (v.isascii() and v.isdigit()) or int(v) < 1:
                return None
            counts[key] = int(v)
    if not dumps:
        return None
    return dict(db=parsed[0], dumps=dumps, vmlinux=seen.get("--vmlinux"),
                name=seen.get("--name"), from_dump="--vmlinux-from-dump" in seen,
                required="--vmlinux-required" in seen, jobs=counts.get("--jobs", 1),
                workers=counts.get("--workers"), to=seen.get("--to"))


def ingest_command(db: str | None, dumps: list[str], vmlinux: str | None, name: str | None,
                   from_dump: bool, required: bool, jobs: int, workers: int | None,
                   to: str | None) -> None:
    """`vmdex ingest`, its options parsed (by ingest_words or by the Typer app)."""
    from vmdex.indexer.errors import VmdexError

    if from_dump + required + bool(vmlinux) > 1:
        raise VmdexError("--vmlinux, --vmlinux-from-dump and --vmlinux-required exclude "
                         "each other")
    if from_dump or required:
        from vmdex.indexer.kernel.source import FROM_DUMP, VMLINUX_REQUIRED
        vmlinux = FROM_DUMP if from_dump else VMLINUX_REQUIRED
    if to is None:
        return _ingest(db, dumps, vmlinux, name, jobs, workers)
    if db is not None:
        raise VmdexError("--to writes Parquet instead of an index: --db does not apply")
    from vmdex.query.warehouse import ingest_to

    ingest_to(to, lambda staging: _ingest(staging, dumps, vmlinux, name, jobs, workers))


def _ingest(db: str | None, dumps: list[str], vmlinux: str | None, name: str | None,
            jobs: int, workers: int | None) -> None:
    from vmdex.indexer.walk.parallel import default_workers

    todo, walked = collect_dumps(db, dumps, name)   # a --split set's files: one dump
    if jobs > 1 and len(todo) > 1:
        per_dump = workers or max(1, default_workers() // min(jobs, len(todo)))
        run_ingest_many(db, todo, vmlinux, jobs, per_dump)
        return
    workers = workers or default_workers()
    if walked:   # a crash directory: one bad dump must not keep the others out
        run_ingest_each(db, todo, vmlinux, workers)
        return
    for d, n in todo:
        run_ingest(db, d, vmlinux, n, workers=workers)


def run_ingest(db: str | None, dump: str | tuple[str, ...], vmlinux: str | None,
               name: str | None,
               show_progress: bool = True, workers: int = 1) -> None:
    from vmdex.indexer.ingest import ingest
    from vmdex.indexer.kernel.source import MODES
    from vmdex.indexer.target import IndexTarget

    index = IndexTarget(db)
    bar = _Bar() if show_progress and sys.stderr.isatty() else None
    try:
        img, secs = ingest(index, dump if isinstance(dump, tuple) else Path(dump),
                           vmlinux if vmlinux in (None, *MODES) else Path(vmlinux), name,
                           bar or (lambda *a: None), workers)
    finally:
        if bar:
            bar.stop()
        index.dispose()
    runs = img.run_count
    vmas = sum(len(m.vmas) for m in img.mms.values())
    # say where the kernel came from
    found = f" ({img.kernel_from})" if not vmlinux or vmlinux in MODES else ""
    print(f"ingested {img.name}: {img.release}{found}, {len(img.tasks)} tasks, "
          f"{len(img.mms)} mms, {vmas} VMAs, {runs} page runs, {len(img.errors)} walk errors"
          + (f", {len(img.faults)} unreadable page tables" if img.faults else "")
          + f" in {secs:.1f}s",
          file=sys.stderr)


def collect_dumps(db: str | None, paths: list[str], name: str | None
                  ) -> tuple[list[tuple[str, str | None]], bool]:
    """What to ingest: ([(dump, name)], whether a directory was given). Files are taken as
    given; directories are walked for crash dumps (indexer.crashdir), each named after its
    own directory, and a dump the index already holds from the same file with the same
    size is skipped with one line."""
    from vmdex.indexer.dumpfile.split import group_split_files
    from vmdex.indexer.errors import VmdexError

    dirs = [p for p in paths if os.path.isdir(p)]
    if not dirs:
        dumps = group_split_files(paths)
        if name and len(dumps) > 1:
            raise VmdexError("--name applies to a single dump")
        return [(d, name) for d in dumps], False
    if name:
        raise VmdexError(f"{dirs[0]}: is a directory (the dumps under it are named after "
                         "their directories): --name applies to a single dump file")
    from vmdex.indexer.crashdir import find_dumps
    from vmdex.indexer.db import make_engine, upgrade
    from vmdex.indexer.ingest import index_errors
    from vmdex.indexer.store import dump_from_source

    engine = make_engine(db)
    todo: list[tuple[str, str | None]] = []
    try:
        with index_errors(engine):
            upgrade(engine)
        for p in paths:
            if p not in dirs:
                todo.append((p, None))
                continue
            found = find_dumps(Path(p))
            if not found:
                raise VmdexError(f"{p}: no crash dumps under this directory (looked for "
                                 "<dir>/dump.<stamp> and <dir>/vmcore files)")
            for path, stamp in found:
                dump = tuple(map(str, path)) if isinstance(path, tuple) else str(path)
                first = path[0] if isinstance(path, tuple) else path
                try:
                    size = os.stat(first).st_size
                except OSError:   # gone since the walk: its ingest will say so
                    todo.append((dump, stamp))
                    continue
                with index_errors(engine):
                    have = dump_from_source(engine, os.path.abspath(first), size)
                if have is not None:
                    print(f"vmdex: {first}: skipped, already in the index as {have} (same "
                          "file, same size)", file=sys.stderr)
                else:
                    todo.append((dump, stamp))
    finally:
        engine.dispose()
    return todo, True


def run_ingest_each(db: str | None, todo: list[tuple[str, str | None]],
                    vmlinux: str | None, workers: int = 1) -> None:
    """One dump after another; a failed dump is reported and the others still go in."""
    from vmdex.indexer.errors import VmdexError

    failed = []
    for d, name in todo:
        try:
            run_ingest(db, d, vmlinux, name, workers=workers)
        except VmdexError as exc:
            print(f"vmdex: {_about(d, str(exc))}", file=sys.stderr)
            failed.append(" + ".join(d) if isinstance(d, tuple) else d)
    if failed:
        raise VmdexError(f"{len(failed)} of {len(todo)} dumps not ingested: "
                         + ", ".join(failed))


def _about(dump: str | tuple[str, ...], message: str) -> str:
    """The message, naming the dump unless it already does."""
    dump = " + ".join(dump) if isinstance(dump, tuple) else dump
    return message if message.startswith(f"{dump.split(' + ')[0]}") else f"{dump}: {message}"


def _ingest_one(db: str | None, dump: str, vmlinux: str | None,
                name: str | None = None, workers: int = 1) -> str | None:
    """Pool worker: ingest one dump in this process; the error message, or None."""
    from vmdex.indexer.errors import VmdexError

    try:
        run_ingest(db, dump, vmlinux, name, show_progress=False, workers=workers)
        return None
    except VmdexError as exc:
        return str(exc)
    except Exception as exc:  # reported per dump; the other dumps still go in
        return f"internal error: {type(exc).__name__}: {exc}"


def run_ingest_many(db: str | None, dumps: list[tuple[str, str | None]], vmlinux: str | None,
                    jobs: int, workers: int = 1) -> None:
    """Ingest several dumps with up to `jobs` processes, one process per dump at a time.

    Each worker opens its own dump and its own database connection; every dump is stored in
    its own transaction, so the dumps go in independently (SQLite queues the writers on its
    lock, PostgreSQL takes them side by side). Failures are reported per dump at the end.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from vmdex.indexer.db import make_engine, upgrade
    from vmdex.indexer.errors import VmdexError

    engine = make_engine(db)   # migrate once here rather than racing in every worker
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    failed = []
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(dumps)), mp_context=ctx) as pool:
        futures = [(d, pool.submit(_ingest_one, db, d, vmlinux, n, workers)) for d, n in dumps]
        for d, fut in futures:
            err = fut.result()
            if err is not None:
                print(f"vmdex: {_about(d, err)}", file=sys.stderr)
                failed.append(d)
    if failed:
        raise VmdexError(f"{len(failed)} of {len(dumps)} dumps not ingested: "
                         + ", ".join(failed))
