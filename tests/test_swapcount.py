"""Swap slot counts (indexer.walk.swapcount) on memory laid out by hand: the cases the
matrix dumps do not have (shared slots, overflowed counts, holes in the dump)."""
from __future__ import annotations

import numpy as np

from vmdex.indexer.walk.swapcount import SwapCountsUnknown, SwapMap, SwapTable


class Memory:
    """Bytes at chosen addresses, read as FrameReader.fields reads the dump."""

    def __init__(self):
        self.bytes: dict[int, int] = {}

    def put(self, addr: int, value: int, size: int) -> None:
        for i, b in enumerate(value.to_bytes(size, "little")):
            self.bytes[addr + i] = b

    def fields(self, addrs, spec):
        out = {name: np.zeros(len(addrs), np.dtype(dt)) for name, (_, dt) in spec.items()}
        ok = np.ones(len(addrs), bool)
        for i, a in enumerate(addrs.tolist()):
            for name, (o, dt) in spec.items():
                at = range(a + o, a + o + np.dtype(dt).itemsize)
                if all(x in self.bytes for x in at):
                    out[name][i] = int.from_bytes(bytes(self.bytes[x] for x in at), "little")
                else:
                    ok[i] = False
        return out, ok


def counts_of(reader, mem, entries):
    typ = np.array([t for t, _ in entries], np.uint64)
    off = np.array([o for _, o in entries], np.uint64)
    counts, unknown = reader.counts(mem, typ, off)
    why = [""] * len(entries)
    for mask, reason in unknown:
        for i in np.flatnonzero(mask):
            why[i] = why[i] or reason
    return [w or int(c) for c, w in zip(counts, why)]


def test_swap_map_bytes():
    mem = Memory()
    for off, byte in {0: 1, 1: 0x41, 2: 2, 3: 0x83}.items():
        mem.put(0x5000 + off, byte, 1)
    got = counts_of(SwapMap({0: (0x5000, 16)}), mem, [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4),
                                                      (0, 16), (1, 0)])
    assert got[:3] == [1, 1, 2]
    assert "continued" in got[3]
    assert "swap_map byte" in got[4]
    assert "beyond" in got[5]
    assert "swap_info_struct" in got[6]


def test_swap_table_entries():
    mem = Memory()
    clusters, table, extend = 0x1000, 0x10000, 0x20000
    mem.put(clusters + 8, table, 8)             # cluster 0: a table and an extend_table
    mem.put(clusters + 16, extend, 8)
    mem.put(clusters + 48 + 8, 0, 8)            # cluster 1: no table
    mem.put(clusters + 48 + 16, 0, 8)
    slots = {1: (1 << 60) | (0x1234 << 1) | 1,  # swapped out (a shadow), count 1
             2: (3 << 60) | (0x777 << 2) | 2,   # in the swap cache (a PFN), count 3
             3: (15 << 60) | 1,                 # overflowed: extend_table[3]
             4: 0,                              # free
             5: ((1 << 64) - 1) & ~7}           # bad
    for slot, word in slots.items():
        mem.put(table + 8 * slot, word, 8)
    mem.put(extend + 4 * 3, 20, 4)
    reader = SwapTable({0: (clusters, 2048)}, 512, 48, 8, (16, "u4"))
    got = counts_of(reader, mem, [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (0, 6), (0, 600),
                                  (0, 1100), (0, 4096)])
    assert got[:5] == [1, 3, 20, 0, 0]
    assert "swap table page" in got[5]
    assert "no swap table" in got[6]
    assert "swap_cluster_info" in got[7]
    assert "beyond" in got[8]


def test_swap_table_overflow_without_extend_table():
    mem = Memory()
    mem.put(0x1000 + 8, 0x10000, 8)
    mem.put(0x1000 + 16, 0, 8)
    mem.put(0x10000, (15 << 60) | 2, 8)
    got = counts_of(SwapTable({0: (0x1000, 512)}, 512, 48, 8, (16, "u4")), mem, [(0, 0)])
    assert "no extend_table" in got[0]


def test_unknown_layout():
    got = counts_of(SwapCountsUnknown("no layout"), Memory(), [(0, 0), (0, 1)])
    assert got == ["no layout", "no layout"]
