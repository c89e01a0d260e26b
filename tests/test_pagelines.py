"""The bulk page-line renderer (query.render.pagelines) against the printf-style lines the
crash oracles verify (sinks.TextSink's small-answer path): the same text for any address,
including stretches that cross a power of 16 in either number, and batches of many runs,
for each arm64 page size (4, 16 and 64 KiB)."""
from __future__ import annotations

import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from vmdex.query.render import pagelines as P
from vmdex.query.render.sinks import CsvSink, JsonSink, TextSink
from vmdex.query.vm import Out


class Answer:
    """vmdex's own output path (query.vm.Out) into a UTF-8 text stream over bytes, as
    stdout is: bulk lines take its byte stream, the rest its text layer."""

    def __init__(self):
        self.bytes = io.BytesIO()
        self.out = Out(io.TextIOWrapper(self.bytes, encoding="utf-8", errors="surrogateescape",
                                        write_through=True), io.StringIO())

    def text(self) -> str:
        self.out.flush()
        return self.bytes.getvalue().decode("utf-8", "surrogateescape")

PAGE_SIZES = st.sampled_from([4096, 16384, 65536])


def addresses(page):
    pages = st.integers(0, (1 << 52) // page).map(lambda p: p * page)
    near_power = st.builds(lambda k, d: max(0, (16 ** k) - d * page),
                           st.integers(3, 13), st.integers(0, 40))
    return st.one_of(pages, near_power)


def lines(va, n, page, mid, second=None, swidth=0, tail=b""):
    """The text of P.chunks' lines (what the sinks write)."""
    return b"".join(bytes(c) for c in P.chunks(va, n, page, mid, second, swidth, tail)).decode(
        "utf-8", "surrogateescape")


def printf_present(va, n, pa, pw, page):
    return "".join("%-10x  %*x\n" % (v, pw, p)
                   for v, p in zip(range(va, va + n * page, page), range(pa, pa + n * page, page)))


@settings(max_examples=300, deadline=None)
@given(st.data(), PAGE_SIZES, st.integers(1, 300), st.integers(1, 16))
def test_present_lines(data, page, n, pw):
    va, pa = data.draw(addresses(page)), data.draw(addresses(page))
    assert lines(va, n, page, b"  ", pa, pw, b"\n") == printf_present(va, n, pa, pw, page)


@settings(max_examples=200, deadline=None)
@given(st.data(), PAGE_SIZES, st.integers(1, 300), st.text(min_size=1, max_size=20))
def test_file_and_unmapped_lines(data, page, n, path):
    va = data.draw(addresses(page))
    off = va // 3 // page * page
    want = "".join("%-10x  FILE: %s  OFFSET: %x\n" % (v, path, v - va + off)
                   for v in range(va, va + n * page, page))
    mid = ("  FILE: " + path + "  OFFSET: ").encode("utf-8", "surrogateescape")
    assert lines(va, n, page, mid, off, 0, b"\n") == want
    assert lines(va, n, page, b"  (not mapped)\n") == "".join(
        "%-10x  (not mapped)\n" % v for v in range(va, va + n * page, page))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 600), st.integers(0, 1 << 20)), min_size=1,
                max_size=40), st.sampled_from([0x400000, 0x7ff000000000, 0xffff0000]),
       st.integers(7, 12), PAGE_SIZES)
def test_batched_runs(runs, va0, pw, page):
    """Many runs through the sink's batch, next to unmapped gaps, as `vm -p` prints them."""
    fast, slow = Answer(), Answer()

    class Vma:
        path = None

    sink_fast, sink_slow = TextSink(fast.out, pw, None, page), TextSink(slow.out, pw, None, page)
    sink_fast.count = 10 ** 9          # past the threshold: every stretch in bulk
    sink_slow.count = -10 ** 12        # never reaches it: printf-style
    va = va0
    for n, pfn in runs:
        for sink in (sink_fast, sink_slow):
            sink.present_pages(Vma, va, va + n * page, pfn * page)
            sink.empty_pages(Vma, va + n * page, va + (n + 1) * page)
        va += (n + 1) * page
    assert fast.text() == slow.text()


@settings(max_examples=150, deadline=None)
@given(st.data(), PAGE_SIZES, st.sampled_from([1, 17, 300, 5000, 70_000, 600_000]),
       st.sampled_from([b"", b',\n   {"virtual": "']), st.sampled_from([0, 10]),
       st.booleans(), st.integers(0, 16))
