"""arm64 (AArch64): VA geometry from VMCOREINFO (VA_BITS, TCR_EL1_T1SZ, PAGESIZE), kernel
virtual → physical through kimage_voffset (the kernel image) and PHYS_OFFSET (the linear
map), and the VMSAv8-64 table format as crash 9.0.2's arm64.c reads it
(arm64_vtop_{3,4}level_4k, _{2,3,4}level_16k, _{2,3}level_64k): an entry of a level that
has blocks whose low two bits are 01 is a block (section), any other non-zero entry is
followed as a table; a PTE is mapped when its valid bit is set, and any other non-zero PTE
is a swap entry for crash.

The translation granule is the kernel's page size (VMCOREINFO PAGESIZE): 4 KiB (9 index
bits a level, 512 entries), 16 KiB (11 bits, 2048 entries) or 64 KiB (13 bits, 8192
entries); the levels follow from the VA size the MMU uses (64 - TCR_EL1.T1SZ). Blocks:
level 2 (PMD) always (2 MiB, 32 MiB, 512 MiB), level 1 only with 4 KiB pages (1 GiB):
with 16 and 64 KiB pages a level-1 block needs 52-bit output addresses (LPA2 / LPA), and
crash 9.0.2 follows such an entry as a table, as vmdex does. The contiguous bit only
tells the TLB that neighbouring entries continue each other; each entry still holds its
own address, and crash reads it so."""
from __future__ import annotations

import numpy as np

from vmdex.indexer.arch.base import LEVEL_PMD, LEVEL_PTE, LEVEL_PUD, U64, Arch, release_tuple, to_signed
from vmdex.indexer.errors import DumpError, MemoryReadError, WalkError

_VALID = 0x1
_TYPE_MASK = 0x3
_TYPE_SECT = 0x1        # PMD_TYPE_SECT / PUD_TYPE_SECT: a block entry
# Descriptor bits the kernel reads for smaps (VMSAv8-64 and arch/arm64 pgtable-hwdef.h)
_RDONLY, _AF, _NG = 1 << 7, 1 << 10, 1 << 11
_DBM = 1 << 51          # PTE_WRITE: hardware dirty-bit management
_SW_DIRTY, _SPECIAL = 1 << 55, 1 << 56
_PROT_NONE_OLD = 1 << 58    # PTE_PROT_NONE, before PTE_PRESENT_INVALID replaced it
_HWCAP2_POE = 64 + 63       # elf_hwcap bit of HWCAP2_POE (uapi hwcap.h: bit 63 of word 2)
# The run-time VA sizes crash 9.0.2's arm64_init() reads, by page size (VM_L3_4K/VM_L4_4K,
# VM_L2_16K/VM_L3_16K/VM_L4_16K, VM_L2_64K/VM_L3_64K); others are FATAL there.
_LAYOUTS = {4096: range(25, 49), 16384: (36, 47, 48), 65536: (42, 48, 52)}


