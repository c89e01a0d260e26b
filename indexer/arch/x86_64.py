"""x86_64: KASLR/phys_base arithmetic, the direct map, 4- or 5-level tables, huge leaves,
PROT_NONE entries and the swap-entry encoding. Bit values are the architecture's (Intel
SDM), not the kernel build's: they cannot vary."""
from __future__ import annotations

import numpy as np

from vmdex.indexer.arch.base import LEVEL_PMD, LEVEL_PTE, LEVEL_PUD, U64, Arch, release_tuple
from vmdex.indexer.errors import DumpError, MemoryReadError, WalkError

START_KERNEL_MAP = 0xFFFFFFFF80000000  # fixed by the x86_64 ABI, KASLR moves only phys_base

_P = 0x1          # present
_PSE = 0x80       # huge leaf at PMD/PUD level
_PROTNONE = 0x100  # _PAGE_GLOBAL reused for PROT_NONE / NUMA-hinting entries when P is clear
_ACCESSED, _DIRTY, _SPECIAL = 1 << 5, 1 << 6, 1 << 9
_SAVED_DIRTY = 1 << 58   # SOFTW5: Dirty of a write-protected entry on shadow-stack kernels
X86_FEATURE_OSPKE = 16 * 32 + 4   # cpufeatures word 16 (CPUID 7 ECX) bit 4


