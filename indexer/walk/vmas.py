"""The VMAs of one mm in address order: the vm_next list (< 6.1) or the maple tree (≥ 6.1).

Which one is decided by the members mm_struct has, never by the kernel version.
"""
from __future__ import annotations

from indexer.errors import MemoryReadError, WalkError
from indexer.walk.kernel import Kernel

ULONG_MAX = (1 << 64) - 1
XA_ZERO_ENTRY = (257 << 2) | 2   # left in the tree by a failed fork; not a VMA
MAX_VMAS = 1 << 22               # bounds a corrupt (cyclic) list or tree


def vma_addresses(k: Kernel, mm: int, errors: list[str]) -> list[int]:
    if k.has("mm_struct", "mmap"):
        return _from_list(k, mm, errors)
    if k.has("mm_struct", "mm_mt"):
        return _from_maple_tree(k, mm + k.off("mm_struct", "mm_mt"), errors)
    raise WalkError("mm_struct has neither mmap nor mm_mt: unknown VMA layout")


def _from_list(k: Kernel, mm: int, errors: list[str]) -> list[int]:
    out, seen = [], set()
    nxt = k.off("vm_area_struct", "vm_next")
    v = k.ptr(mm + k.off("mm_struct", "mmap"))
    while v:
        if v in seen or len(out) >= MAX_VMAS:
            errors.append(f"mm {mm:x}: VMA list loops at {v:x}")
            break
        seen.add(v)
        out.append(v)
        try:
            v = k.ptr(v + nxt)
        except (MemoryReadError, WalkError) as exc:
            errors.append(f"mm {mm:x}: VMA {v:x}: {exc}")
            break
    return out


class _Maple:
    """Layout of maple nodes, from DWARF: slot/pivot offsets and counts per node type."""

    def __init__(self, k: Kernel):
        self.k = k
        self.leaf64 = k.enum("maple_leaf_64", 1)
        self.range64 = k.enum("maple_range_64", 2)
        self.arange64 = k.enum("maple_arange_64", 3)
        t = k.types
        self.r_piv = k.off("maple_range_64", "pivot")
        self.r_slot = k.off("maple_range_64", "slot")
        self.r_npiv = t.array_length("maple_range_64", "pivot")
        self.a_piv = k.off("maple_arange_64", "pivot")
        self.a_slot = k.off("maple_arange_64", "slot")
        self.a_npiv = t.array_length("maple_arange_64", "pivot")
        self.a_meta = k.off("maple_arange_64", "meta")
        # range_64's metadata overlays the last slot (or sits in a union with it).
        if k.has("maple_range_64", "meta"):
            self.r_meta = k.off("maple_range_64", "meta")
        else:
            self.r_meta = self.r_slot + 8 * self.r_npiv
        self.node_size = k.sizeof("maple_node")


def _u64s(raw: bytes, off: int, n: int) -> list[int]:
    return [int.from_bytes(raw[off + 8 * i:off + 8 * i + 8], "little") for i in range(n)]


def _from_maple_tree(k: Kernel, tree: int, errors: list[str]) -> list[int]:
    m = _Maple(k)
    root = k.ptr(tree + k.off("maple_tree", "ma_root"))
    if not root:
        return []
    if not (root & 3 == 2 and root > 4096):
        return [root]          # a single entry at index 0 (never a real VMA tree)
    out: list[int] = []
    visited = 0

    def node(enode: int, lo: int, hi: int, depth: int):
        nonlocal visited
        visited += 1
        if visited > MAX_VMAS or depth > 64:
            raise WalkError("maple tree too deep or cyclic")
        addr = enode & ~0xFF
        typ = (enode >> 3) & 0xF
        raw = k.mem.read(addr, m.node_size)
        if typ == m.arange64:
            piv, slots = _u64s(raw, m.a_piv, m.a_npiv), _u64s(raw, m.a_slot, m.a_npiv + 1)
            end = raw[m.a_meta]
        elif typ in (m.range64, m.leaf64):
            piv, slots = _u64s(raw, m.r_piv, m.r_npiv), _u64s(raw, m.r_slot, m.r_npiv + 1)
            last = piv[m.r_npiv - 1]
            end = raw[m.r_meta] if last == 0 else (m.r_npiv - 1 if last == hi else m.r_npiv)
        else:
            raise WalkError(f"maple node {addr:x}: unknown type {typ}")
        end = min(end, len(slots) - 1)
        leaf = typ < m.range64
        slot_lo = lo
        for i in range(end + 1):
            slot_hi = piv[i] if i < end and i < len(piv) else hi
            e = slots[i]
            if e:
                if leaf:
                    if e != XA_ZERO_ENTRY:
                        out.append(e)
                else:
                    node(e, slot_lo, slot_hi, depth + 1)
            if slot_hi >= hi:
                break
            slot_lo = slot_hi + 1

    try:
        node(root, 0, ULONG_MAX, 0)
    except (MemoryReadError, WalkError) as exc:
        errors.append(f"maple tree {tree:x}: {exc}")
    return out
