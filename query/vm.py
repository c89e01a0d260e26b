"""crash's `vm` and `foreach ... vm`, answered from the index.

Follows crash 9.0.2's cmd_vm / vm_area_dump / handle_each_vm_area control flow; the
per-page output is generated from stored page runs, and pages without an entry are derived
from their VMA (never stored). `-R` is answered by indexed reverse lookups, not page walks.
"""
from __future__ import annotations

from itertools import islice

from vmdex.indexer.errors import VmdexError
from vmdex.query.index import DumpIndex, Task, Vma
from vmdex.query.render import crashfmt as F
from vmdex.query.render.vmflags import flag_names
from vmdex.query.words import Fatal, VmArgs, htol, is_decimal, is_hexadecimal, is_number, parse_vm

PF_EXITING = 0x4


class Out:
    """stdout/stderr of one command, streamed in chunks (foreach vm -p is large)."""

    def __init__(self, stdout, stderr, fmt_sink=None):
        self.stdout, self.stderr = stdout, stderr
        self.buf: list[str] = []
        self.size = 0
        self.failed = False
        self.pending = None   # lines held for rendering in bulk: settled before anything else
        self.raw, self.raw_any = _byte_stream(stdout)

    def write(self, s: str) -> None:
        if self.pending is not None:
            self.pending()
        self.buf.append(s)
        self.size += len(s)
        if self.size > 1 << 20:
            self.flush()

    def write_bytes(self, data, ascii: bool = True) -> None:
        """Text already encoded as UTF-8 (surrogateescape), e.g. a numpy buffer of page
        lines: a big piece goes straight to the byte stream (no str built, decoded and
        encoded again) when the text stream would have written the same bytes."""
        if self.pending is not None:
            self.pending()
        if len(data) < RAW_MIN or self.raw is None or not (ascii or self.raw_any):
            self.write(bytes(data).decode("utf-8", "surrogateescape"))
            return
        self.flush()
        self.raw.write(data)

    def lines(self, it) -> None:
        """Many lines at once: joined in bounded chunks (a 64 GiB VMA is 16M lines)."""
        if isinstance(it, (list, tuple)) and len(it) <= 65536:   # (no islice for a few lines)
            self.write("".join(it))
            return
        it = iter(it)
        while True:
            chunk = "".join(islice(it, 65536))
            if not chunk:
                return
            self.write(chunk)

    def err(self, s: str) -> None:
        self.flush()   # (settles pending lines first: stdout and stderr stay in order)
        self.stderr.write(s)
        self.stderr.flush()

    def flush(self) -> None:
        if self.pending is not None:
            self.pending()
        if self.buf:
            self.stdout.write("".join(self.buf))
            self.buf, self.size = [], 0
        self.stdout.flush()


RAW_MIN = 1 << 16   # smaller pieces join the text buffer: fewer, larger writes


def _byte_stream(stdout):
    """(the binary stream under a text stdout or None, whether it takes any UTF-8 text
    byte for byte). ASCII goes raw whenever the encoding is ASCII's superset; other text
    only when the stream encodes UTF-8 with surrogateescape, as vmdex decodes paths."""
    raw = getattr(stdout, "buffer", None)
    enc = getattr(stdout, "encoding", None)
    if raw is None or not enc:
        return None, False
    import codecs

    try:
        name = codecs.lookup(enc).name
    except LookupError:
        return None, False
    if "0123456789abcdef (not mapped)\n".encode(name, "strict") != \
            b"0123456789abcdef (not mapped)\n":
        return None, False
    return raw, name == "utf-8" and getattr(stdout, "errors", None) == "surrogateescape"


def name_match(path: str | None, ref: str) -> bool:
    """crash's FILENAME_COMPONENT: '/' matches only '/', else a substring test."""
    if not path:
        return False
    return path == "/" if ref == "/" else ref in path


class TaskAbort(Exception):
    """crash's FAULT_ON_ERROR read of a page-table page failed: the command stops here
    (inside `foreach`, the loop goes on with the next task). The argument is crash's
    message line, or '' when crash stays silent (a page a compressed dump excluded)."""


