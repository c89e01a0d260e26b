"""Each swap slot's count, as swp_swapcount() reads it, for many swap entries at once:
SwapPss divides a swapped-out page by it (fs/proc/task_mmu.c smaps_pte_entry).

The kernel keeps the counts in one of two layouts, told apart by the vmlinux's DWARF:

* `swap_info_struct.swap_map` (SwapMap): one byte per slot, the count beside the
  SWAP_HAS_CACHE bit; COUNT_CONTINUED says the count goes on in continuation pages.
* the swap table (SwapTable: `swap_cluster_info.table`, no swap_map): the slots come in
  clusters of SWAPFILE_CLUSTER (the length of `struct swap_table`'s entries), one long each
  in the cluster's table. A swapped-out slot (shadow, bit 0 set) or a cached one (PFN, low
  bits 0b10) has its count in the top SWP_TB_COUNT_BITS bits: 4 on a 64-bit kernel, as the
  PFN leaves more free; a free or bad slot counts 0. The top count says it overflowed into
  the cluster's `extend_table`, one unsigned int per slot.

Every reader returns the counts and, grouped by a one-line reason, the entries whose count
the dump does not hold or that this module cannot decode: those are unknown, never guessed.
Everything here is plain data (picklable): the walk's worker processes use it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vmdex.indexer.errors import MemoryReadError, WalkError

Unknown = list[tuple[np.ndarray, str]]      # (mask of entries, why their count is unknown)

SWAP_HAS_CACHE, COUNT_CONTINUED = 0x40, 0x80
TABLE_COUNT_BITS = 4
TABLE_COUNT_SHIFT = 64 - TABLE_COUNT_BITS
TABLE_COUNT_MAX = (1 << TABLE_COUNT_BITS) - 1
SHADOW_MARK, PFN_MARK, PFN_MARK_MASK = 1, 2, 3
MAX_TYPES = 64                              # swap types read (MAX_SWAPFILES is at most 32)


@dataclass
class SwapAreas:
    """The swap areas in use (swap_info[type]): their per-slot array and size."""

    arrays: dict        # swap type -> (address of the area's per-slot array, si->max)

    def locate(self, typ: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, np.ndarray, Unknown]:
        """(indices of the entries inside a known area, their array addresses, the rest)."""
        lut_base = np.zeros(MAX_TYPES, np.uint64)
        lut_max = np.zeros(MAX_TYPES, np.uint64)
        for t, (base, slots) in self.arrays.items():
            lut_base[t], lut_max[t] = base, slots
        in_lut = typ < np.uint64(MAX_TYPES)
        t = np.where(in_lut, typ, 0).astype(np.int64)
        base = np.where(in_lut, lut_base[t], np.uint64(0))
        known = base != 0
        inside = known & (off < lut_max[t])
        unknown = []
        if not known.all():
            unknown.append((~known, "a swap area's swap_info_struct is not in the dump"))
        if (known & ~inside).any():
            unknown.append((known & ~inside, "a swap offset beyond its swap area's end"))
        return np.flatnonzero(inside), base[inside], unknown


@dataclass
class SwapMap(SwapAreas):
    """swap_info_struct.swap_map: one count byte per slot."""

    def counts(self, reader, typ: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, Unknown]:
        n = len(typ)
        counts = np.zeros(n, np.int64)
        at, base, unknown = self.locate(typ, off)
        got, ok = reader.fields(base + off[at], {"c": (0, "u1")})
        c = got["c"].astype(np.int64) & ~SWAP_HAS_CACHE
        counts[at] = c
        _unknown(unknown, n, at[~ok], "a swap_map byte is not in the dump")
        _unknown(unknown, n, at[ok & ((c & COUNT_CONTINUED) != 0)],
                 "a swap count continued (its continuation pages are not read)")
        return counts, unknown


@dataclass
class SwapTable(SwapAreas):
    """The swap table: `arrays` holds each area's cluster_info array."""

    per_cluster: int            # SWAPFILE_CLUSTER
    cluster_size: int           # sizeof(struct swap_cluster_info)
    table: int                  # offsetof(swap_cluster_info, table)
    extend: tuple | None        # (offsetof(swap_cluster_info, extend_table), its elements'
                                # numpy dtype), None when the layout does not describe it

    def counts(self, reader, typ: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, Unknown]:
        n = len(typ)
        counts = np.zeros(n, np.int64)
        at, base, unknown = self.locate(typ, off)
        per = np.uint64(self.per_cluster)
        slot = off[at] % per
        cluster = base + off[at] // per * np.uint64(self.cluster_size)
        spec = {"table": (self.table, "u8")}
        if self.extend is not None:
            spec["extend"] = (self.extend[0], "u8")
        ci, ok = reader.fields(cluster, spec)
        has_table = ok & (ci["table"] != 0)
        _unknown(unknown, n, at[~ok], "a swap cluster's swap_cluster_info is not in the dump")
        _unknown(unknown, n, at[ok & ~has_table], "a swap slot's cluster has no swap table")
        at, slot, ci = at[has_table], slot[has_table], {k: v[has_table] for k, v in ci.items()}

        got, ok = reader.fields(ci["table"] + slot * np.uint64(8), {"tb": (0, "u8")})
        _unknown(unknown, n, at[~ok], "a swap table page is not in the dump")
        tb = got["tb"]
        countable = ((tb & np.uint64(SHADOW_MARK)) != 0) | \
            ((tb & np.uint64(PFN_MARK_MASK)) == np.uint64(PFN_MARK))
        c = np.where(ok & countable, tb >> np.uint64(TABLE_COUNT_SHIFT), 0).astype(np.int64)
        counts[at] = c

        over = c == TABLE_COUNT_MAX
        if not over.any():
            return counts, unknown
        # Counts past the table's top value: the cluster's extend_table holds them.
        at, slot = at[over], slot[over]
        if self.extend is None:
            _unknown(unknown, n, at, "a swap count overflowed into an extend_table this "
                     "kernel's layout does not describe")
            return counts, unknown
        extend, dtype = ci["extend"][over], self.extend[1]
        _unknown(unknown, n, at[extend == 0], "a swap count overflowed but its cluster has "
                 "no extend_table")
        at, slot, extend = at[extend != 0], slot[extend != 0], extend[extend != 0]
        got, ok = reader.fields(extend + slot * np.uint64(np.dtype(dtype).itemsize),
                                {"c": (0, dtype)})
        counts[at] = got["c"].astype(np.int64)
        _unknown(unknown, n, at[~ok], "a swap extend_table is not in the dump")
        return counts, unknown


