"""What every architecture tells the rest of vmdex: the `Arch` interface.

One `Arch` object per dump, made by `indexer.arch.detect` and completed by `setup` once
the kernel's symbols are known. The page-table walker (indexer.arch.pagewalk) and the
kernel-memory reader (indexer.arch.memory) are written once over this interface; nothing
outside indexer/arch/ looks at entry bits.
"""
from __future__ import annotations

import numpy as np

U64 = (1 << 64) - 1

# Leaf levels as stored in the index (page_runs.level, page_table_faults.level).
LEVEL_PTE, LEVEL_PMD, LEVEL_PUD = 1, 2, 3


def to_signed(v: int) -> int:
    """u64 → the two's-complement int64 the database stores."""
    v &= U64
    return v - (1 << 64) if v >> 63 else v


def release_tuple(release: str) -> tuple[int, ...]:
    """(6, 12, 118) of "6.12.118+deb13-cloud-arm64": only for the few rules crash itself
    decides by THIS_KERNEL_VERSION (each use cites crash's function)."""
    nums = []
    for part in release.split("-")[0].split("+")[0].split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        nums.append(int(digits) if digits else 0)
    return tuple(nums)


class Arch:
    """The machine-dependent facts of one dump. Subclasses set the attributes and
    implement the methods; every value comes from VMCOREINFO, the dump header or the
    vmlinux, never from a table of releases (unless crash decides it that way)."""

    name: str = ""               # as stored in dumps.arch: "x86_64", "arm64"
    char_signed: bool = False    # the C ABI's plain char (for BTF that does not record it)
    page_size: int = 4096
    levels: int = 4              # page-table levels of a user address space
    entries: int = 512           # entries per table page
    phys_base: int = 0           # stored in dumps.phys_base (x86: phys_base, arm64: PHYS_OFFSET)
    page_offset: int = 0         # start of the direct map; also dumps.page_offset
    kernel_pgd_pa: int | None = None
    pkey_bits: int = 0           # CONFIG_ARCH_PKEY_BITS: vm_flags bits of a protection key

    # --- geometry --------------------------------------------------------------------
    @property
    def page_shift(self) -> int:
        return self.page_size.bit_length() - 1

    @property
    def shifts(self) -> list[int]:
        """VA shift of each table level, the top table first, the PTE table last."""
        bits = self.page_shift - 3          # index bits per level (8-byte entries)
        return [self.page_shift + bits * i for i in range(self.levels - 1, -1, -1)]

    @property
    def top_entries(self) -> int:
        """Entries of the top table that a walk reads (crash's ptrs_per_pgd)."""
        return self.entries

    @property
    def user_top(self) -> int:
        """First address above user space."""
        raise NotImplementedError

    def kvaddr_floor(self) -> int:
        """crash's IS_KVADDR for `-M`: an address is a kernel address when >= this."""
        return self.page_offset

    # --- kernel addresses ------------------------------------------------------------
    def setup(self, k, info) -> None:
        """Learn what only kernel memory or symbols tell (k: indexer.walk.kernel.Kernel)."""

    def bootstrap_image(self, stext: int) -> None:
        """Make the kernel image readable before its symbols are known (kallsyms and BTF
        are read from it): nothing to do where the image translates without bounds."""

    def symbol_moves(self, addr: int) -> bool:
        """Whether a vmlinux symbol at `addr` moves with the KASLR offset."""
        raise NotImplementedError

    def symbols_move(self, addrs: np.ndarray) -> np.ndarray:
        """symbol_moves of each of many addresses (uint64)."""
        return np.fromiter(map(self.symbol_moves, addrs.tolist()), bool, len(addrs))

    def kvtop_linear(self, va: int) -> int | None:
        """Kernel image or direct-map address → physical, without a table walk."""
        raise NotImplementedError

    def kernel_map_span(self) -> tuple[int, int, int] | None:
        """(walk_lo, walk_hi, va_extend): the part of the kernel's own tables whose mappings
        the index keeps (kernel_maps), as the walker's addresses [walk_lo, walk_hi) with
        va_extend OR-ed in to make them kernel addresses; None: none kept. crash's kvtop
        walks these tables for `vm -M` addresses outside the linear map."""
        return None

    def user_root(self, pgd_va: int) -> int:
        """Physical address of the top table of an mm (mm->pgd)."""
        pa = self.kvtop_linear(pgd_va)
        if pa is None:
            from vmdex.indexer.errors import WalkError
            raise WalkError(f"mm pgd {pgd_va:x} is not a direct-map address")
        return pa

    # --- page-table format (vectorised over uint64 entry arrays) -----------------------
    def entries_of(self, raw: bytes) -> np.ndarray:
        """A table page's entries, with bits that are not part of the entry removed."""
        return np.frombuffer(raw, dtype="<u8")

    def classify(self, e: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
        """(leaf, table) masks of the non-zero entries `e` of a table above the PTE level,
        as crash's uvtop reads them: a leaf is a huge page, a table is walked down."""
        raise NotImplementedError

    def table_pa(self, e: np.ndarray) -> np.ndarray:
        """Physical address of the next table an entry points at."""
        raise NotImplementedError

    def leaf_pa(self, e: np.ndarray, level: int) -> np.ndarray:
        """crash's physical address of the first byte a leaf maps."""
        raise NotImplementedError

    def pte_present(self, e: np.ndarray) -> np.ndarray:
        """Which non-zero PTEs crash's uvtop reports as mapped (the rest are swap-like)."""
        raise NotImplementedError

    def swap_type_offset(self, pte: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """crash's __swp_type / __swp_offset of non-present PTE values."""
        raise NotImplementedError

    # --- what /proc/PID/smaps reads (fs/proc/task_mmu.c), vectorised over entries --------
    def struct_pages(self, k) -> int | None:
        """Address of pfn 0's struct page in the vmemmap (SPARSEMEM_VMEMMAP: pfn_to_page),
        None when this dump does not tell."""
        return None

    def kernel_pte_present(self, e: np.ndarray) -> np.ndarray:
        """The kernel's pte_present() of non-zero PTEs (PROT_NONE entries are present to
        the kernel even where crash calls them unmapped)."""
        return self.pte_present(e)

    def kernel_leaf_pa(self, e: np.ndarray, level: int) -> np.ndarray:
        """The physical address the kernel's pte_pfn() / pmd_pfn() reads from a leaf it
        calls present (where crash's address differs, e.g. x86 PROT_NONE entries)."""
        return self.leaf_pa(e, level)

    def kernel_pte_none(self, e: np.ndarray) -> np.ndarray:
        """The kernel's pte_none() of non-present PTEs."""
        return e == 0

    def entry_young(self, e: np.ndarray) -> np.ndarray:
        """pte_young() / pmd_young() of present leaves."""
        raise NotImplementedError

    def entry_dirty(self, e: np.ndarray, shadow_stack: bool) -> np.ndarray:
        """pte_dirty() / pmd_dirty() of present leaves; shadow_stack: the kernel keeps user
        shadow stacks (its VmFlags table names "ss")."""
        raise NotImplementedError

    def pte_special(self, e: np.ndarray) -> np.ndarray:
        """pte_special(): a PTE vm_normal_page() skips (no struct page to account)."""
        raise NotImplementedError

    def pkeys_enabled(self, k) -> bool | None:
        """arch_pkeys_enabled() of the crashed machine (whether smaps prints
        ProtectionKey, when the kernel was built with protection keys); None: unknown."""
        return False

    # --- crash's words -----------------------------------------------------------------
    def table_words(self) -> dict[int, str]:
        """{level: what crash's readmem names the table page} when its read fails."""
        raise NotImplementedError

    def table_address(self, pa: int) -> tuple[str, int]:
        """(memory type, address) crash's readmem names when reading the table page at
        `pa` fails: "physical" and pa, or "kernel virtual" and its linear-map address."""
        raise NotImplementedError
