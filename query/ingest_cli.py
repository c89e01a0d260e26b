"""`vmdex ingest`: progress on a terminal, a one-line summary otherwise."""
from __future__ import annotations

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
            self.tasks[stage] = self.p.add_task(stage, total=total)
        self.p.update(self.tasks[stage], completed=done, total=total)

    def stop(self) -> None:
        self.p.stop()


def run_ingest(db: str | None, dump: str, vmlinux: str, name: str | None,
               show_progress: bool = True) -> None:
    from indexer.db import make_engine
    from indexer.ingest import ingest

    engine = make_engine(db)
    bar = _Bar() if show_progress and sys.stderr.isatty() else None
    try:
        img, secs = ingest(engine, Path(dump), Path(vmlinux), name, bar or (lambda *a: None))
    finally:
        if bar:
            bar.stop()
        engine.dispose()
    runs = img.run_count
    vmas = sum(len(m.vmas) for m in img.mms.values())
    print(f"ingested {img.name}: {img.release}, {len(img.tasks)} tasks, {len(img.mms)} mms, "
          f"{vmas} VMAs, {runs} page runs, {len(img.errors)} walk errors"
          + (f", {len(img.faults)} unreadable page tables" if img.faults else "")
          + f" in {secs:.1f}s",
          file=sys.stderr)


def _ingest_one(db: str | None, dump: str, vmlinux: str) -> str | None:
    """Pool worker: ingest one dump in this process; the error message, or None."""
    from indexer.errors import VmdexError

    try:
        run_ingest(db, dump, vmlinux, None, show_progress=False)
        return None
    except VmdexError as exc:
        return str(exc)
    except Exception as exc:  # reported per dump; the other dumps still go in
        return f"internal error: {type(exc).__name__}: {exc}"


def run_ingest_many(db: str | None, dumps: list[str], vmlinux: str, jobs: int) -> None:
    """Ingest several dumps with up to `jobs` processes, one process per dump at a time.

    Each worker opens its own dump and its own database connection; every dump is stored in
    its own transaction, so the dumps go in independently (SQLite queues the writers on its
    lock, PostgreSQL takes them side by side). Failures are reported per dump at the end.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from indexer.db import make_engine, upgrade
    from indexer.errors import VmdexError

    engine = make_engine(db)   # migrate once here rather than racing in every worker
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    failed = []
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(dumps)), mp_context=ctx) as pool:
        futures = [(d, pool.submit(_ingest_one, db, d, vmlinux)) for d in dumps]
        for d, fut in futures:
            err = fut.result()
            if err is not None:
                print(f"vmdex: {d}: {err}", file=sys.stderr)
                failed.append(d)
    if failed:
        raise VmdexError(f"{len(failed)} of {len(dumps)} dumps not ingested: "
                         + ", ".join(failed))
