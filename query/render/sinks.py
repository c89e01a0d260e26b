"""Where `vm` answers go: crash's text, or the same facts as JSON / CSV.

VmCommand decides *what* is shown (crash's control flow); a sink decides *how*. The text
sink reproduces crash byte for byte; the JSON sink nests tasks → mm → VMAs → pages; the CSV
sink writes one row per VMA (plain `vm`) or per page (`-p`, `-P`, `-R`).
"""
from __future__ import annotations

import csv
import json

from vmdex.query.render import crashfmt as F

VECTOR_MIN_LINES = 48        # a stretch this long goes to numpy ...
VECTOR_AFTER_LINES = 50_000  # ... once the answer has this many page lines
VECTOR_CHUNK = 65_536


def _few(lines, n: int):
    """A short stretch's lines as a list (written in one go), a long one's left lazy."""
    return list(lines) if n <= 4096 else lines


def _hex(v):
    return None if v is None else f"{v:x}"


class TextSink:
    """crash 9.0.2's output, byte for byte."""

    def __init__(self, out, pwidth: int, swapdev, page: int):  # dumps.page_size
        self.page = page
        self.out, self.pw, self.swapdev = out, pwidth, swapdev
        self.count = 0   # page lines so far
        self.batch = None

    def header(self, t, newline: bool) -> None:
        self.out.write(("\n" if newline else "") + F.task_header(t.pid, t.task, t.cpu, t.comm))

    def mm(self, t, mm: int, pgd: int, rss_kb: int, tvm_kb: int) -> None:
        self.out.write(F.MM_HEADER + F.mm_line(mm, pgd, rss_kb, tvm_kb))

    def vma_header(self) -> None:
        self.out.write(F.VMA_HEADER)

    def vma(self, v) -> None:
        self.out.write(F.vma_line(v.vma, v.start, v.end, v.flags, v.path))

    def page_header(self) -> None:
        self.out.write(F.page_header(self.pw))

    # Page lines come by the million. Short stretches are formatted printf-style (mapped
    # over ranges: no per-line frame); once an answer is long, long stretches go to numpy
    # (render.pagelines), whose import would cost more than it saves on a small answer.
    def _vector(self, n: int) -> bool:
        self.count += n
        return n >= VECTOR_MIN_LINES and self.count >= VECTOR_AFTER_LINES

    def _vector_lines(self, lo: int, n: int, mid: bytes, second=None, width=0, tail=b""):
        from vmdex.query.render import pagelines

        ascii = mid.isascii()
        for chunk in pagelines.chunks(lo, n, self.page, mid, second, width, tail):
            self.out.write_bytes(chunk, ascii)   # bounded: a VMA may be 16 M lines

    def empty_pages(self, v, lo: int, hi: int) -> None:
        """Pages with no entry: FILE lines for file VMAs, `(not mapped)` otherwise."""
        n = (hi - lo) // self.page
        if v.path:
            base = v.start - v.pgoff * self.page
            if self._vector(n):
                mid = ("  FILE: " + v.path + "  OFFSET: ").encode("utf-8", "surrogateescape")
                self._vector_lines(lo, n, mid, lo - base, 0, b"\n")
                return
            fmt = "%-10x  FILE: " + v.path.replace("%", "%%") + "  OFFSET: %x\n"
            self.out.lines(_few(map(fmt.__mod__, zip(range(lo, hi, self.page),
                                                     range(lo - base, hi - base, self.page))), n))
        elif self._vector(n):
            self._vector_lines(lo, n, b"  (not mapped)\n")
        else:
            self.out.lines(_few(map("%-10x  (not mapped)\n".__mod__, range(lo, hi, self.page)), n))

    def present_pages(self, v, lo: int, hi: int, pa: int) -> None:
        n = (hi - lo) // self.page
        if self.count >= VECTOR_AFTER_LINES:
            self.count += n
            if self.batch is None:
                from vmdex.query.render.pagelines import PresentBatch

                self.batch = PresentBatch(self.out, self.pw, self.page)
                self.out.pending = self.batch.flush
            if self.batch.fits(lo, n, pa):
                self.batch.add(lo, n, pa)
            else:
                self._vector_lines(lo, n, b"  ", pa, self.pw, b"\n")
            return
        self.count += n
        fmt = "%%-10x  %%%dx\n" % self.pw
        self.out.lines(_few(map(fmt.__mod__, zip(range(lo, hi, self.page),
                                                 range(pa, pa + hi - lo, self.page))), n))

    def swap_pages(self, v, lo: int, hi: int, typ: int, offset: int) -> None:
        fmt = "%-10x  SWAP: " + self.swapdev(typ).replace("%", "%%") + "  OFFSET: %d\n"
        n = (hi - lo) // self.page
        self.out.lines(map(fmt.__mod__, zip(range(lo, hi, self.page), range(offset, offset + n))))

    def text(self, s: str) -> None:
        self.out.write(s)

    def blank(self) -> None:
        self.out.write("\n")

    def struct(self, name: str, text: str) -> None:
        self.out.write(text)

    def flags(self, value: int, names: list[str]) -> None:
        self.out.write(f"{value:x}: ({'|'.join(names)})\n")

    def close(self) -> None:
        pass


