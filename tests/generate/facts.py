"""What a dump holds, as crash printed it: tasks (ps), mms, VMAs and every page
(`foreach vm -p`). Questions are derived from these facts, so they come from crash's view
of the dump, never from vmdex's index."""
from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

_PS = re.compile(r"^[> ]\s*(\d+)\s+(\d+)\s+(\d+)\s+([0-9a-f]+)\s+(\S\S)\s+\S+\s+\d+\s+\d+\s+(.*)$")
_PID = re.compile(r"^PID: (\d+)\s+TASK: ([0-9a-f]+)\s+CPU: (\d+)\s+COMMAND: \"(.*)\"$")
_VMA = re.compile(r"^([0-9a-f]{9,16})\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+) ?(.*)$")


@dataclass
class Page:
    vaddr: int
    phys: int | None = None
    swap: tuple[str, int] | None = None     # (device, offset)
    file: tuple[str, int] | None = None     # (path, offset)


@dataclass
class Vma:
    addr: int
    start: int
    end: int
    flags: int
    path: str
    pages: list[Page] = field(default_factory=list)


@dataclass
class Task:
    pid: int
    ppid: int
    cpu: int
    task: int
    state: str
    comm: str
    active: bool
    mm: int = 0
    pgd: int = 0
    vmas: list[Vma] = field(default_factory=list)

    @property
    def kernel_thread(self) -> bool:
        return self.mm == 0


@dataclass
class Facts:
    tasks: list[Task]

    @property
    def user_tasks(self) -> list[Task]:
        return [t for t in self.tasks if t.mm]

    def pages(self):
        for t in self.user_tasks:
            for v in t.vmas:
                for p in v.pages:
                    yield t, v, p


def load(folder: Path) -> Facts:
    oracle = folder / "oracle"
    tasks: dict[int, Task] = {}
    for line in (oracle / "ps.txt").read_text().splitlines()[1:]:
        m = _PS.match(line)
        if m:
            pid, ppid, cpu, task, st, comm = m.groups()
            comm = comm.strip()
            if comm.startswith("[") and comm.endswith("]"):
                comm = comm[1:-1]
            tasks[int(task, 16)] = Task(int(pid), int(ppid), int(cpu), int(task, 16), st,
                                        comm, line.startswith(">"))
    cur: Task | None = None
    vma: Vma | None = None
    want_mm = False
    with gzip.open(oracle / "foreach-vm-p.txt.gz", "rt", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            m = _PID.match(line)
            if m:
                cur = tasks.get(int(m.group(2), 16))
                vma = None
                continue
            if cur is None or not line.strip():
                continue
            s = line.strip()
            if s.startswith("MM "):
                want_mm = True
                continue
            if want_mm:
                want_mm = False
                mm, pgd = s.split()[:2]
                cur.mm, cur.pgd = int(mm, 16), int(pgd, 16)
                continue
            if s.startswith("VMA ") or s.startswith("VIRTUAL"):
                continue
            m = _VMA.match(s)
            if m and len(m.group(1)) >= 9 and " " not in m.group(5).strip()[:1]:
                parts = s.split()
                if len(parts) >= 4 and all(_hex(p) for p in parts[:4]) and len(parts[0]) > 8 \
                        and not parts[1].startswith(("SWAP", "FILE", "(")):
                    vma = Vma(int(parts[0], 16), int(parts[1], 16), int(parts[2], 16),
                              int(parts[3], 16), " ".join(parts[4:]))
                    cur.vmas.append(vma)
                    continue
            if vma is None:
                continue
            parts = s.split(None, 1)
            va = int(parts[0], 16)
            rest = parts[1] if len(parts) > 1 else ""
            if rest.startswith("SWAP: "):
                dev, off = rest[6:].split("  OFFSET: ")
                vma.pages.append(Page(va, swap=(dev, int(off))))
            elif rest.startswith("FILE: "):
                path, off = rest[6:].split("  OFFSET: ")
                vma.pages.append(Page(va, file=(path, int(off, 16))))
            elif rest.startswith("(not mapped)"):
                vma.pages.append(Page(va))
            else:
                vma.pages.append(Page(va, phys=int(rest.split()[0], 16)))
    return Facts(list(tasks.values()))


def _hex(s: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-f]+", s))
