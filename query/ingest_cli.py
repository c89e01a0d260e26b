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


def run_ingest(db: str | None, dump: str, vmlinux: str, name: str | None) -> None:
    from indexer.db import make_engine
    from indexer.ingest import ingest

    engine = make_engine(db)
    bar = _Bar() if sys.stderr.isatty() else None
    try:
        img, secs = ingest(engine, Path(dump), Path(vmlinux), name, bar or (lambda *a: None))
    finally:
        if bar:
            bar.stop()
        engine.dispose()
    runs = sum(len(r) for r in img.runs.values())
    vmas = sum(len(m.vmas) for m in img.mms.values())
    print(f"ingested {img.name}: {img.release}, {len(img.tasks)} tasks, {len(img.mms)} mms, "
          f"{vmas} VMAs, {runs} page runs, {len(img.errors)} walk errors in {secs:.1f}s",
          file=sys.stderr)