def read_error(fmt: str, fault) -> str:
    """What crash prints when uvtop's read of this table page fails (memory.c readmem):
    the cause code, readmem's type words, memory type and address were stored at ingest
    by the dump's architecture (indexer.arch)."""
    _lo, _hi, cause, what, kind, address = fault
    return readmem_failure(fmt, cause, kind, address, what)


def vma_read_error(fmt: str, fault) -> str:
    """crash's fill_vma_cache read of a VMA the dump lost (vm_area_dump)."""
    _seq, _vma, address, cause = fault
    return readmem_failure(fmt, cause, "kernel virtual", address, "fill_vma_cache")


def readmem_failure(fmt: str, cause: str, memtype: str, addr: int, what: str) -> str:
    """crash's readmem() message for a failed FAULT_ON_ERROR read (memory.c): a page a
    compressed dump excluded is silent (without `set debug 8`); a page no part of the
    dump covers is a seek error in a kdump (read_diskdump), a read error in an ELF core;
    a descriptor never written is "page incomplete"; corrupt zlib data adds zlib's code
    first (checked with crash 9.0.2)."""
    if fmt == "elf":
        kind = "read error"
    elif cause == "excluded":
        return ""
    elif cause == "absent":
        kind = "seek error"
    elif cause == "incomplete":
        kind = "page incomplete"
    else:
        kind = "read error"
    line = f'vm: {kind}: {memtype} address: {addr:x}  type: "{what}"\n'
    if cause.startswith("zlib:") and fmt.startswith("kdump"):
        line = f"vm: compressed kdump: uncompress failed: {cause[5:]}\n" + line
    return line




