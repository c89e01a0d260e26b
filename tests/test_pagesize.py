"""arm64 page sizes other than 4 KiB: the 16 KiB and 64 KiB granules on page tables built by
hand in memory (no Debian kernel has 64 KiB pages; the 16 KiB path is also checked on real
arm64-16k dumps by the kernel matrix, tests/kernels). Geometry, blocks, the small top
tables, runs of big leaves and the layouts crash 9.0.2 refuses, all as arm64.c reads them
(arm64_vtop_{2,3,4}level_16k, arm64_vtop_{2,3}level_64k)."""
from __future__ import annotations

import numpy as np
import pytest

from vmdex.indexer.arch import detect
from vmdex.indexer.arch.base import LEVEL_PMD, LEVEL_PTE, LEVEL_PUD
from vmdex.indexer.arch.pagewalk import KIND_PRESENT, KIND_SWAP, translate_leaf, walk_user_tables
from vmdex.indexer.errors import DumpError, OutOfDump
from vmdex.indexer.kernel.vmcoreinfo import VmcoreInfo
from vmdex.indexer.runs import MAX_RUN_PAGES
from vmdex.indexer.walk.pages import build_runs

TABLE, BLOCK, PAGE = 0b11, 0b01, 0b11
AF = 1 << 10
CONT = 1 << 52          # the contiguous hint: each entry still holds its own address


class _Dump:
    machine, path = "aarch64", "/d/vmcore"


def arm64(page_size: int, t1sz: int, physmem_bits: int = 48):
    info = VmcoreInfo.parse("\n".join([
        "OSRELEASE=6.12.118+deb13-arm64-16k", f"PAGESIZE={page_size}",
        "NUMBER(VA_BITS)=52", f"NUMBER(TCR_EL1_T1SZ)={t1sz:#x}",
        f"NUMBER(MAX_PHYSMEM_BITS)={physmem_bits}",
        "NUMBER(PHYS_OFFSET)=0x40000000", "NUMBER(kimage_voffset)=0xffff800000000000"]))
    return detect(_Dump(), info)


class Tables:
    """Physical memory holding only the table pages a test writes (PhysicalMemory.read's
    contract: anything else is OutOfDump). A top table may be smaller than a page, as the
    kernel's pgd_cache allocations are."""

    def __init__(self, arch):
        self.arch = arch
        self.regions: dict[int, bytearray] = {}
        self.next = 0x40000000

    def table(self, entries: int | None = None) -> int:
        size = 8 * (entries or self.arch.entries)
        pa = self.next
        self.regions[pa] = bytearray(size)
        self.next += max(size, self.arch.page_size)
        return pa

    def set(self, table: int, index: int, value: int) -> None:
        self.regions[table][8 * index:8 * index + 8] = value.to_bytes(8, "little")

    def read(self, pa: int, size: int) -> bytes:
        for base, data in self.regions.items():
            if base <= pa and pa + size <= base + len(data):
                return bytes(data[pa - base:pa - base + size])
        raise OutOfDump(pa)


def index(arch, va: int, depth: int) -> int:
    n = arch.top_entries if depth == 0 else arch.entries
    return (va >> arch.shifts[depth]) % n


def map_path(mem: Tables, top: int, va: int, depth: int) -> int:
    """Tables from the top down to `depth` for va (made as needed): that table's address."""
    table = top
    for d in range(depth):
        i = index(mem.arch, va, d)
        raw = int.from_bytes(mem.read(table + 8 * i, 8), "little")
        if not raw:
            child = mem.table()
            mem.set(table, i, child | TABLE)
            raw = child | TABLE
        table = raw & ~0x3 & ((1 << 48) - 1)
    return table


