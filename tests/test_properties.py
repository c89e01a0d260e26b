"""Property tests: whatever the bytes, only VmdexError subclasses escape, and nothing hangs.

* the dump readers (`open_dump`, then reads) on random files and on real headers with
  random bytes changed;
* the maple-tree and VMA-list decoders, and the page-table walker, on random kernel
  memory. Memory is a real `PhysicalMemory` (the readers' interface) over a dict of
  pages; the layouts are the real fixture kernels' DWARF. No kernel structure is mocked:
  the walkers read raw bytes, as they do from a dump.

Bounded for CI: few examples each, no deadline per example, a wall-clock cap per call.
"""
from __future__ import annotations

import signal
import struct
import time
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmdex.indexer.dumpfile import open_dump
from vmdex.indexer.dumpfile.memory import ABSENT, PRESENT, PhysicalMemory
from vmdex.indexer.errors import OutOfDump, VmdexError
from tests import damage as D
from tests import fixturedata as fd

K61 = "linux-6.1.0-56-amd64"
K510 = "linux-5.10.0-32-cloud-amd64"
PAGE = 4096
PAGE_OFFSET = 0xFFFF888000000000
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                       HealthCheck.function_scoped_fixture])


@contextmanager
def within(seconds: int):
    """Fail (rather than hang the suite) if the body runs longer than `seconds`."""
    def _alarm(*_):
        raise TimeoutError(f"still running after {seconds}s")

    prev = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, prev)


def exercise(m: PhysicalMemory, pfns) -> None:
    """Read a few pages of an opened dump; each read succeeds or raises a VmdexError."""
    for pfn in pfns:
        try:
            state = m.page_state(pfn)
            page = m.read_page(pfn)
            assert len(page) == m.page_size
            assert state == PRESENT or m.format == "elf"
        except VmdexError:
            pass
        try:
            m.read(pfn * PAGE + PAGE - 3, 10)   # straddles two pages
        except VmdexError:
            pass


def open_and_read(path, pfns) -> None:
    with within(20):
        try:
            m = open_dump(path)
        except VmdexError as e:
            assert str(path) in str(e) and "\n" not in str(e)
            return
        with m:
            exercise(m, pfns)


# --- dump readers -------------------------------------------------------------------------
PFNS = st.lists(st.integers(min_value=0, max_value=1 << 21), max_size=6)
MAGICS = st.sampled_from([b"", b"\x7fELF\x02\x01\x01", b"KDUMP   ", b"DISKDUMP",
                          b"makedumpfile\0\0\0\0"])


@settings(max_examples=300, **SETTINGS)
@given(magic=MAGICS, body=st.binary(max_size=6000), pfns=PFNS)
def test_open_dump_random_bytes(tmp_path, magic, body, pfns):
    p = tmp_path / "random.dump"
    p.write_bytes(magic + body)
    open_and_read(p, pfns)


@pytest.fixture(scope="module")
def dump_copies(tmp_path_factory):
    """Private copies of real dumps, mutated in place per example and restored."""
    d = tmp_path_factory.mktemp("props")
    kd = D.sparse_copy(fd.dump(K510, "vmcore.mdf-c-d31"), d / "kdump")
    flat = D.sparse_copy(fd.dump(K61, "vmcore.kdump-zlib"), d / "flat")
    # A small ELF core: the first 300 pages of the 5.10 dump and its notes.
    src = fd.dump(K510, "vmcore.mdf-c-d31")
    L = D.kdump_layout(src)
    with open(src, "rb") as f:
        f.seek(L.notes[0])
        notes = f.read(L.notes[1])
    with open_dump(src) as m:
        pfns = [p for p, _ in zip(L.dumpable_pfns(), range(300))]
        elf = D.elf_core_from_pages(d / "elf", ((p, m.read_page(p)) for p in pfns), notes)
    return {"kdump": (kd, D.kdump_layout(kd)), "flat": (flat, None), "elf": (elf, None)}


def _header_span(kind: str, L) -> int:
    if kind == "kdump":
        return L.data + 24 * 50       # headers, bitmaps, descriptors, some page data
    if kind == "flat":
        return 40000                  # flattened header and the first records
    return 4096                       # ELF header, program headers, notes


@settings(max_examples=300, **SETTINGS)
@given(kind=st.sampled_from(["kdump", "flat", "elf"]),
       edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.binary(min_size=1,
                                                                             max_size=8)),
                      min_size=1, max_size=6),
       pfns=PFNS)