class VmCommand:
    def __init__(self, idx: DumpIndex, out: Out, args: VmArgs, fmt: str = "text"):
        from vmdex.query.render.sinks import SINKS

        self.idx, self.out, self.a = idx, out, args
        self.sink = SINKS[fmt](out, max(idx.paddr_prlen, 8), idx.swapdev, idx.page_size)
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

    def vma_walk(self, mm: int, vmas: list[Vma] | None = None, header_each: bool = False):
        """The mm's VMAs in crash's order; where the dump lost one, crash's walk stops with
        its read error (TaskAbort) after the VMAs before it. With `header_each` (vm -p)
        crash prints the VMA header before it reads each VMA, the lost one too."""
        yield from self.vmas(mm) if vmas is None else vmas
        fault = self.idx.vma_fault(mm)
        if fault is not None:
            if header_each:
                self.sink.vma_header()
            raise TaskAbort(vma_read_error(self.idx.dump_format()[0], fault))

    def mem_usage(self, t: Task) -> tuple[int, int, int, int]:
        """crash's get_task_mem_usage: (mm, pgd, rss KiB, total_vm KiB). All zero for a
        zombie or a task without mm; only the mm for an exiting task whose mm_count is
        down to 0 (or whose mm the index could not read)."""
        mm = self.mm_row(t.mm) if t.mm else None
        if mm is None or self.idx.is_zombie(t):
            return 0, 0, 0, 0
        if t.flags & PF_EXITING and mm.mm_count <= 0:
            return mm.mm, 0, 0, 0
        kb = self.idx.page_size // 1024          # crash's PGTOKB
        return mm.mm, mm.pgd, t.rss_pages * kb, mm.total_vm * kb

    def mm_lines(self, t: Task, tm=None) -> None:
        """The MM/PGD/RSS/TOTAL_VM block (crash's PRINT_VM_DATA)."""
        self.sink.mm(t, *(tm or self.mem_usage(t)))

    def forced_mm(self) -> int | None:
        """`-M mm` for a task without one (vm_area_dump's MM_STRUCT_FORCE): crash's
        is_valid_mm, fatal for the whole command; an address that is no mm_struct of the
        index is judged by not_an_indexed_mm."""
        if self.a.mm is None:
            return None
        row = self.mm_row(self.idx.untagged(self.a.mm))   # arm64 reads through an MTE tag
        if row is None:
            raise self.not_an_indexed_mm(self.a.mm)
        if row.mm_count == 0:
            raise Fatal("vm: stale mm_struct address\n")
        return row.mm

    def not_an_indexed_mm(self, addr: int) -> Exception:
        """-M names no mm_struct a task of the dump uses. crash's is_valid_mm looks up the
        slab cache of the address's page: no struct page there (past the end of RAM) is a
        warning and an invalid address; inside the mm_struct slab (a page that holds one
        of the dump's mm_structs) crash accepts it and reads whatever memory is there,
        which the index does not keep, so vmdex says so instead of guessing."""
        idx = self.idx
        pa = idx.kvtop(addr)
        if pa is None and idx.kernel_tables_kept():
            # vaddr_to_kmem_cache: crash's kvtop walked the kernel's tables and failed
            return Fatal(f"WARNING: cannot make virtual-to-physical translation: {addr:x}\n"
                         "vm: invalid mm_struct address\n")
        if pa is None or idx.ram_end is not None and pa >= idx.ram_end or pa < idx.ram_start:
            warn = ""
            if pa is not None and idx.section_bits and idx.physmem_bits:
                # crash's sparsemem lookup first: a section number past NR_MEM_SECTIONS
                section = pa >> idx.section_bits
                if section >= 1 << (idx.physmem_bits - idx.section_bits):
                    warn = f"WARNING: sparsemem: invalid section number: {section}\n"
            return Fatal(f"{warn}WARNING: cannot find mem_map page for address: {addr:x}\n"
                         "vm: invalid mm_struct address\n")
        if idx.untagged(addr) // idx.page_size in idx.mm_pages():
            return VmdexError(f"vm -M {addr:x}: an address inside the mm_struct slab but no "
                              "mm_struct a task of this dump uses: crash would read raw memory "
                              "there, and the index keeps none")
        return Fatal("vm: invalid mm_struct address\n")

    def vma_block(self, v: Vma) -> None:
        self.sink.vma_header()
        self.sink.vma(v)

    def page_lines(self, mm: int, v: Vma) -> None:
        """Every 4 KiB page of v, classified as crash does; gaps derived from the VMA.
        Up to the first page whose page table the dump lost, then TaskAbort."""
        fault = self.first_fault(mm, v.start, v.end)
        end = v.end if fault is None else fault[0]
        runs = self.idx.runs(mm, v)
        va = v.start
        for r in runs:
            if r.va >= end:
                break
            if r.va > va:
                self.sink.empty_pages(v, va, r.va)
            self.page_range(v, r.va, min(r.va + r.npages * self.idx.page_size, end), (r, 0))
            va = r.va + r.npages * self.idx.page_size
        runs.close()   # (its cursor, when the loop stopped early)
        if va < end:
            self.sink.empty_pages(v, va, end)
        if fault is not None:
            raise TaskAbort(read_error(self.idx.dump_format()[0], fault[1]))

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
            self.sink.present_pages(v, lo, hi, r.pa + i * self.idx.page_size)
        elif not self.idx.swap_lines:   # crash prints swap lines only with swap symbols
            self.sink.empty_pages(v, lo, hi)
        else:
            self.sink.swap_pages(v, lo, hi, r.swap_type, r.swap_offset + i)

    # --- vm_area_dump ----------------------------------------------------------------
    def dump_task(self, t: Task, search=None) -> None:
        """crash's vm_area_dump for one task."""
        a = self.a
        if search is not None:
            search.task(self, t)
            return
        tm = self.mem_usage(t)
        if not a.mode & {"m", "v", "P"}:
            self.mm_lines(t, tm)
        mm = tm[0]
        if not mm:
            mm = self.forced_mm()
            if mm is None:
                return
        if "m" in a.mode:
            self.struct_dump("mm_struct", [(self.idx.mm(mm, raw=True).raw, mm)])
            return
        if "P" in a.mode:
            for v in self.vma_walk(mm):
                if v.vma == a.single_vma:
                    self.vma_block(v)
                    self.sink.page_header()
                    self.page_lines(mm, v)
                    return
            self.sink.text("(not found)\n")
            self.out.failed = True   # nothing answered: a script should see a failure
            return
        if "v" in a.mode:
            for v in self.vma_walk(mm, self.idx.vmas(mm, raw=True)):
                self.struct_dump("vm_area_struct", [(v.raw, v.vma)])
            return
        if "p" not in a.mode:
            self.sink.vma_header()
            for v in self.vma_walk(mm):
                self.sink.vma(v)
            return
        for v in self.vma_walk(mm, header_each=True):
            self.vma_block(v)
            self.sink.page_header()
            self.page_lines(mm, v)

    def struct_dump(self, struct: str, objects: list[tuple[bytes, int]]) -> None:
        from vmdex.query.structs import render_structs  # lazy: only -m / -v need the type trees

        for raw, addr in objects:
            self.sink.struct(struct, render_structs(self.idx, struct, [(raw, addr)],
                                                    self.a.radix or 10))