@pytest.mark.parametrize("page_size,t1sz,levels,shifts,top", [
    (16384, 0x11, 3, [36, 25, 14], 2048),       # Debian arm64-16k on a CPU without LPA2
    (16384, 0x10, 4, [47, 36, 25, 14], 2),      # 48-bit VA: a 2-entry top table
    (16384, 28, 2, [25, 14], 2048),             # 36-bit VA
    (65536, 0x10, 3, [42, 29, 16], 64),         # 48-bit VA: a 64-entry top table
    (65536, 0xc, 3, [42, 29, 16], 1024),        # 52-bit VA (LPA)
    (65536, 22, 2, [29, 16], 8192),             # 42-bit VA
    (4096, 0x10, 4, [39, 30, 21, 12], 512),     # the 4 KiB layouts stay as they were
    (4096, 25, 3, [30, 21, 12], 512),
])
def test_geometry_from_the_dump(page_size, t1sz, levels, shifts, top):
    a = arm64(page_size, t1sz)
    assert (a.page_size, a.levels, a.shifts, a.top_entries) == (page_size, levels, shifts, top)
    assert a.entries == page_size // 8 and a.user_top == 1 << (64 - t1sz)


@pytest.mark.parametrize("page_size,t1sz,why", [
    (16384, 0xc, "16 KiB pages and 52-bit virtual addresses (LPA2): crash 9.0.2 cannot read"),
    (16384, 25, "16 KiB pages and 39-bit virtual addresses: crash 9.0.2 cannot read"),
    (65536, 25, "64 KiB pages and 39-bit virtual addresses: crash 9.0.2 cannot read"),
    (8192, 0x10, "8192-byte pages: arm64 pages are 4, 16 or 64 KiB"),
])
def test_layouts_crash_refuses_are_one_line(page_size, t1sz, why):
    with pytest.raises(DumpError) as e:
        arm64(page_size, t1sz)
    assert str(e.value).startswith(f"/d/vmcore: arm64 dump with {why}")


def test_without_pagesize_is_one_line():
    info = VmcoreInfo.parse("NUMBER(VA_BITS)=48\nNUMBER(TCR_EL1_T1SZ)=0x10\n"
                            "NUMBER(PHYS_OFFSET)=0x40000000\nNUMBER(kimage_voffset)=0x1\n")
    with pytest.raises(DumpError) as e:
        detect(_Dump(), info)
    assert str(e.value) == ("/d/vmcore: arm64 dump without PAGESIZE in VMCOREINFO: cannot "
                            "tell the page size")


@pytest.mark.parametrize("page_size,t1sz", [(16384, 0x11), (16384, 0x10), (65536, 0x10),
                                            (65536, 0xc), (16384, 28), (65536, 22)])
def test_walk_pages_blocks_and_runs(page_size, t1sz):
    """PTEs (some with the contiguous bit), a swap entry and a PMD block, walked, translated
    and made into runs of at most MAX_RUN_PAGES pages."""
    a = arm64(page_size, t1sz)
    mem = Tables(a)
    top = mem.table(a.top_entries)
    page, pmd = a.page_size, 1 << a.shifts[-2]
    pte_level = len(a.shifts) - 1
    # 16 PTEs at the start of the second PMD stretch, physically contiguous, the first 8
    # with the contiguous bit; then a swap entry
    base = pmd
    pt = map_path(mem, top, base, pte_level)
    frame = 0x80000000
    for i in range(16):
        mem.set(pt, i, (frame + i * page) | PAGE | AF | (CONT if i < 8 else 0))
    swap = (3 << 6) | (0x77 << 12)
    mem.set(pt, 16, swap)
    # a block: the fourth PMD stretch (the top table itself when there are two levels)
    blk_va, blk_pa = 3 * pmd, 4 * pmd
    holder = map_path(mem, top, blk_va, pte_level - 1)
    mem.set(holder, index(a, blk_va, pte_level - 1), blk_pa | BLOCK | AF)

    assert translate_leaf(mem, a, top, base + 5 * page + 0x123) == (frame + 5 * page + 0x123,
                                                                     page)
    assert translate_leaf(mem, a, top, blk_va + pmd - 8) == (blk_pa + pmd - 8, pmd)
    assert translate_leaf(mem, a, top, base + 16 * page) is None        # swap: not mapped

    leaves, faults = walk_user_tables(mem, a, top, a.user_top)
    assert faults == []
    got = sorted(zip(leaves.va.tolist(), leaves.npages.tolist(), leaves.level.tolist(),
                     leaves.kind.tolist()))
    want = [(base + i * page, 1, LEVEL_PTE, KIND_PRESENT) for i in range(16)]
    want += [(base + 16 * page, 1, LEVEL_PTE, KIND_SWAP), (blk_va, pmd // page, LEVEL_PMD,
                                                            KIND_PRESENT)]
    assert got == want

    runs = build_runs(leaves, [(base, base + 32 * page), (blk_va, blk_va + pmd)], a)
    rows = list(zip(runs.va.tolist(), runs.npages.tolist(), runs.level.tolist(),
                    runs.pa.tolist()))
    pieces = pmd // page // MAX_RUN_PAGES          # 16K: 4 runs of a 32 MiB PMD, 64K: 16
    assert rows[0] == (base, 16, LEVEL_PTE, frame)
    assert rows[1][:2] == (base + 16 * page, 1)
    assert rows[2:] == [(blk_va + i * MAX_RUN_PAGES * page, MAX_RUN_PAGES, LEVEL_PMD,
                         blk_pa + i * MAX_RUN_PAGES * page) for i in range(pieces)]
    typ, off = a.swap_type_offset(np.array([swap], np.uint64))
    assert (int(runs.swap_type[1]), int(runs.swap_offset[1])) == (int(typ[0]), int(off[0]))