def test_mutated_headers(dump_copies, kind, edits, pfns):
    path, L = dump_copies[kind]
    span = _header_span(kind, L)
    # Bias half of the edits to the first 512 bytes, where the header fields are.
    patches = {}
    for i, (where, data) in enumerate(edits):
        at = int(where * (512 if i % 2 == 0 else span))
        patches[at] = data
    old = D.patch(path, patches)
    try:
        open_and_read(path, pfns + [0x1c720910 >> 12, 0x19c15740 >> 12])
    finally:
        D.unpatch(path, old)


# --- kernel memory made of bytes ----------------------------------------------------------
class BytesMemory(PhysicalMemory):
    """Physical memory over a dict {pfn: 4096 bytes}; other pages are not in the dump."""

    format = "elf"

    def __init__(self, pages: dict[int, bytes]):
        super().__init__("<bytes>")
        self.pages = pages

    def _load_page(self, pfn: int, paddr: int) -> bytes:
        if pfn not in self.pages:
            raise OutOfDump(paddr)
        return self.pages[pfn]

    def page_state(self, pfn: int) -> str:
        return PRESENT if pfn in self.pages else ABSENT


@pytest.fixture(scope="module")
def kernels():
    from vmdex.indexer.kernel.types import load_kernel_types

    return {k: load_kernel_types(fd.vmlinux(k)) for k in (K61, K510)}


def make_kernel(kernel_types, pages: dict[int, bytes]):
    from vmdex.indexer.walk.kernel import Kernel
    from vmdex.indexer.arch.memory import KernelMemory
    from vmdex.indexer.arch.x86_64 import X86_64

    types, symtab = kernel_types
    paging = X86_64(levels=4, page_offset=PAGE_OFFSET, phys_base=0)
    mem = KernelMemory(BytesMemory(pages), paging)
    return Kernel(mem, types, symtab.address, 0)


NPAGES = 16   # pfns 1..16 hold the random structures; everything else is absent


def kva(pfn: int, off: int = 0) -> int:
    return PAGE_OFFSET + pfn * PAGE + off