class RefSearch:
    """`-R reference`: crash's matching rules, answered from reverse indexes in one go."""

    def __init__(self, idx: DumpIndex, ref: str):
        self.idx, self.ref = idx, ref
        # vm_area_dump: a number (IS_A_NUMBER) is read by htol(FAULT_ON_ERROR), and by
        # dtol as well when decimal (decval stays 0 otherwise); crash does that for each
        # task it searches, so a bad number is fatal at the first task, not before.
        self.error: Fatal | None = None
        self.hexval = self.decval = None
        if is_number(ref):
            try:
                self.hexval = htol(ref)
                self.decval = int(ref) if is_decimal(ref) else 0
            except Fatal as exc:
                self.error, self.hexval = exc, None
        self.vma_hits = set(idx.vmas_matching(self.hexval, ref))
        cand: dict[tuple[int, int], set[int]] = {}

        def add(rows):
            for mm, seq, va in rows:
                cand.setdefault((mm, seq), set()).add(va)

        if self.hexval is not None:
            add(idx.pages_with_pa(self.hexval))
            add(idx.file_pages_at_offset(self.hexval))
            if self.hexval % idx.page_size == 0:
                add((mm, seq, self.hexval) for mm, seq in idx.vma_containing(self.hexval))
        if idx.swap_lines:
            if self.decval is not None:
                add(idx.pages_with_swap_offset(self.decval))
            for mm, seq, va, n in idx.swap_runs_on_devices(lambda dev: name_match(dev, ref)):
                add((mm, seq, va + i * idx.page_size) for i in range(n))
        self.candidates = cand
        self.mms = {mm for mm, _ in cand} | {mm for mm, _ in self.vma_hits}

    def page_matches(self, v: Vma, va: int, hit) -> bool:
        if va == self.hexval:
            return True
        if hit is None:
            return bool(v.path) and self.hexval is not None and \
                ((va - v.start) // self.idx.page_size + v.pgoff) * self.idx.page_size == self.hexval
        r, i = hit
        if r.kind == 0:
            return r.pa + i * self.idx.page_size == self.hexval
        if not self.idx.swap_lines:
            return bool(v.path) and self.hexval is not None and \
                ((va - v.start) // self.idx.page_size + v.pgoff) * self.idx.page_size == self.hexval
        return (self.decval is not None and r.swap_offset + i == self.decval) or \
            name_match(self.idx.swapdev(r.swap_type), self.ref)

    def task(self, cmd: VmCommand, t: Task) -> None:
        if self.error is not None:
            raise self.error
        tm = cmd.mem_usage(t)
        if self.hexval is not None and self.hexval in tm[:2]:
            cmd.header(t, False)
            cmd.mm_lines(t, tm)
            cmd.sink.blank()
            return
        mm = tm[0]
        if not mm:
            mm = cmd.forced_mm()
            if mm is None:
                return
            tm = (mm, 0, 0, 0)       # crash puts only the address into its mem usage
        if mm not in self.mms and not cmd.idx.table_faults(mm) and not cmd.idx.vma_fault(mm):
            return
        header = vma_printed = page_flag = False
        last_vma = None
        for v in cmd.vma_walk(mm):
            if (mm, v.seq) in self.vma_hits:
                if not header:
                    cmd.header(t, False)
                    cmd.mm_lines(t, tm)
                    header = True
                if not vma_printed or page_flag:
                    cmd.sink.vma_header()
                vma_printed, page_flag, last_vma = True, False, v.vma
                cmd.sink.vma(v)
            cands = self.candidates.get((mm, v.seq))
            fault = cmd.first_fault(mm, v.start, v.end)  # crash walks every page for -R
            end = v.end if fault is None else fault[0]
            if not cands:
                if fault is not None:
                    raise TaskAbort(read_error(cmd.idx.dump_format()[0], fault[1]))
                continue
            # Only the runs under the candidate pages: a VMA can hold millions of pages.
            hit_of = {va: cmd.idx.run_at(mm, va) for va in cands}
            hits = sorted(va for va in cands if v.start <= va < end
                          and self.page_matches(v, va, hit_of[va]))
            if not hits:
                if fault is not None:
                    raise TaskAbort(read_error(cmd.idx.dump_format()[0], fault[1]))
                continue
            page_flag = True
            if not header:
                cmd.header(t, False)
                cmd.mm_lines(t, tm)
                header = True
            if not vma_printed or last_vma != v.vma:
                cmd.vma_block(v)
                vma_printed, last_vma = True, v.vma
            cmd.sink.page_header()
            for va in hits:
                cmd.page_range(v, va, va + cmd.idx.page_size, hit_of[va])
            if fault is not None:
                raise TaskAbort(read_error(cmd.idx.dump_format()[0], fault[1]))
        if header:
            cmd.sink.blank()


# --- task arguments ---------------------------------------------------------------------
BADADDR = (1 << 64) - 1


def str_to_context(idx: DumpIndex, word: str):
    """crash's str_to_context (task.c): ("pid", value), ("task", address) or None.

    A word may be a decimal pid, a decimal task address, a hex pid or a hex task address;
    two readings that name different things make it invalid, except a decimal and a hex
    pid (then the decimal one wins). Hex is read by htol (x/X skipped, at most 16 digits
    after one 0x), so "0x" is pid 0 and "1x" pid 1; values that overflow are BADADDR."""
    dvalue = hvalue = BADADDR
    if is_decimal(word):
        dvalue = min(int(word), BADADDR)       # sscanf %lu saturates
    if is_hexadecimal(word):
        body = word[2:] if word[:2] in ("0x", "0X") else word
        if len(body) <= 16:
            hvalue = htol(body)
    dp = dt = hp = ht = False
    if dvalue != BADADDR:
        dp = bool(idx.tasks_by_pid(dvalue))
        dt = idx.task_at(dvalue) is not None
    if hvalue != BADADDR and dvalue != hvalue:
        hp = bool(idx.tasks_by_pid(hvalue))
        ht = idx.task_at(hvalue) is not None
    found = dp + dt + hp + ht
    if found == 2:
        return ("pid", dvalue) if dp and hp else None
    if found == 1:
        if dp:
            return ("pid", dvalue)
        if dt:
            return ("task", dvalue)
        if hp:
            return ("pid", hvalue)
        return ("task", hvalue)
    return None


def resolve_task(idx: DumpIndex, word: str) -> list[Task] | None:
    """The tasks a `vm` task argument names (every thread of a pid), None if invalid."""
    hit = str_to_context(idx, word)
    if hit is None:
        return None
    kind, v = hit
    return [idx.task_at(v)] if kind == "task" else idx.tasks_by_pid(v)


def _print_notes(out: Out, notes) -> None:
    for where, text in notes:
        (out.err if where == "err" else out.write)(text)


def run_vm(open_index, argv: list[str], out: Out, fmt: str = "text") -> int:
    """`vm ARGS`: returns the exit status (non-zero when crash reported an error)."""
    from vmdex.query.render.sinks import SINKS

    sink = None
    try:
        try:
            a = parse_vm(argv, lambda: open_index().page_offset,
                         lambda addr: open_index().untagged(addr))
        except Fatal as exc:
            _print_notes(out, getattr(exc, "notes", ()))
            raise
        _print_notes(out, a.notes)
        if a.flags_value is not None:
            idx = open_index()
            sink = SINKS[fmt](out, 8, None, idx.page_size)
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
                t = idx.task_at(idx.context)
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
                    if search is None:       # crash counts only printed task headers
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