def test_level1_entries_are_tables_with_16k_and_64k_pages():
    """A level-1 block needs 52-bit output addresses with these granules; crash 9.0.2
    follows such an entry as a table (arm64_vtop_4level_16k: "PUD Section mapping is only
    supported for LPA2"), and so does vmdex. With 4 KiB pages it is a 1 GiB block."""
    e = np.array([0x0000000080000000 | BLOCK | AF], np.uint64)
    for page_size, t1sz in ((16384, 0x10), (65536, 0x10)):
        huge, down = arm64(page_size, t1sz).classify(e, LEVEL_PUD)
        assert not huge[0] and down[0]
    huge, down = arm64(4096, 0x10).classify(e, LEVEL_PUD)
    assert huge[0] and not down[0]


def test_64k_lpa_output_address_bits():
    """MAX_PHYSMEM_BITS=52 with 64 KiB pages: PTE bits 12-15 hold PA bits 48-51 (crash's
    PTE_TO_PHYS); a 512 MiB block keeps only what its mask leaves (PTE_TO_PHYS(pmd &
    SECTION_PAGE_MASK_512MB))."""
    a = arm64(65536, 0xc, physmem_bits=52)
    pte = np.array([0x0000123456780000 | (0x5 << 12) | PAGE | AF], np.uint64)
    assert a.leaf_pa(pte, LEVEL_PTE).tolist() == [0x0005123456780000]
    blk = np.array([0x0000000060000000 | (0x5 << 12) | BLOCK | AF], np.uint64)
    assert a.leaf_pa(blk, LEVEL_PMD).tolist() == [0x60000000]


def test_16k_4level_block_masks_after_translation():
    """arm64_vtop_4level_16k: PTE_TO_PHYS(pmd_val) & SECTION_PAGE_MASK_32MB, where the other
    walks mask first: with MAX_PHYSMEM_BITS=52 the high bits of the entry survive."""
    e = np.array([0x0000000062000000 | (0x3 << 12) | BLOCK | AF], np.uint64)
    assert arm64(16384, 0x10, 52).leaf_pa(e, LEVEL_PMD).tolist() == [0x0003000062000000]
    assert arm64(16384, 0x11, 52).leaf_pa(e, LEVEL_PMD).tolist() == [0x62000000]


def test_smaps_thp_size_is_the_pmd():
    """HPAGE_PMD_SIZE, which smaps' THP rules use: a PMD leaf of the dump's granule."""
    for page_size, t1sz, size in ((4096, 0x10, 2 << 20), (16384, 0x11, 32 << 20),
                                  (65536, 0x10, 512 << 20)):
        assert 1 << arm64(page_size, t1sz).shifts[-2] == size