@st.composite
def pointer_soup(draw, node_align: int):
    """Pages of 8-byte words, each a pointer back into these pages (maybe with maple /
    xarray tag bits), zero, or junk: the shape of damaged slab memory."""
    inside = st.builds(lambda p, o, tag: kva(p, o * node_align) | tag,
                       st.integers(1, NPAGES), st.integers(0, PAGE // node_align - 1),
                       st.sampled_from([0, 2, 0x0C | 2, 0x10 | 2, 0x18 | 2, 0x1C | 2]))
    word = st.one_of(inside, st.just(0), st.integers(0, (1 << 64) - 1),
                     st.integers(0, 1 << 20))
    pages = {}
    for pfn in range(1, NPAGES + 1):
        head = draw(st.lists(word, min_size=8, max_size=64))
        words = (head * (512 // len(head) + 1))[:512]
        pages[pfn] = struct.pack("<512Q", *words)
    return pages


@settings(max_examples=60, **SETTINGS)
@given(pages=pointer_soup(256), root_pfn=st.integers(1, NPAGES), root_slot=st.integers(0, 15),
       tag=st.sampled_from([0x0C | 2, 0x10 | 2, 0x18 | 2, 2, 0]))
def test_maple_tree_on_random_nodes(kernels, pages, root_pfn, root_slot, tag):
    from vmdex.indexer.walk.vmas import vma_addresses

    k = make_kernel(kernels[K61], pages)
    # An mm_struct in page 17 whose mm_mt.ma_root points at a random node.
    mm_pfn = NPAGES + 1
    mm = bytearray(PAGE)
    root_off = k.off("mm_struct", "mm_mt") + k.off("maple_tree", "ma_root")
    struct.pack_into("<Q", mm, root_off, kva(root_pfn, root_slot * 256) | tag)
    pages[mm_pfn] = bytes(mm)
    errors: list[str] = []
    t0 = time.monotonic()
    with within(20):
        out = vma_addresses(k, kva(mm_pfn), errors)
    assert time.monotonic() - t0 < 10
    assert isinstance(out, list) and all(isinstance(v, int) for v in out)
    assert all(isinstance(e, str) and "\n" not in e for e in errors)


@settings(max_examples=60, **SETTINGS)
@given(pages=pointer_soup(8), first=st.integers(0, (1 << 64) - 1) | st.builds(
    lambda p, o: kva(p, 8 * o), st.integers(1, NPAGES), st.integers(0, 511)),
    map_count=st.integers(-5, 1 << 31))
def test_vma_list_on_random_memory(kernels, pages, first, map_count):
    from vmdex.indexer.walk.vmas import vma_addresses

    k = make_kernel(kernels[K510], pages)
    mm_pfn = NPAGES + 1
    mm = bytearray(PAGE)
    struct.pack_into("<Q", mm, k.off("mm_struct", "mmap"), first)
    pages[mm_pfn] = bytes(mm)
    errors: list[str] = []
    with within(20):
        out = vma_addresses(k, kva(mm_pfn), errors, map_count)
    assert len(out) == len(set(out))            # a cycle is cut, never repeated


@settings(max_examples=40, **SETTINGS)
@given(pages=pointer_soup(8), kernel=st.sampled_from([K61, K510]))
def test_read_mm_on_random_memory(kernels, pages, kernel):
    """The whole mm reader (counters, VMAs, paths) over random memory."""
    from vmdex.indexer.walk.mm import read_mm
    from vmdex.indexer.walk.paths import PathResolver

    k = make_kernel(kernels[kernel], pages)
    errors: list[str] = []
    with within(20):
        try:
            k._pco = [0, 0]                    # per-CPU offsets: two CPUs at offset 0
            mm = read_mm(k, kva(1), PathResolver(k), errors)
        except VmdexError:
            return
    assert all(isinstance(v.start, int) for v in mm.vmas)


@settings(max_examples=40, **SETTINGS)
@given(pages=pointer_soup(8), slot=st.integers(0, 63))
def test_pid_xarray_on_random_nodes(kernels, pages, slot):
    from vmdex.indexer.walk.tasks import _xarray_entries

    k = make_kernel(kernels[K61], pages)
    errors: list[str] = []
    with within(20):
        out = list(_xarray_entries(k, kva(1 + slot % NPAGES, 8 * slot) | 2, errors))
    assert all(isinstance(e, int) for e in out)


# --- page tables ----------------------------------------------------------------------------
@st.composite
def page_tables(draw):
    """16 table pages whose entries point at each other (present or not, huge or not),
    outside the dump, or are junk."""
    entry = st.one_of(
        st.builds(lambda p, flags: p * PAGE | flags, st.integers(0, NPAGES + 2),
                  st.sampled_from([0x67, 0x25, 0xE7, 0x100, 0x66, 0x1])),
        st.just(0), st.integers(0, (1 << 64) - 1))
    pages = {}
    for pfn in range(1, NPAGES + 1):
        head = draw(st.lists(entry, min_size=1, max_size=32))
        words = (head * (512 // len(head) + 1))[:512]
        pages[pfn] = struct.pack("<512Q", *words)
    return pages


@settings(max_examples=80, **SETTINGS)
@given(pages=page_tables(), top=st.integers(0, NPAGES + 2), levels=st.sampled_from([4, 5]),
       ranges=st.lists(st.tuples(st.integers(0, 1 << 47), st.integers(1, 1 << 36)),
                       max_size=5) | st.none())
def test_walk_user_tables_on_random_pages(pages, top, levels, ranges):
    from vmdex.indexer.walk.pages import build_runs
    from vmdex.indexer.arch.pagewalk import walk_user_tables
    from vmdex.indexer.arch.x86_64 import X86_64

    paging = X86_64(levels=levels, page_offset=PAGE_OFFSET, phys_base=0)
    phys = BytesMemory(pages)
    user_top = 1 << (56 if levels == 5 else 47)
    vmas = None
    if ranges is not None:
        vmas, at = [], 0
        for start, length in sorted(ranges):   # sorted, non-overlapping, page aligned
            start = max(start, at) & ~(PAGE - 1)
            end = (start + length + PAGE - 1) & ~(PAGE - 1)
            vmas.append((start, end))
            at = end
    with within(30):
        batch, faults = walk_user_tables(phys, paging, top * PAGE, user_top, vmas)
        runs = build_runs(batch, vmas or [(0, user_top)], paging)
    assert len(batch.va) == len(batch.value) == len(batch.kind)
    assert all(f.va_start < f.va_end for f in faults)
    assert int(np.sum(runs.npages)) <= int(np.sum(batch.npages))
