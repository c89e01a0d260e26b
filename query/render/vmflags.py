"""`vm -f`: crash's own vm_flags name table (frozen 2.6-era names, a few runtime switches).

This is deliberately not the kernel's naming: crash prints e.g. NOHUGEPAGE for 0x200 on
x86_64 and never names 0x200000 or any bit above 31. Byte-for-byte parity needs its table.
"""
from __future__ import annotations

# (bit, name) in crash's test order; None marks the bits decided by a dump property.
_TABLE = [
    (0x1, "READ"), (0x2, "WRITE"), (0x4, "EXEC"), (0x8, "SHARED"), (0x10, "MAYREAD"),
    (0x20, "MAYWRITE"), (0x40, "MAYEXEC"), (0x80, "MAYSHARE"), (0x100, "GROWSDOWN"),
    (0x200, None), (0x400, "PFNMAP"), (0x800, "DENYWRITE"), (0x1000, "EXECUTABLE"),
    (0x2000, "LOCKED"), (0x4000, "IO"), (0x8000, "SEQ_READ"), (0x10000, "RAND_READ"),
    (0x20000, "DONTCOPY"), (0x40000, "DONTEXPAND"), (0x80000, "RESERVED"),
    (0x400000, "HUGETLB"), (0x100000, "ACCOUNT"), (0x800000, "NONLINEAR"),
    (0x1000000, None), (0x2000000, "INSERTPAGE"), (0x4000000, "ALWAYSDUMP"),
    (0x8000000, "CAN_NONLINEAR"), (0x10000000, "MIXEDMAP"), (0x20000000, "SAO"),
    (0x40000000, "PFN_AT_MMAP"), (0x80000000, "MERGEABLE"),
]


def flag_names(flags: int, has_expand_upwards: bool, has_pmd_huge_pte: bool) -> list[str]:
    names = []
    for bit, name in _TABLE:
        if not flags & bit:
            continue
        if bit == 0x200:
            name = "GROWSUP" if has_expand_upwards else "NOHUGEPAGE"
        elif bit == 0x1000000:
            name = "HUGEPAGE" if has_pmd_huge_pte else "MAPPED_COPY"
        names.append(name)
    return names
