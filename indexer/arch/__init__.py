"""The architecture seam: which machine a dump comes from, and everything that depends on it.

`detect(dump, vmcoreinfo)` names the machine from the dump itself (ELF e_machine, the kdump
header's utsname machine, VMCOREINFO) and returns its `Arch` (indexer.arch.base). The rest
of vmdex talks to that object only: the page-table walk (indexer.arch.pagewalk), kernel
virtual memory (indexer.arch.memory), the store (dumps.arch, dumps.page_size) and, through
stored columns, the query side.

Adding the next architecture, checklist:
  1. indexer/arch/<name>.py: a subclass of Arch with
     - name (stored in dumps.arch), page_size and the VA geometry (levels, entries, shifts,
       top_entries, user_top), all from VMCOREINFO (PAGESIZE, NUMBER(...)) or the vmlinux;
       everything downstream (runs, vm -p lines, smaps' page and PMD sizes) follows them;
     - from_vmcoreinfo(path, info), setup(k, info): kernel virtual → physical (kernel
       image, direct map, KASLR) in kvtop_linear, kernel_pgd_pa for the rest, and
       symbol_moves (which vmlinux symbols KASLR moves);
     - user_root(mm->pgd): the physical address of a user top table;
     - the table format as crash's uvtop reads it: entries_of, classify (leaf / table
       above the PTE level), table_pa, leaf_pa, pte_present;
     - swap_type_offset: crash's __swp_type/__swp_offset;
     - kvaddr_floor: crash's IS_KVADDR (what `vm -M` accepts), and kernel_map_span: the
       kernel addresses crash's kvtop translates by walking the kernel's own tables (their
       mappings are kept in kernel_maps; query/index.py kvtop reads them, and has the
       arch's linear-map rule for the rest);
     - table_words / table_address: crash's readmem words and address for a failed read of
       each table level.
  2. detect() below: the ELF e_machine number (indexer.dumpfile.elf.ELF_MACHINES), the
     kdump header's machine string, and the VMCOREINFO evidence.
  3. Oracle folders from tests/kernels (make-dumps.sh --arch), a row in kernels.tsv, a line
     in docs/verified.md; tests/test_arch.py for the detection.
An unknown machine fails here, in one line (UnsupportedArch).
"""
from __future__ import annotations

from vmdex.indexer.arch.base import Arch
from vmdex.indexer.errors import DumpError

# Machine names as dumps spell them → vmdex's name.
_MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


class UnsupportedArch(DumpError):
    """The dump is of a machine vmdex does not read."""


def machine_of(phys, info) -> str | None:
    """vmdex's name of the machine a dump is of, or None when nothing tells. The dump
    header first (ELF e_machine, the kdump header's utsname machine: QEMU writes
    "Unknown" there), then VMCOREINFO's tell-tales (arm64 exports kimage_voffset and
    TCR_EL1_T1SZ, x86_64 phys_base)."""
    m = _MACHINES.get((getattr(phys, "machine", None) or "").lower())
    if m:
        return m
    if info.number("kimage_voffset") is not None or info.number("TCR_EL1_T1SZ") is not None:
        return "arm64"
    if info.number("phys_base") is not None:
        return "x86_64"
    return None


def detect(phys, info) -> Arch:
    """The Arch of a dump, from what the dump says about itself."""
    name = machine_of(phys, info)
    if name == "x86_64":
        from vmdex.indexer.arch.x86_64 import X86_64

        return X86_64.from_vmcoreinfo(str(phys.path), info)
    if name == "arm64":
        from vmdex.indexer.arch.arm64 import Arm64

        return Arm64.from_vmcoreinfo(str(phys.path), info)
    raw = getattr(phys, "machine", None) or "unknown"
    raise UnsupportedArch(f"{phys.path}: a dump of machine {raw}: vmdex reads x86_64 and "
                          "arm64 dumps only")
