"""The page-table walk of one dump in several worker processes.

The address spaces are cut into pieces at VMA boundaries (runs never cross a VMA, so a
piece's runs are exactly the runs the single walk makes for those VMAs). Each worker opens
the dump itself after the fork, walks its pieces and sends the runs in chunks through a
bounded queue; the parent, the only database writer, stores them as they come (row order
does not matter to the index). Memory: the queue holds at most QUEUE_UNITS × QUEUE_UNIT
bytes of results, plus the chunk each worker is putting.

What only the whole walk of an mm can see is checked after the pieces: a page-table page
reached from two different entries (a corrupt, cross-linked table), which the single walk
counts against MAX_TABLE_REUSE. Such an mm's rows are dropped and it is walked again in the
parent, so answers never depend on the number of workers. Faults of a table that several
pieces read are recorded once.
"""
from __future__ import annotations

import multiprocessing
import os
import threading
from dataclasses import dataclass
from queue import Empty

from vmdex.indexer.walk.pages import RunBuilder
from vmdex.indexer.arch.pagewalk import iter_user_leaves

QUEUE_UNIT = 1 << 16    # the results queue is bounded in bytes, these a unit:
QUEUE_UNITS = 512       # 32 MiB in flight at most (plus one chunk per worker), so workers
                        # started early run ahead while the parent does its other reading
BUNDLE_UNITS = 16       # a worker sends its results in bundles of about 1 MiB
BUNDLE_ITEMS = 64       # or this many items (the runs of small mms come by the dozen)
PIECE_PAGES = 1 << 20   # aim: pieces of about 4 GiB of VMA each (balance, not a bound)
MIN_PARALLEL_PAGES = 1 << 16   # below 256 MiB of VMAs in all, forking costs more than it saves


@dataclass
class Piece:
    mm: int
    pgd: int                       # mm->pgd (translated in the worker: it may fail)
    first_vma: int                 # index of its first VMA in the mm's list
    ranges: list[tuple[int, int]]


def pieces(mms: dict, arch) -> list[Piece]:
    """Each mm cut into runs of whole VMAs of about PIECE_PAGES pages, largest first (so
    the last pieces to finish are small)."""
    out = []
    for a, mm in mms.items():
        cur: list[tuple[int, int]] = []
        first = size = 0
        for i, v in enumerate(mm.vmas):
            if cur and size >= PIECE_PAGES:
                out.append(Piece(a, mm.pgd, first, cur))
                cur, first, size = [], i, 0
            cur.append((v.start, v.end))
            size += (v.end - v.start) // arch.page_size
        if cur:
            out.append(Piece(a, mm.pgd, first, cur))
    out.sort(key=lambda p: -sum(e - s for s, e in p.ranges))
    return out


