"""crash's `vm` and `foreach ... vm`, answered from the index.

Follows crash 9.0.2's cmd_vm / vm_area_dump / handle_each_vm_area control flow; the
per-page output is generated from stored page runs, and pages without an entry are derived
from their VMA (never stored). `-R` is answered by indexed reverse lookups, not page walks.
"""
from __future__ import annotations

import re
from itertools import islice

from query.index import PAGE, DumpIndex, Run, Task, Vma
from query.render import crashfmt as F
from query.render.vmflags import flag_names
from query.words import Fatal, VmArgs, htol, is_decimal, is_hexadecimal, is_number, parse_vm

PF_EXITING = 0x4


class Out:
    """stdout/stderr of one command, streamed in chunks (foreach vm -p is large)."""

    def __init__(self, stdout, stderr, fmt_sink=None):
        self.stdout, self.stderr = stdout, stderr
        self.buf: list[str] = []
        self.size = 0
        self.failed = False

    def write(self, s: str) -> None:
        self.buf.append(s)
        self.size += len(s)
        if self.size > 1 << 20:
            self.flush()

    def lines(self, it) -> None:
        """Many lines at once: joined in bounded chunks (a 64 GiB VMA is 16M lines)."""
        it = iter(it)
        while True:
            chunk = "".join(islice(it, 65536))
            if not chunk:
                return
            self.write(chunk)

    def err(self, s: str) -> None:
        self.flush()
        self.stderr.write(s)
        self.stderr.flush()

    def flush(self) -> None:
        if self.buf:
            self.stdout.write("".join(self.buf))
            self.buf, self.size = [], 0
        self.stdout.flush()


def name_match(path: str | None, ref: str) -> bool:
    """crash's FILENAME_COMPONENT: '/' matches only '/', else a substring test."""
    if not path:
        return False
    return path == "/" if ref == "/" else ref in path


class TaskAbort(Exception):
    """crash's FAULT_ON_ERROR read of a page-table page failed: the command stops here
    (inside `foreach`, the loop goes on with the next task). The argument is crash's
    message line, or '' when crash stays silent (a page a compressed dump excluded)."""


_TABLE_TYPE = {1: "page table", 2: "pmd page", 3: "pud page"}


def read_error(fmt: str, levels: int, fault) -> str:
    """What crash prints when uvtop's read of this table page fails (memory.c readmem)."""
    _lo, _hi, level, pa, why = fault
    what = _TABLE_TYPE.get(level) or ("p4d page" if levels == 5 and level == 4 else "pgd page")
    if fmt == "elf":
        kind = "read error"
    elif why.startswith("page excluded"):
        return ""                    # silent, as crash is without `set debug 8`
    elif "not in dump" in why:
        kind = "seek error"          # not RAM in the dump's bitmap (read_diskdump)
    elif "incomplete dump" in why:
        kind = "page incomplete"
    else:
        kind = "read error"
    line = f'vm: {kind}: physical address: {pa:x}  type: "{what}"\n'
    # crash reports a zlib failure with zlib's return code first (checked with crash 9.0.2
    # on a kdump whose page-table page has corrupt compressed data).
    z = _ZLIB_FAILURE.search(why)
    if z and fmt.startswith("kdump"):
        line = f"vm: compressed kdump: uncompress failed: {z.group(1)}\n" + line
    return line


_ZLIB_FAILURE = re.compile(r"zlib: uncompress failed: Error (-?\d+)")