class X86_64(Arch):
    """The paging facts of one x86_64 dump, taken from VMCOREINFO and kernel memory."""

    name = "x86_64"
    char_signed = True   # x86-64 psABI: plain char is signed (for BTF that does not record it)
    pkey_bits = 4       # CONFIG_ARCH_PKEY_BITS (x86 protection keys: PKRU holds 16 keys)
    page_size = 4096

    def __init__(self, levels: int = 4, page_offset: int = 0, phys_base: int = 0,
                 sme_mask: int = 0, l1tf: bool = True):
        self.levels = levels            # 4 or 5
        self.page_offset = page_offset  # direct-map base (page_offset_base)
        self.phys_base = phys_base      # signed: where the kernel image sits physically
        self.sme_mask = sme_mask        # AMD memory-encryption bit, stripped from entries
        self.l1tf = l1tf                # swap offsets stored inverted (L1TF fix)
        self.kernel_pgd_pa = None
        self.vmalloc_start = None       # the direct map ends below it (vmalloc_base)
        self.image_end = None           # _end: above it modules and the fixmap, not the image

    @classmethod
    def from_vmcoreinfo(cls, path: str, info) -> "X86_64":
        levels = 5 if (info.number("pgtable_l5_enabled") or 0) == 1 else 4
        if info.pagesize not in (None, 4096):
            raise DumpError(f"{path}: x86_64 dump with PAGESIZE={info.pagesize}: x86_64 "
                            "pages are 4 KiB")
        phys_base = info.number("phys_base")
        if phys_base is None:
            raise DumpError(f"{path}: VMCOREINFO lacks NUMBER(phys_base): cannot place "
                            "the kernel image")
        return cls(levels=levels, phys_base=phys_base, sme_mask=info.number("sme_mask") or 0)

    def setup(self, k, info) -> None:
        # page_offset_base lives in the kernel image, which translates without it.
        pob = k.sym("page_offset_base")
        self.page_offset = k.ptr(pob) if pob else (0xFF11000000000000 if self.levels == 5
                                                   else 0xFFFF888000000000)
        # vmalloc_base and _end bound the two linear ranges; what lies beyond them (vmalloc,
        # vmap'd per-CPU chunks and stacks, modules) is read through the kernel's tables.
        vb = k.sym("vmalloc_base")
        self.vmalloc_start = k.ptr(vb) if vb else (0xFFA0000000000000 if self.levels == 5
                                                    else 0xFFFFC90000000000)
        self.image_end = k.sym("_end")
        swapper = info.symbol("swapper_pg_dir") or k.sym("init_top_pgt")
        if swapper:
            self.kernel_pgd_pa = self.kvtop_linear(swapper)
        self.l1tf = swap_offsets_inverted(k.sym("l1tf_mitigation") is not None,
                                          info.osrelease)

    @property
    def user_top(self) -> int:
        return 1 << (56 if self.levels == 5 else 47)

    @property
    def phys_mask(self) -> int:
        # crash masks table/leaf addresses to 46 bits (4-level) or 52 bits (5-level).
        bits = 52 if self.levels == 5 else 46
        return ((1 << bits) - 1) & ~(self.page_size - 1)

    def symbol_moves(self, addr: int) -> bool:
        # Per-CPU symbols of older kernels are offsets near 0: KASLR does not move them.
        return addr >= START_KERNEL_MAP

    def symbols_move(self, addrs: np.ndarray) -> np.ndarray:
        return addrs >= np.uint64(START_KERNEL_MAP)

    def kvtop_linear(self, va: int) -> int | None:
        if va >= START_KERNEL_MAP:
            if self.image_end is not None and va >= self.image_end:
                return None
            return (va - START_KERNEL_MAP + self.phys_base) & U64
        if va >= self.page_offset and (self.vmalloc_start is None or va < self.vmalloc_start):
            pa = va - self.page_offset
            if pa < (1 << 52):
                return pa
        return None

    def user_root(self, pgd_va: int) -> int:
        return pgd_va - self.page_offset

    # --- page-table format -------------------------------------------------------------
    def entries_of(self, raw: bytes) -> np.ndarray:
        return np.frombuffer(raw, dtype="<u8") & np.uint64(~self.sme_mask & U64)

    def classify(self, e: np.ndarray, level: int):
        present = (e & np.uint64(_P)) != 0
        if level == LEVEL_PMD:
            present |= (e & np.uint64(_PROTNONE)) != 0
        if level in (LEVEL_PMD, LEVEL_PUD):
            huge = present & ((e & np.uint64(_PSE)) != 0)
        else:
            huge = np.zeros(len(e), bool)
        # Non-present entries above the PTE level are "not mapped" for crash.
        return huge, present & ~huge

    def table_pa(self, e: np.ndarray) -> np.ndarray:
        return e & np.uint64(self.phys_mask)

    def leaf_pa(self, e: np.ndarray, level: int) -> np.ndarray:
        return e & np.uint64(self.phys_mask)

    def pte_present(self, e: np.ndarray) -> np.ndarray:
        return (e & np.uint64(_P | _PROTNONE)) != 0

    def swap_type_offset(self, pte: np.ndarray):
        if self.l1tf:
            # Type in bits 59-63, offset in bits 9-58 stored inverted (L1TF mitigation).
            typ = pte >> np.uint64(59)
            off = ((~pte) << np.uint64(5)) >> np.uint64(14)
        else:
            typ = (pte >> np.uint64(9)) & np.uint64(0x1F)
            off = pte >> np.uint64(14)
        return typ, off

    # --- smaps -----------------------------------------------------------------------------
    def struct_pages(self, k) -> int | None:
        sym = k.sym("vmemmap_base")      # where KASLR put the vmemmap
        return k.ptr(sym) if sym is not None else None

    def kernel_leaf_pa(self, e: np.ndarray, level: int) -> np.ndarray:
        # pte_pfn() / pmd_pfn(): an entry without P (PROT_NONE) holds its frame inverted
        # (protnone_mask(), the L1TF fix that also inverts swap offsets), under
        # __PHYSICAL_MASK (52 bits), not crash's 46
        if self.l1tf:
            e = np.where((e & np.uint64(_P)) == 0, ~e, e)
        size = 1 << self.shifts[len(self.shifts) - level]
        return e & np.uint64(((1 << 52) - 1) & ~(size - 1))

    def kernel_pte_none(self, e: np.ndarray) -> np.ndarray:
        # pte_none() ignores Accessed/Dirty: a Knights Landing erratum may set them alone
        return (e & ~np.uint64(_ACCESSED | _DIRTY)) == 0

    def entry_young(self, e: np.ndarray) -> np.ndarray:
        return (e & np.uint64(_ACCESSED)) != 0

    def entry_dirty(self, e: np.ndarray, shadow_stack: bool) -> np.ndarray:
        return (e & np.uint64(_DIRTY | (_SAVED_DIRTY if shadow_stack else 0))) != 0

    def pte_special(self, e: np.ndarray) -> np.ndarray:
        return (e & np.uint64(_SPECIAL)) != 0

    def pkeys_enabled(self, k) -> bool | None:
        # boot_cpu_has(X86_FEATURE_OSPKE): the feature words are a plain u32 array
        sym = k.sym("boot_cpu_data")
        if sym is None or not k.has("cpuinfo_x86", "x86_capability"):
            return None
        try:
            word = k.mem.u32(sym + k.off("cpuinfo_x86", "x86_capability")
                             + 4 * (X86_FEATURE_OSPKE // 32))
        except (MemoryReadError, WalkError):
            return None
        return bool(word >> (X86_FEATURE_OSPKE % 32) & 1)

    def table_words(self) -> dict[int, str]:
        # crash's x86_64 uvtop reads each table by physical address (FILL_PGD/P4D/PUD/PMD/
        # PTBL with PHYSADDR).
        top = "p4d page" if self.levels == 5 else "pgd page"
        return {LEVEL_PTE: "page table", LEVEL_PMD: "pmd page", LEVEL_PUD: "pud page",
                4: top, 5: "pgd page"}

    def table_address(self, pa: int) -> tuple[str, int]:
        """(crash's memory type word, address) it names when a table read fails."""
        return "physical", pa


def swap_offsets_inverted(has_l1tf_mitigation: bool, release: str | None) -> bool:
    """Whether swap entries use the L1TF layout (offset stored inverted in bits 9-58, type
    in 59-63). Decided by release number because crash decides it so and vmdex must print
    the offsets crash prints: crash's x86_64.c, x86_64_l1tf_init(), takes the symbol
    l1tf_mitigation (backports) or THIS_KERNEL_VERSION >= 4.18.1."""
    return has_l1tf_mitigation or release_tuple(release or "") >= (4, 18, 1)