class Arm64(Arch):
    name = "arm64"
    char_signed = False   # AAPCS64: plain char is unsigned (for BTF that does not record it)
    pkey_bits = 3       # CONFIG_ARCH_PKEY_BITS (arm64 POE: POR_EL0 holds 8 overlays)

    def __init__(self, page_size: int, va_bits: int, va_bits_actual: int, phys_offset: int,
                 kimage_voffset: int, max_physmem_bits: int):
        self.page_size = page_size
        self.entries = page_size // 8
        self.va_bits = va_bits                  # CONFIG_ARM64_VA_BITS (NUMBER(VA_BITS))
        self.va_bits_actual = va_bits_actual    # 64 - TCR_EL1.T1SZ: what the MMU uses
        self.phys_offset = phys_offset & U64    # PHYS_OFFSET (memstart_addr), mod 2^64
        self.phys_base = to_signed(phys_offset)  # stored in dumps.phys_base (int64)
        self.kimage_voffset = kimage_voffset & U64
        self.max_physmem_bits = max_physmem_bits
        # The linear map starts at PAGE_OFFSET = -(1 << VA_BITS) (the flipped layout of
        # 5.4+; crash's ARM64_FLIP_PAGE_OFFSET) and ends where the upper half begins.
        self.page_offset = (-(1 << va_bits)) & U64
        self.linear_end = (-(1 << (va_bits_actual - 1))) & U64
        bits = self.page_shift - 3
        self.levels = -(-(va_bits_actual - self.page_shift) // bits)
        # Level-1 blocks only with the 4 KiB granule (see the module's docstring)
        self.block_levels = (LEVEL_PMD, LEVEL_PUD) if page_size == 4096 else (LEVEL_PMD,)
        self.kernel_pgd_pa = None
        self.kimage = (0, 0)                    # [_text, _end] at run time
        self.t1sz_known = True
        self.release = ()
        self.vmcoreinfo_vmemmap = None
        self.vmemmap_start = None

    @classmethod
    def from_vmcoreinfo(cls, path: str, info) -> "Arm64":
        def need(key: str) -> int:
            v = info.number(key)
            if v is None:
                raise DumpError(f"{path}: arm64 dump without NUMBER({key}) in VMCOREINFO: "
                                "cannot place the kernel")
            return v

        page_size = info.pagesize
        if page_size is None:
            raise DumpError(f"{path}: arm64 dump without PAGESIZE in VMCOREINFO: cannot "
                            "tell the page size")
        va_bits = need("VA_BITS")
        t1sz = info.number("TCR_EL1_T1SZ")
        if t1sz is None:
            t1sz = info.number("tcr_el1_t1sz")
        actual = 64 - t1sz if t1sz is not None else va_bits
        layouts = _LAYOUTS.get(page_size)
        if layouts is None:
            raise DumpError(f"{path}: arm64 dump with {page_size}-byte pages: arm64 pages "
                            "are 4, 16 or 64 KiB")
        if actual not in layouts:
            lpa2 = " (LPA2)" if actual == 52 and page_size != 65536 else ""
            raise DumpError(f"{path}: arm64 dump with {page_size // 1024} KiB pages and "
                            f"{actual}-bit virtual addresses{lpa2}: crash 9.0.2 cannot read "
                            "it, nor can vmdex")
        arch = cls(page_size, va_bits, actual, need("PHYS_OFFSET"), need("kimage_voffset"),
                   info.number("MAX_PHYSMEM_BITS") or 48)
        arch.t1sz_known = t1sz is not None
        return arch

    def setup(self, k, info) -> None:
        # crash takes the flipped layout (5.4+: linear map in the lower half) when it knows
        # VA_BITS_ACTUAL: from the symbol vabits_actual or VMCOREINFO's TCR_EL1_T1SZ
        # (arm64.c arm64_calc_VA_BITS); older kernels keep the linear map on top.
        if not self.t1sz_known and k.sym("vabits_actual") is None:
            raise DumpError(f"{k.mem.phys.path}: arm64 kernel with the pre-5.4 virtual "
                            "layout (no vabits_actual, no TCR_EL1_T1SZ): not supported yet")
        text, end = k.sym("_text"), k.sym("_end")
        if text is not None and end is not None:
            self.kimage = (text, end)
        swapper = info.symbol("swapper_pg_dir") or k.sym("swapper_pg_dir")
        if swapper:
            self.kernel_pgd_pa = self.kvtop_linear(swapper)
        self.release = release_tuple(info.osrelease or "")
        self.vmcoreinfo_vmemmap = info.symbol("vmemmap")
        self.vmemmap_start = info.number("VMEMMAP_START")

    @property
    def user_top(self) -> int:
        return 1 << self.va_bits_actual         # crash's ARM64_USERSPACE_TOP_ACTUAL

    def kvaddr_floor(self) -> int:
        return self.page_offset                 # crash's arm64_is_kvaddr: >= kvbase

    def bootstrap_image(self, stext: int) -> None:
        # [_text, _end] come from symbols (setup); until then the image is taken to span
        # 1 GiB from just below _stext (no arm64 kernel image is larger)
        self.kimage = ((stext - (1 << 21)) & U64, (stext + (1 << 30)) & U64)

    def symbol_moves(self, addr: int) -> bool:
        # Every symbol of an arm64 vmlinux, per-CPU ones included, is in the kernel image.
        return bool(addr >> 63)

    def symbols_move(self, addrs: np.ndarray) -> np.ndarray:
        return (addrs >> np.uint64(63)) != 0

    def kvtop_linear(self, va: int) -> int | None:
        lo, hi = self.kimage
        if lo <= va <= hi:
            return (va - self.kimage_voffset) & U64
        if self.page_offset <= va < self.linear_end:
            # __lm_to_phys: ((addr) & ~PAGE_OFFSET) + PHYS_OFFSET
            return ((va & ~self.page_offset & U64) + self.phys_offset) & U64
        return None

    def kernel_map_span(self) -> tuple[int, int, int] | None:
        # crash's arm64_IS_VMALLOC_ADDR: everything from VA_START (the upper half of the
        # VA_BITS_ACTUAL space) but the kernel image is translated by walking the tables.
        bits = self.va_bits_actual
        return 1 << (bits - 1), 1 << bits, (U64 << bits) & U64

    def ptov(self, pa: int) -> int:
        """__phys_to_virt: ((x) - PHYS_OFFSET) | PAGE_OFFSET."""
        return (((pa - self.phys_offset) & U64) | self.page_offset) & U64

    # --- page-table format -------------------------------------------------------------
    def _to_phys(self, e: np.ndarray) -> np.ndarray:
        """crash's PTE_TO_PHYS (arm64.c)."""
        low = np.uint64(((1 << (48 - self.page_shift)) - 1) << self.page_shift)
        if self.max_physmem_bits == 52:
            return (e & low) | ((e & np.uint64(0xF << 12)) << np.uint64(36))
        return e & low

    @property
    def top_entries(self) -> int:
        # crash's ptrs_per_pgd: a top table below a page (16 KiB pages, 48-bit VA: 2;
        # 64 KiB pages, 48-bit VA: 64) sits in a smaller allocation (pgd_cache)
        return 1 << (self.va_bits_actual - self.shifts[0])

    def classify(self, e: np.ndarray, level: int):
        if level in self.block_levels:
            huge = (e & np.uint64(_TYPE_MASK)) == np.uint64(_TYPE_SECT)
        else:
            huge = np.zeros(len(e), bool)
        return huge, ~huge

    def table_pa(self, e: np.ndarray) -> np.ndarray:
        return self._to_phys(e)

    def leaf_pa(self, e: np.ndarray, level: int) -> np.ndarray:
        if level == LEVEL_PTE:
            return self._to_phys(e)
        mask = np.uint64(~((1 << self.shifts[len(self.shifts) - level]) - 1) & U64)
        if self.page_size == 16384 and self.levels == 4:
            return self._to_phys(e) & mask      # arm64_vtop_4level_16k masks after
        return self._to_phys(e & mask)

    def pte_present(self, e: np.ndarray) -> np.ndarray:
        return (e & np.uint64(_VALID)) != 0

    def swap_type_offset(self, pte: np.ndarray):
        tshift, tbits, oshift = self._swap_layout()
        typ = (pte >> np.uint64(tshift)) & np.uint64((1 << tbits) - 1)
        off = (pte >> np.uint64(oshift)) & np.uint64((1 << 50) - 1)
        return typ, off

    # --- smaps -----------------------------------------------------------------------------
    def struct_pages(self, k) -> int | None:
        # As crash's arm64_get_vmemmap_page_ptr(): VMCOREINFO's SYMBOL(vmemmap) when the
        # kernel gives it, else VMEMMAP_START less PHYS_OFFSET's pfn worth of struct pages.
        if self.vmcoreinfo_vmemmap:
            return self.vmcoreinfo_vmemmap
        if not k.types.has_struct("page"):
            return None
        size = k.types.sizeof("page")
        start = self.vmemmap_start if self.vmemmap_start is not None else \
            self._vmemmap_start_before_5_18(size)
        if start is None:
            return None
        return (start - (self.phys_offset >> self.page_shift) * size) & U64

    def _vmemmap_start_before_5_18(self, page_struct_size: int) -> int | None:
        """VMEMMAP_START of a kernel whose VMCOREINFO does not give it (before 5.18), as
        crash's arm64_get_range_v5_4 / _v5_11 compute it, by THIS_KERNEL_VERSION."""
        vmem_shift = self.page_shift - (page_struct_size - 1).bit_length()
        if (5, 11, 0) <= self.release < (5, 18, 0):
            return (-(1 << (self.va_bits - vmem_shift))) & U64
        if (5, 4, 0) <= self.release < (5, 11, 0):
            v = min(self.va_bits, 48)
            page_end = (-(1 << (v - 1))) & U64
            size = ((page_end - self.page_offset) & U64) >> vmem_shift
            return (-size - (2 << 20)) & U64
        return None

    def _swap_layout(self) -> tuple[int, int, int]:
        # crash's arm64.c, arm64_init(POST_GDB), picks the layout by THIS_KERNEL_VERSION.
        if self.release >= (6, 10, 0):
            return 6, 5, 12
        if self.release >= (5, 19, 0):
            return 3, 5, 8
        return 2, 6, 8

    def kernel_pte_present(self, e: np.ndarray) -> np.ndarray:
        # pte_present(): valid, or PROT_NONE (invalid to the MMU). Its bit moved in the same
        # kernel change (6.10) that moved the swap type to bit 6: decided together.
        if self._swap_layout()[0] == 6:
            prot_none = ((e & np.uint64(_VALID | _NG)) == np.uint64(_NG))
        else:
            prot_none = (e & np.uint64(_PROT_NONE_OLD)) != 0
        return ((e & np.uint64(_VALID)) != 0) | prot_none

    def entry_young(self, e: np.ndarray) -> np.ndarray:
        return (e & np.uint64(_AF)) != 0

    def entry_dirty(self, e: np.ndarray, shadow_stack: bool) -> np.ndarray:
        # pte_sw_dirty() or pte_hw_dirty(): writable under DBM and no longer read-only
        hw = ((e & np.uint64(_DBM)) != 0) & ((e & np.uint64(_RDONLY)) == 0)
        return ((e & np.uint64(_SW_DIRTY)) != 0) | hw

    def pte_special(self, e: np.ndarray) -> np.ndarray:
        return (e & np.uint64(_SPECIAL)) != 0

    def pkeys_enabled(self, k) -> bool | None:
        # system_supports_poe(): the CPU's S1POE, which also sets HWCAP2_POE in elf_hwcap
        sym = k.sym("elf_hwcap")
        if sym is None:
            return None
        try:
            word = k.mem.u64(sym + 8 * (_HWCAP2_POE // 64))
        except (MemoryReadError, WalkError):
            return None
        return bool(word >> (_HWCAP2_POE % 64) & 1)

    def table_words(self) -> dict[int, str]:
        # FILL_PGD / FILL_PUD / FILL_PMD / FILL_PTBL: the top table is the "pgd page".
        words = {LEVEL_PTE: "page table", LEVEL_PMD: "pmd page", LEVEL_PUD: "pud page"}
        words[self.levels] = "pgd page"
        return words

    def table_address(self, pa: int) -> tuple[str, int]:
        # arm64's uvtop reads each table through its linear-map address (PTOV, KVADDR).
        return "kernel virtual", self.ptov(pa)