@dataclass
class SwapCountsUnknown:
    """A kernel whose swap counts cannot be read: every swap entry's count is unknown."""

    why: str

    def counts(self, reader, typ: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, Unknown]:
        return np.zeros(len(typ), np.int64), [(np.ones(len(typ), bool), self.why)]


def _unknown(unknown: Unknown, n: int, at: np.ndarray, why: str) -> None:
    """Add entries `at` (indices among n) to `unknown`, for reason `why`."""
    if len(at):
        mask = np.zeros(n, bool)
        mask[at] = True
        unknown.append((mask, why))


def swap_counts(k) -> tuple[int, SwapMap | SwapTable | SwapCountsUnknown]:
    """(nr_swapfiles, the reader of its slots' counts), the layout as the vmlinux has it."""
    if k.sym("nr_swapfiles") is None or k.sym("swap_info") is None:
        return 0, SwapCountsUnknown("the kernel has no nr_swapfiles or swap_info")
    try:
        nr = k.mem.u32(k.sym("nr_swapfiles"))
    except (MemoryReadError, WalkError):
        return 0, SwapCountsUnknown("nr_swapfiles is not in the dump")
    if k.has("swap_info_struct", "swap_map"):
        return nr, SwapMap(_arrays(k, nr, "swap_map"))
    table = _swap_table(k, nr)
    if table is None:
        return nr, SwapCountsUnknown("the kernel keeps swap counts neither in a swap_map "
                                     "nor in a swap table this vmdex reads")
    return nr, table


def _swap_table(k, nr: int) -> SwapTable | None:
    t = k.types
    per_cluster = t.array_length("swap_table", "entries")
    if not k.has("swap_info_struct", "cluster_info") or not k.has("swap_cluster_info", "table") \
            or not per_cluster or t.sizeof("swap_table") != 8 * per_cluster:
        return None
    target = t.member_type("swap_cluster_info", "extend_table") or {}
    elem = t.sizeof(target["target"]) if target.get("kind") == "ptr" else None
    extend = (t.offsetof("swap_cluster_info", "extend_table"), f"u{elem}") \
        if elem in (4, 8) else None
    return SwapTable(_arrays(k, nr, "cluster_info"), per_cluster, t.sizeof("swap_cluster_info"),
                     t.offsetof("swap_cluster_info", "table"), extend)


def _arrays(k, nr: int, member: str) -> dict:
    """{type: (the area's `member` array, si->max)} of the swap areas the dump holds."""
    base = k.sym("swap_info")
    off, max_off = k.off("swap_info_struct", member), k.off("swap_info_struct", "max")
    out = {}
    for t in range(min(nr, MAX_TYPES)):
        try:
            si = k.ptr(base + 8 * t)
            if si:
                array = k.ptr(si + off)
                if array:
                    out[t] = (array, k.mem.u32(si + max_off))
        except (MemoryReadError, WalkError):
            continue
    return out
