"""The bulk page-line renderer (query.render.pagelines) against the printf-style lines the
crash oracles verify (sinks.TextSink's small-answer path): the same text for any address,
including stretches that cross a power of 16 in either number, and batches of many runs,
for each arm64 page size (4, 16 and 64 KiB)."""
from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from vmdex.query.render import pagelines as P
from vmdex.query.render.sinks import TextSink

PAGE_SIZES = st.sampled_from([4096, 16384, 65536])


def addresses(page):
    pages = st.integers(0, (1 << 52) // page).map(lambda p: p * page)
    near_power = st.builds(lambda k, d: max(0, (16 ** k) - d * page),
                           st.integers(3, 13), st.integers(0, 40))
    return st.one_of(pages, near_power)


def printf_present(va, n, pa, pw, page):
    return "".join("%-10x  %*x\n" % (v, pw, p)
                   for v, p in zip(range(va, va + n * page, page), range(pa, pa + n * page, page)))


@settings(max_examples=300, deadline=None)
@given(st.data(), PAGE_SIZES, st.integers(1, 300), st.integers(1, 16))
def test_present_lines(data, page, n, pw):
    va, pa = data.draw(addresses(page)), data.draw(addresses(page))
    assert P.lines(va, n, b"  ", pa, pw, b"\n", page=page) == printf_present(va, n, pa, pw, page)


@settings(max_examples=200, deadline=None)
@given(st.data(), PAGE_SIZES, st.integers(1, 300), st.text(min_size=1, max_size=20))
def test_file_and_unmapped_lines(data, page, n, path):
    va = data.draw(addresses(page))
    off = va // 3 // page * page
    want = "".join("%-10x  FILE: %s  OFFSET: %x\n" % (v, path, v - va + off)
                   for v in range(va, va + n * page, page))
    mid = ("  FILE: " + path + "  OFFSET: ").encode("utf-8", "surrogateescape")
    assert P.lines(va, n, mid, off, 0, b"\n", page=page) == want
    assert P.lines(va, n, b"  (not mapped)\n", page=page) == "".join(
        "%-10x  (not mapped)\n" % v for v in range(va, va + n * page, page))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 600), st.integers(0, 1 << 20)), min_size=1,
                max_size=40), st.sampled_from([0x400000, 0x7ff000000000, 0xffff0000]),
       st.integers(7, 12), PAGE_SIZES)
def test_batched_runs(runs, va0, pw, page):
    """Many runs through the sink's batch, next to unmapped gaps, as `vm -p` prints them."""
    class Out:
        def __init__(self):
            self.text, self.pending = io.StringIO(), None

        def write(self, s):
            if self.pending is not None:
                self.pending()
            self.text.write(s)

        def lines(self, it):
            self.write("".join(it))

    class Vma:
        path = None

    fast, slow = Out(), Out()
    sink_fast, sink_slow = TextSink(fast, pw, None, page), TextSink(slow, pw, None, page)
    sink_fast.count = 10 ** 9          # past the threshold: every stretch in bulk
    sink_slow.count = -10 ** 12        # never reaches it: printf-style
    va = va0
    for n, pfn in runs:
        for sink in (sink_fast, sink_slow):
            sink.present_pages(Vma, va, va + n * page, pfn * page)
            sink.empty_pages(Vma, va + n * page, va + (n + 1) * page)
        va += (n + 1) * page
    fast.write("")                     # settles the batch
    assert fast.text.getvalue() == slow.text.getvalue()