class JsonSink:
    """One JSON document {"tasks": [...], "messages": [...], "flags": {...}}, written as it
    goes (a `foreach vm -p` of a big dump is tens of millions of pages: nothing is held).
    Addresses are hex strings as crash prints them; counts and swap offsets are numbers."""

    def __init__(self, out, pwidth: int, swapdev, page: int):  # dumps.page_size
        self.page = page
        self.out, self.swapdev = out, swapdev
        self.messages: list[str] = []
        self.flag_rec: dict | None = None
        self.tasks = 0            # tasks written so far
        self.open: list[str] = []  # what is open inside the current task: "vmas", "vma", ...
        self.items = 0            # items written in the innermost open list
        self.count = 0            # page records so far
        self.out.write('{"tasks": [')

    def _w(self, s: str) -> None:
        self.out.write(s)

    def _close_to(self, depth: int) -> None:
        """Close open lists/objects until `depth` of them remain inside the task."""
        while len(self.open) > depth:
            what = self.open.pop()
            self._w("]" if what in ("vmas", "pages", "structs") else "}")
            self.items = 1

    def _end_task(self) -> None:
        if self.tasks and self.open is not None:
            self._close_to(0)
            self._w("}")

    def header(self, t, newline: bool) -> None:
        self._end_task()
        self._w(("," if self.tasks else "") + "\n " + json.dumps(
            {"pid": t.pid, "task": _hex(t.task), "cpu": t.cpu, "command": t.comm})[:-1])
        self.tasks += 1
        self.open = []

    def mm(self, t, mm, pgd, rss_kb, tvm_kb) -> None:
        self._w(', "mm": ' + json.dumps({"mm": _hex(mm), "pgd": _hex(pgd), "rss_kb": rss_kb,
                                        "total_vm_kb": tvm_kb}))

    def vma_header(self) -> None:
        pass

    def vma(self, v) -> None:
        if "vmas" not in self.open:
            self._w(', "vmas": [')
            self.open, self.items = ["vmas"], 0
        self._close_to(1)
        self._w(("," if self.items else "") + "\n  " + json.dumps(
            {"vma": _hex(v.vma), "start": _hex(v.start), "end": _hex(v.end),
             "flags": _hex(v.flags), "file": v.path or None})[:-1])
        self.open.append("vma")

    def page_header(self) -> None:
        if self.open and self.open[-1] == "vma":
            self._w(', "pages": [')
            self.open.append("pages")
            self.items = 0

    def _pages(self, records) -> None:
        for rec in records:
            self._w(("," if self.items else "") + "\n   " + json.dumps(rec))
            self.items = 1

    # Page records come by the million: each kind has a fixed layout around its numbers
    # (what json.dumps prints for the record), so they are formatted printf-style, and a
    # long stretch of a long answer in bulk (render.pagelines), like the text sink's lines.
    def _records(self, lo: int, hi: int, layout: str, second=None) -> None:
        """Records ',\n   ' + layout % (va, second...) for the pages lo..hi."""
        n = (hi - lo) // self.page
        if not self.items and n:     # the list's first record has no comma before it
            self._w("\n   " + (layout % ((lo,) if second is None else (lo, second))))
            self.items = 1
            lo, n = lo + self.page, n - 1
            second = None if second is None else second + self.page
        self.count += n
        if n >= VECTOR_MIN_LINES and self.count >= VECTOR_AFTER_LINES:
            _bulk_records(self.out, ",\n   " + layout, lo, n, self.page, second)
            return
        fmt = ",\n   " + layout
        if second is None:
            self.out.lines(map(fmt.__mod__, range(lo, lo + n * self.page, self.page)))
        else:
            self.out.lines(map(fmt.__mod__, zip(range(lo, lo + n * self.page, self.page),
                                                range(second, second + n * self.page, self.page))))

    def empty_pages(self, v, lo, hi) -> None:
        if v.path:
            base = v.start - v.pgoff * self.page
            name = json.dumps(v.path).replace("%", "%%")
            self._records(lo, hi, '{"virtual": "%x", "kind": "file", "file": ' + name
                          + ', "offset": "%x"}', lo - base)
        else:
            self._records(lo, hi, '{"virtual": "%x", "kind": "not_mapped"}')

    def present_pages(self, v, lo, hi, pa) -> None:
        self._records(lo, hi, '{"virtual": "%x", "kind": "present", "physical": "%x"}', pa)

    def swap_pages(self, v, lo, hi, typ, offset) -> None:
        dev = self.swapdev(typ)
        self._pages({"virtual": _hex(va), "kind": "swap", "device": dev,
                     "offset": offset + (va - lo) // self.page} for va in range(lo, hi, self.page))

    def text(self, s: str) -> None:
        self.messages.append(s.strip("\n"))

    def blank(self) -> None:
        pass

    def struct(self, name: str, text: str) -> None:
        if "structs" not in self.open:
            self._close_to(0)
            self._w(', "structs": [')
            self.open, self.items = ["structs"], 0
        self._w(("," if self.items else "") + "\n  " + json.dumps({"type": name, "gdb": text}))
        self.items = 1

    def flags(self, value: int, names: list[str]) -> None:
        self.flag_rec = {"value": _hex(value), "names": names}

    def close(self) -> None:
        self._end_task()
        self._w("\n]")
        if self.messages:
            self._w(', "messages": ' + json.dumps(self.messages))
        if self.flag_rec is not None:
            self._w(', "flags": ' + json.dumps(self.flag_rec))
        self._w("}\n")


class CsvSink:
    """Rows: one per page when pages are listed, else one per VMA (else one per task)."""

    COLS = ["pid", "task", "command", "mm", "pgd", "rss_kb", "total_vm_kb", "vma", "start",
            "end", "flags", "file", "virtual", "kind", "physical", "swap_device",
            "swap_offset", "file_offset"]

    def __init__(self, out, pwidth: int, swapdev, page: int):  # dumps.page_size
        self.page = page
        self.out, self.swapdev = out, swapdev
        self.w = csv.writer(_Writer(out), lineterminator="\n")
        self.started = False
        self.row: dict = {}
        self.pending = None   # a task or VMA row not yet covered by a more detailed row
        self.count = 0        # page rows so far

    def _emit(self, **more) -> None:
        if not self.started:
            self.w.writerow(self.COLS)
            self.started = True
        r = {**self.row, **more}
        self.w.writerow([r.get(c, "") if r.get(c) is not None else "" for c in self.COLS])

    def _flush_pending(self) -> None:
        if self.pending is not None:
            self._emit(**self.pending)
            self.pending = None

    def header(self, t, newline) -> None:
        self._flush_pending()
        self.row = {"pid": t.pid, "task": _hex(t.task), "command": t.comm}
        self.pending = {}

    def mm(self, t, mm, pgd, rss_kb, tvm_kb) -> None:
        self.row.update(mm=_hex(mm), pgd=_hex(pgd), rss_kb=rss_kb, total_vm_kb=tvm_kb)
        self.pending = {}

    def vma_header(self) -> None:
        pass

    def vma(self, v) -> None:
        if self.pending is not None and "vma" in self.row:
            self._emit()
        self.pending = None
        self.row.update(vma=_hex(v.vma), start=_hex(v.start), end=_hex(v.end),
                        flags=_hex(v.flags), file=v.path or "")
        self.pending = {}

    def page_header(self) -> None:
        self.pending = None

    # One row per page: the columns before `virtual` are the task's and the VMA's, the same
    # for every page of a stretch, so they are quoted once and the rows are formatted
    # printf-style, or in bulk for a long stretch of a long answer (render.pagelines).
    def _rows(self, lo: int, hi: int, tail: str, second=None) -> None:
        """Rows prefix + '%x,' + tail % second... for the pages lo..hi."""
        n = (hi - lo) // self.page
        if not self.started and n:   # the header row first, through the csv writer
            self._page_row(lo, tail, second)
            lo, n = lo + self.page, n - 1
            second = None if second is None else second + self.page
        self.count += n
        fmt = self._prefix().replace("%", "%%") + "%x," + tail
        if n >= VECTOR_MIN_LINES and self.count >= VECTOR_AFTER_LINES:
            _bulk_records(self.out, fmt, lo, n, self.page, second)
        elif second is None:
            self.out.lines(map(fmt.__mod__, range(lo, lo + n * self.page, self.page)))
        else:
            self.out.lines(map(fmt.__mod__, zip(range(lo, lo + n * self.page, self.page),
                                                range(second, second + n * self.page, self.page))))

    def _page_row(self, va: int, tail: str, second) -> None:
        kind = tail.split(",")[0]
        if kind == "present":
            self._emit(virtual=_hex(va), kind=kind, physical=_hex(second))
        elif kind == "file":
            self._emit(virtual=_hex(va), kind=kind, file_offset=_hex(second))
        else:
            self._emit(virtual=_hex(va), kind=kind)

    def _prefix(self) -> str:
        """The row's columns up to `file`, as the csv writer quotes them, and a comma."""
        import io

        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(
            [self.row.get(c) if self.row.get(c) is not None else "" for c in self.COLS[:12]])
        return buf.getvalue()[:-1] + ","

    def empty_pages(self, v, lo, hi) -> None:
        if v.path:
            self._rows(lo, hi, "file,,,,%x\n", (lo - v.start) + v.pgoff * self.page)
        else:
            self._rows(lo, hi, "not_mapped,,,,\n")

    def present_pages(self, v, lo, hi, pa) -> None:
        self._rows(lo, hi, "present,%x,,,\n", pa)

    def swap_pages(self, v, lo, hi, typ, offset) -> None:
        dev = self.swapdev(typ)
        for va in range(lo, hi, self.page):
            self._emit(virtual=_hex(va), kind="swap", swap_device=dev,
                       swap_offset=offset + (va - lo) // self.page)

    def text(self, s: str) -> None:
        self.out.err(s if s.startswith(("vm:", "foreach:")) else "vm: " + s.strip("\n") + "\n")

    def blank(self) -> None:
        pass

    def struct(self, name, text) -> None:
        from vmdex.query.words import Fatal
        raise Fatal("vm: -m and -v print structures: use --format text or json\n")

    def flags(self, value, names) -> None:
        self.w.writerow(["value", "names"])
        self.w.writerow([_hex(value), "|".join(names)])

    def close(self) -> None:
        self._flush_pending()


def _bulk_records(out, fmt: str, lo: int, n: int, page: int, second) -> None:
    """n records `fmt % (va[, second])` (fmt: text, "%x", text[, "%x", text]; no other
    conversion) for the pages from lo, rendered in bulk by render.pagelines."""
    from vmdex.query.render import pagelines

    parts = (fmt.replace("%%", "\0").split("%x") + [""])[:3]    # (NUL: in no path or name)
    pre, mid, tail = (x.replace("\0", "%").encode("utf-8", "surrogateescape") for x in parts)
    ascii = (pre + mid + tail).isascii()
    for chunk in pagelines.chunks(lo, n, page, mid, second, 0, tail, pre=pre, vwidth=0):
        out.write_bytes(chunk, ascii)


class _Writer:
    def __init__(self, out):
        self.out = out

    def write(self, s):
        self.out.write(s)


SINKS = {"text": TextSink, "json": JsonSink, "csv": CsvSink}