def total_pages(mms: dict, page_size: int) -> int:
    return sum((v.end - v.start) // page_size for mm in mms.values() for v in mm.vmas)


# --- worker side ------------------------------------------------------------------------
_job: dict = {}


@dataclass
class DropMm:
    """The rows stored so far for this mm are void: it is walked again."""
    mm: int


def _units(item) -> int:
    """The queue budget an item takes: its arrays' bytes in QUEUE_UNITs (at least one)."""
    value = item[1]
    if isinstance(value, tuple) and len(value) == 2 and hasattr(value[1], "va"):
        runs = value[1]
        size = sum(getattr(runs, f).nbytes for f in runs.__dataclass_fields__)
        return max(1, min(QUEUE_UNITS, size // QUEUE_UNIT))
    return 1


def _worker(todo, queue, budget, gate, dump_path: str | list[str], arch,
            user_top: int) -> None:
    import numpy as np

    from vmdex.indexer.dumpfile import open_dump

    parent = os.getppid()

    def wait(sem) -> None:   # a parent killed mid-ingest (kill -9) must not leave workers
        while not sem.acquire(timeout=1):
            if os.getppid() != parent:
                os._exit(1)

    def next_piece() -> int | None:
        while True:
            try:
                return todo.get(timeout=1)
            except Empty:
                if os.getppid() != parent:
                    os._exit(1)

    def flushed() -> None:
        """Wait until the queue's thread has written everything to the pipe, but not for a
        parent that is gone: the other workers hold the pipe's read end too, so a write
        into a full pipe never fails, and the exit's own join would wait forever."""
        queue.close()
        joiner = threading.Thread(target=queue.join_thread, daemon=True)
        joiner.start()
        while joiner.is_alive():
            joiner.join(1)
            if os.getppid() != parent:
                os._exit(1)

    class results:
        """Items go in bundles of BUNDLE_UNITS (one queue message, one pickle, one
        semaphore round each, instead of three or four per mm of a few runs)."""
        held: list = []
        units = 0

        @classmethod
        def put(cls, item, flush: bool = False):
            cls.held.append(item)
            cls.units += _units(item)
            if flush or cls.units >= BUNDLE_UNITS or len(cls.held) >= BUNDLE_ITEMS:
                cls.send()

        @classmethod
        def send(cls):
            units = min(cls.units, QUEUE_UNITS)
            if units == 1:
                wait(budget)
            else:   # one worker at a time gathers several units: two half-served workers
                wait(gate)      # could otherwise hold the whole budget between them
                try:
                    for _ in range(units):
                        wait(budget)
                finally:
                    gate.release()
            queue.put((units, cls.held))
            cls.held, cls.units = [], 0

    try:
        phys = open_dump(dump_path)   # its own file handle, opened after the fork
    except Exception:   # noqa: BLE001 - the parent walks what no worker took
        results.put(("failed", os.getpid()), flush=True)
        flushed()
        return
    while True:
        n = next_piece()
        if n is None:
            results.put(("done", os.getpid()), flush=True)
            flushed()
            return
        p = _job["pieces"][n]
        faults: list = []
        edges: list = []
        builder = RunBuilder(p.ranges, arch)
        smaps = _job.get("smaps")
        gather = smaps.gatherer(phys, p.mm, p.first_vma, p.ranges) if smaps else None
        error = None
        try:
            top = arch.user_root(p.pgd)
            for batch in iter_user_leaves(phys, arch, top, user_top, p.ranges, faults,
                                          edges=edges):
                if gather:
                    gather.feed(batch)
                runs = builder.feed(batch)
                if len(runs):
                    runs.vma_index += p.first_vma
                    results.put(("runs", (p.mm, runs)))
            runs = builder.finish()
            runs.vma_index += p.first_vma
            results.put(("runs", (p.mm, runs)))
            if gather:
                results.put(("runs", gather.finish()))
        except Exception as exc:   # the parent walks this mm again and meets it itself
            error = f"{type(exc).__name__}: {exc}"
        results.put(("piece", (n, faults, np.array(edges, dtype=np.uint64).reshape(-1, 3),
                               error)))


def _cross_linked(edge_arrays: list) -> bool:
    """Whether some table page is reached from two different entries."""
    import numpy as np

    e = np.concatenate(edge_arrays)
    if len(np.unique(e[:, 0])) == len(e):   # no table page reached twice: the usual case
        return False
    e = np.unique(e, axis=0)    # the same entry read by two pieces is one edge
    return len(np.unique(e[:, 0])) < len(e)


class ParallelWalk:
    """The walk's worker processes, started at once (they walk while the parent reads what
    else the dump holds); iterate it to receive the runs. close() stops workers whose
    results will never be read (the ingest failed before the store)."""

    def __init__(self, mms: dict, dump_path: str | list[str], arch, user_top: int,
                 workers: int, smaps=None):
        self.mms, self.smaps = mms, smaps
        self.pieces = pieces(mms, arch)
        _job["pieces"] = self.pieces       # inherited by the fork
        _job["smaps"] = smaps              # indexer.walk.smaps_ingest.SmapsImage (its plan)
        if smaps is not None:   # struct page facts read once for all workers, not once each
            from vmdex.indexer.walk.frames import SharedFacts
            smaps.plan.shared_facts = SharedFacts.for_layout(smaps.plan.frames)
        ctx = multiprocessing.get_context("fork")
        self.todo, self.results = ctx.Queue(), ctx.Queue()
        self.budget = ctx.BoundedSemaphore(QUEUE_UNITS)
        gate = ctx.Lock()
        for i in range(len(self.pieces)):
            self.todo.put(i)
        self.workers = max(1, min(workers, len(self.pieces)))
        for _ in range(self.workers):
            self.todo.put(None)
        self.procs = [ctx.Process(target=_worker, args=(self.todo, self.results, self.budget,
                                                         gate, dump_path, arch, user_top),
                                  daemon=True) for _ in range(self.workers)]
        for p in self.procs:
            p.start()
        self.closed = False
        self._draining = False      # every worker said it is done: close() lets them exit

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for p in self.procs:
            if self._draining:
                p.join(timeout=5)
            if p.is_alive():        # results nobody will read: no need to wait
                p.kill()
                p.join()
        _job.clear()
        if self.smaps is not None:
            self.smaps.plan.shared_facts = None

    def runs(self, walk_serially, faults_out: list, progress):
        """Yield (mm, PageRuns) for every mm, appending the faults to faults_out as
        (mm, fault). An mm the pieces cannot settle (a piece that failed, a cross-linked
        table, a worker that could not open the dump) is walked again by
        walk_serially(mm) — a generator of the same pairs, which records its own faults
        and errors — after a DropMm(mm) telling the store to remove what it wrote for it."""
        mms, todo_pieces, results, procs = self.mms, self.pieces, self.results, self.procs
        faults: dict[int, dict] = {a: {} for a in mms}
        edges: dict[int, list] = {a: [] for a in mms}
        left = {a: 0 for a in mms}
        for p in todo_pieces:
            left[p.mm] += 1
        rewalk: set[int] = set()
        running, settled = self.workers, 0
        ended: set[int] = set()   # workers that said they are done
        try:
            while running:
                try:
                    units, bundle = results.get(timeout=2)
                except Empty:   # a worker that died without a word (killed, out of memory)
                    for p in procs:
                        if not p.is_alive() and p.pid not in ended:
                            ended.add(p.pid)
                            running -= 1   # its unsettled mms are walked again below
                    continue
                for _ in range(units):
                    self.budget.release()
                for kind, value in bundle:
                    if kind == "runs":
                        yield value
                    elif kind == "piece":
                        n, fs, es, error = value
                        mm = todo_pieces[n].mm
                        for f in fs:   # a table several pieces read is one fault
                            faults[mm][(f.va_start, f.va_end, f.level, f.pa, f.reason)] = f
                            if "points back" in f.reason or "more than" in f.reason:
                                rewalk.add(mm)   # counted over the whole mm by the single walk
                        if error is not None:
                            rewalk.add(mm)
                        edges[mm].append(es)
                        left[mm] -= 1
                        if left[mm] == 0:
                            if _cross_linked(edges.pop(mm)):
                                rewalk.add(mm)
                            settled += 1
                            progress("page tables", settled, len(mms))
                    elif value not in ended:   # "done", or "failed" (that worker took no piece)
                        ended.add(value)
                        running -= 1
            self._draining = True
        finally:
            self.close()
        rewalk.update(a for a, n in left.items() if n)   # pieces no worker could take
        for a in mms:
            if a in rewalk:
                yield DropMm(a)
                yield from walk_serially(a)
            else:
                faults_out.extend((a, f) for f in faults[a].values())


def default_workers() -> int:
    """One per core this process may use, up to 4 (the walk is not all of an ingest)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(4, n))