class VmCommand:
    def __init__(self, idx: DumpIndex, out: Out, args: VmArgs, fmt: str = "text"):
        from query.render.sinks import SINKS

        self.idx, self.out, self.a = idx, out, args
        self.sink = SINKS[fmt](out, max(idx.paddr_prlen, 8), idx.swapdev)
        self._mm_cache: dict[int, object] = {}
        self._vma_cache: dict[int, list[Vma]] = {}

    # --- shared pieces ---------------------------------------------------------------
    def header(self, t: Task, newline: bool) -> None:
        self.sink.header(t, newline)

    def mm_row(self, addr: int):
        if addr not in self._mm_cache:
            self._mm_cache[addr] = self.idx.mm(addr)
        return self._mm_cache[addr]

    def vmas(self, mm: int) -> list[Vma]:
        if mm not in self._vma_cache:
            self._vma_cache[mm] = self.idx.vmas(mm)
        return self._vma_cache[mm]

    def mm_lines(self, t: Task) -> None:
        """The MM/PGD/RSS/TOTAL_VM block; zeros for a task with no (usable) mm."""
        mm = self.mm_row(t.mm) if t.mm else None
        if mm is None or t.st == "ZO":
            self.sink.mm(t, 0, 0, 0, 0)
        elif t.flags & PF_EXITING and mm.mm_count <= 0:
            self.sink.mm(t, mm.mm, 0, 0, 0)
        else:
            self.sink.mm(t, mm.mm, mm.pgd, t.rss_pages * 4, mm.total_vm * 4)

    def vma_block(self, v: Vma) -> None:
        self.sink.vma_header()
        self.sink.vma(v)

    def page_lines(self, mm: int, v: Vma) -> None:
        """Every 4 KiB page of v, classified as crash does; gaps derived from the VMA.
        Up to the first page whose page table the dump lost, then TaskAbort."""
        fault = self.first_fault(mm, v.start, v.end)
        end = v.end if fault is None else fault[0]
        runs = self.idx.runs(mm, v.seq)
        va = v.start
        for r in runs:
            if r.va >= end:
                break
            if r.va > va:
                self.sink.empty_pages(v, va, r.va)
            self.page_range(v, r.va, min(r.va + r.npages * PAGE, end), (r, 0))
            va = r.va + r.npages * PAGE
        if va < end:
            self.sink.empty_pages(v, va, end)
        if fault is not None:
            raise TaskAbort(read_error(*self.idx.dump_format(), fault[1]))

    def first_fault(self, mm: int, lo: int, hi: int):
        """(first page in [lo, hi) under an unreadable table, that fault) or None."""
        best = None
        for f in self.idx.table_faults(mm):
            if f[0] < hi and f[1] > lo:
                at = max(lo, f[0])
                if best is None or at < best[0]:
                    best = (at, f)
        return best

    def page_range(self, v: Vma, lo: int, hi: int, hit) -> None:
        """Pages lo..hi, all inside one run starting at page index i of it (or none)."""
        if hit is None:
            self.sink.empty_pages(v, lo, hi)
            return
        r, i = hit
        if r.kind == 0:
            self.sink.present_pages(v, lo, hi, r.pa + i * PAGE)
        elif not self.idx.swap_lines:   # crash prints swap lines only with swap symbols
            self.sink.empty_pages(v, lo, hi)
        else:
            self.sink.swap_pages(v, lo, hi, r.swap_type, r.swap_offset + i)

    # --- vm_area_dump ----------------------------------------------------------------
    def dump_task(self, t: Task, search=None) -> None:
        a = self.a
        if search is not None:
            search.task(self, t)
            return
        if "m" in a.mode:
            if t.mm:
                self.struct_dump("mm_struct", [(self.idx.mm(t.mm, raw=True).raw, t.mm)])
            return
        mm = t.mm
        if "P" in a.mode:
            if not mm:
                return
            for v in self.vmas(mm):
                if v.vma == a.single_vma:
                    self.vma_block(v)
                    self.sink.page_header()
                    self.page_lines(mm, v)
                    return
            self.sink.text("(not found)\n")
            self.out.failed = True   # nothing answered: a script should see a failure
            return
        if "v" in a.mode:
            if mm:
                self.struct_dump("vm_area_struct",
                                 [(v.raw, v.vma) for v in self.idx.vmas(mm, raw=True)])
            return
        self.mm_lines(t)
        if not mm or t.st == "ZO":
            if a.mm is None:
                return
            if self.idx.mm(a.mm) is None:
                self.sink.text(f"vm: invalid mm_struct address: {a.mm_arg}\n")
                self.out.failed = True
                return
            mm = a.mm
        vmas = self.vmas(mm)
        if "p" not in a.mode:
            self.sink.vma_header()
            for v in vmas:
                self.sink.vma(v)
            return
        for v in vmas:
            self.vma_block(v)
            self.sink.page_header()
            self.page_lines(mm, v)

    def struct_dump(self, struct: str, objects: list[tuple[bytes, int]]) -> None:
        from query.structs import render_structs  # lazy: only -m / -v need the type trees

        for raw, addr in objects:
            self.sink.struct(struct, render_structs(self.idx, struct, [(raw, addr)],
                                                    self.a.radix or 10))