def test_chunks(data, page, n, pre, vwidth, with_second, swidth):
    """Whole-block lines (a template per 16**L block) against one printf per line, for
    stretches long enough to span blocks and digit-count changes of either number."""
    va = data.draw(addresses(page))
    second = data.draw(addresses(page)) if with_second else None
    want = []
    for i in range(n):
        line = "%s%-*x  X: " % (pre.decode(), vwidth, va + i * page)
        if second is not None:
            line += "%*x" % (swidth, second + i * page)
        want.append(line + "\n")
    got = b"".join(bytes(c) for c in P.chunks(va, n, page, b"  X: ", second, swidth, b"\n",
                                               pre=pre, vwidth=vwidth))
    assert got.decode() == "".join(want)


class Task:
    pid, task, cpu, comm = 7, 0xffff888000001000, 1, "a,b\"c"


class FileVma:
    vma, start, end, flags, pgoff, path = 0xffff888000002000, 0x10000, 0, 0x75, 3, "/x/%s,\"y"


def stretches(sink, runs, page, path):
    """The task, one VMA and its pages: runs of present pages with gaps between."""
    v = FileVma()
    v.path = path
    v.end = v.start + sum(n + gap for n, _, gap in runs) * page
    sink.header(Task, False)
    sink.mm(Task, 0xffff888000003000, 0x1234000, 40, 800)
    sink.vma_header()
    sink.vma(v)
    sink.page_header()
    va = v.start
    for n, pfn, gap in runs:
        sink.present_pages(v, va, va + n * page, pfn * page)
        sink.empty_pages(v, va + n * page, va + (n + gap) * page)
        va += (n + gap) * page
    sink.close()
    return v


def expected_pages(v, runs, page):
    """(virtual, kind, physical or file offset) of each page, from the runs themselves."""
    out, va = [], v.start
    for n, pfn, gap in runs:
        out += [(va + i * page, "present", (pfn + i) * page) for i in range(n)]
        va += n * page
        out += [(va + i * page, "file" if v.path else "not_mapped",
                 va + i * page - v.start + v.pgoff * page if v.path else None)
                for i in range(gap)]
        va += gap * page
    return out


RUNS = st.lists(st.tuples(st.integers(1, 300), st.integers(0, 1 << 30),
                          st.sampled_from([0, 1, 60, 20_000])), min_size=1, max_size=8)


@settings(max_examples=40, deadline=None)
@given(RUNS, PAGE_SIZES, st.sampled_from([None, "/lib/x.so", "/x/%s,\"y\u00e9"]),
       st.booleans())
def test_json_pages(runs, page, path, bulk):
    """JSON page records, printf-style or in bulk, read back as the facts they carry."""
    a = Answer()
    sink = JsonSink(a.out, 8, None, page)
    sink.count = 10 ** 9 if bulk else -10 ** 12
    v = stretches(sink, runs, page, path)
    doc = json.loads(a.text())
    pages = doc["tasks"][0]["vmas"][0]["pages"]
    got = [(int(p["virtual"], 16), p["kind"],
            int(p.get("physical") or p.get("offset") or "-1", 16)) for p in pages]
    want = [(va, kind, -1 if x is None else x) for va, kind, x in expected_pages(v, runs, page)]
    assert got == want
    assert all(p.get("file") == path for p in pages if p["kind"] == "file")


@settings(max_examples=40, deadline=None)
@given(RUNS, PAGE_SIZES, st.sampled_from([None, "/lib/x.so", "/x/%s,\"y\u00e9"]),
       st.booleans())
def test_csv_pages(runs, page, path, bulk):
    """CSV page rows, printf-style or in bulk, read back with the csv module."""
    import csv

    a = Answer()
    sink = CsvSink(a.out, 8, None, page)
    sink.count = 10 ** 9 if bulk else -10 ** 12
    v = stretches(sink, runs, page, path)
    rows = list(csv.DictReader(io.StringIO(a.text())))
    assert {r["command"] for r in rows} == {Task.comm}
    assert {r["file"] for r in rows} == {path or ""}
    got = [(int(r["virtual"], 16), r["kind"],
            int(r["physical"] or r["file_offset"] or "-1", 16)) for r in rows]
    want = [(va, kind, -1 if x is None else x) for va, kind, x in expected_pages(v, runs, page)]
    assert got == want