def _find(runs: list[Run], va: int):
    for r in runs:
        if r.va <= va < r.va + r.npages * PAGE:
            return r, (va - r.va) // PAGE
    return None


class RefSearch:
    """`-R reference`: crash's matching rules, answered from reverse indexes in one go."""

    def __init__(self, idx: DumpIndex, ref: str):
        self.idx, self.ref = idx, ref
        num = is_number(ref)
        self.hexval = htol(ref) if num and _hex_ok(ref) else (0 if num else None)
        self.decval = int(ref) if num and is_decimal(ref) else (0 if num else None)
        self.vma_hits = set(idx.vmas_matching(self.hexval, ref))
        cand: dict[tuple[int, int], set[int]] = {}

        def add(rows):
            for mm, seq, va in rows:
                cand.setdefault((mm, seq), set()).add(va)

        if self.hexval is not None:
            add(idx.pages_with_pa(self.hexval))
            add(idx.file_pages_at_offset(self.hexval))
            if self.hexval % PAGE == 0:
                add((mm, seq, self.hexval) for mm, seq in idx.vma_containing(self.hexval))
        if idx.swap_lines:
            if self.decval is not None:
                add(idx.pages_with_swap_offset(self.decval))
            for mm, seq, va, n in idx.swap_runs_on_devices(lambda dev: name_match(dev, ref)):
                add((mm, seq, va + i * PAGE) for i in range(n))
        self.candidates = cand
        self.mms = {mm for mm, _ in cand} | {mm for mm, _ in self.vma_hits}

    def page_matches(self, v: Vma, va: int, hit) -> bool:
        if va == self.hexval:
            return True
        if hit is None:
            return bool(v.path) and self.hexval is not None and \
                ((va - v.start) // PAGE + v.pgoff) * PAGE == self.hexval
        r, i = hit
        if r.kind == 0:
            return r.pa + i * PAGE == self.hexval
        if not self.idx.swap_lines:
            return bool(v.path) and self.hexval is not None and \
                ((va - v.start) // PAGE + v.pgoff) * PAGE == self.hexval
        return (self.decval is not None and r.swap_offset + i == self.decval) or \
            name_match(self.idx.swapdev(r.swap_type), self.ref)

    def task(self, cmd: VmCommand, t: Task) -> None:
        mm = cmd.mm_row(t.mm) if t.mm else None
        if self.hexval is not None and self.hexval in (t.mm, mm.pgd if mm else 0):
            cmd.header(t, False)
            cmd.mm_lines(t)
            cmd.sink.blank()
            return
        if not t.mm or (t.mm not in self.mms and not cmd.idx.table_faults(t.mm)):
            return
        header = vma_printed = page_flag = False
        last_vma = None
        for v in cmd.vmas(t.mm):
            if (t.mm, v.seq) in self.vma_hits:
                if not header:
                    cmd.header(t, False)
                    cmd.mm_lines(t)
                    header = True
                if not vma_printed or page_flag:
                    cmd.sink.vma_header()
                vma_printed, page_flag, last_vma = True, False, v.vma
                cmd.sink.vma(v)
            cands = self.candidates.get((t.mm, v.seq))
            fault = cmd.first_fault(t.mm, v.start, v.end)  # crash walks every page for -R
            end = v.end if fault is None else fault[0]
            if not cands:
                if fault is not None:
                    raise TaskAbort(read_error(*cmd.idx.dump_format(), fault[1]))
                continue
            runs = cmd.idx.runs(t.mm, v.seq)
            hits = sorted(va for va in cands if v.start <= va < end
                          and self.page_matches(v, va, _find(runs, va)))
            if not hits:
                if fault is not None:
                    raise TaskAbort(read_error(*cmd.idx.dump_format(), fault[1]))
                continue
            page_flag = True
            if not header:
                cmd.header(t, False)
                cmd.mm_lines(t)
                header = True
            if not vma_printed or last_vma != v.vma:
                cmd.vma_block(v)
                vma_printed, last_vma = True, v.vma
            cmd.sink.page_header()
            for va in hits:
                cmd.page_range(v, va, va + PAGE, _find(runs, va))
            if fault is not None:
                raise TaskAbort(read_error(*cmd.idx.dump_format(), fault[1]))
        if header:
            cmd.sink.blank()


def _hex_ok(s: str) -> bool:
    try:
        htol(s)
        return True
    except Fatal:
        return False


# --- task arguments ---------------------------------------------------------------------
def resolve_task(idx: DumpIndex, word: str) -> list[Task] | None:
    """crash's str_to_context: a word may be a decimal pid, a hex pid or a task address."""
    hits = []
    if is_decimal(word):
        v = int(word)
        if idx.tasks_by_pid(v):
            hits.append(("dpid", v))
        if idx.task_at(v):
            hits.append(("task", v))
    body = word[2:] if word[:2].lower() == "0x" else word
    if is_hexadecimal(word) and len(body) <= 16 and all(c not in "xX" for c in body):
        h = int(body, 16)
        if idx.tasks_by_pid(h) and ("dpid", h) not in hits:
            hits.append(("hpid", h))
        if idx.task_at(h) and ("task", h) not in hits:
            hits.append(("task", h))
    kinds = [k for k, _ in hits]
    if len(hits) == 2 and "dpid" in kinds and "hpid" in kinds:
        hits = [h for h in hits if h[0] == "dpid"]
    if len(hits) != 1:
        return None
    kind, v = hits[0]
    return [idx.task_at(v)] if kind == "task" else idx.tasks_by_pid(v)


def run_vm(open_index, argv: list[str], out: Out, fmt: str = "text") -> int:
    """`vm ARGS`: returns the exit status (non-zero when crash reported an error)."""
    from query.render.sinks import SINKS

    sink = None
    try:
        a = parse_vm(argv, lambda: open_index().page_offset)
        for c in a.complaints:
            out.err(c)
        for m in a.messages:
            out.write(m)
        if a.flags_value is not None:
            idx = open_index()
            sink = SINKS[fmt](out, 8, None)
            sink.flags(a.flags_value, flag_names(a.flags_value, idx.has_expand_upwards,
                                                 idx.has_pmd_huge_pte))
            return 1 if a.usage else 0
        if a.usage:
            out.write(F.USAGE)
            return 1
        idx = open_index()
        cmd = VmCommand(idx, out, a, fmt)
        sink = cmd.sink
        search = RefSearch(idx, a.ref) if a.ref is not None else None
        try:
            if not a.words:
                t = idx.task_at(idx.default_task)
                if search is None:
                    cmd.header(t, False)
                cmd.dump_task(t, search)
                return 1 if out.failed else 0
            subsequent = 0
            for w in a.words:
                tasks = resolve_task(idx, w)
                if tasks is None:
                    sink.text(f"{chr(10) if subsequent else ''}vm: invalid task or pid value: "
                              f"{w}\n")
                    subsequent += 1
                    out.failed = True
                    continue
                for t in tasks:
                    if search is None:
                        cmd.header(t, subsequent > 0)
                    subsequent += 1
                    cmd.dump_task(t, search)
        except TaskAbort as stop:    # crash's RESTART(): the rest of the command is dropped
            if str(stop):
                sink.text(str(stop))
            return 1
        return 1 if out.failed else 0
    except Fatal as exc:
        (sink.text if sink else out.write)(str(exc))
        return 1
    finally:
        if sink is not None:
            sink.close()
