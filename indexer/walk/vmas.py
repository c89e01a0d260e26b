"""The VMAs of one mm in address order: the vm_next list (< 6.1) or the maple tree (≥ 6.1).

Which one is decided by the members mm_struct has, never by the kernel version.
"""
from __future__ import annotations

from vmdex.indexer.errors import MemoryReadError, WalkError
from vmdex.indexer.walk.kernel import Kernel

ULONG_MAX = (1 << 64) - 1
XA_ZERO_ENTRY = (257 << 2) | 2   # left in the tree by a failed fork; not a VMA
MAX_VMAS = 1 << 20               # bounds a corrupt (cyclic) list or tree
MAX_MAPLE_NODES = 1 << 18        # a tree of 1M VMAs needs ~100k nodes
MAX_MAPLE_HEIGHT = 64            # the kernel's MAPLE_HEIGHT_MAX is 31


def vma_addresses(k: Kernel, mm: int, errors: list[str], map_count: int | None = None) -> list[int]:
    """VMA addresses in address order. Corrupt lists/trees (cycles, garbage nodes) end the
    walk with an error in `errors` and what was found so far; nothing here loops forever.
    `map_count` (mm->map_count), when given, bounds a list that runs on past it."""
    limit = MAX_VMAS
    if map_count is not None and map_count >= 0:
        limit = min(MAX_VMAS, 2 * map_count + 4096)
    if k.has("mm_struct", "mmap"):
        return _from_list(k, mm, errors, limit)
    if k.has("mm_struct", "mm_mt"):
        return _from_maple_tree(k, mm + k.off("mm_struct", "mm_mt"), errors, mm)
    raise WalkError("mm_struct has neither mmap nor mm_mt: unknown VMA layout")


def _from_list(k: Kernel, mm: int, errors: list[str], limit: int = MAX_VMAS) -> list[int]:
    out, seen = [], set()
    nxt = k.off("vm_area_struct", "vm_next")
    v = k.ptr(mm + k.off("mm_struct", "mmap"))
    while v:
        if v in seen:
            errors.append(f"mm {mm:x}: VMA list loops at {v:x}")
            break
        if len(out) >= limit:
            errors.append(f"mm {mm:x}: VMA list longer than {limit} (corrupt?), cut at {v:x}")
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


def _from_maple_tree(k: Kernel, tree: int, errors: list[str], mm: int = 0) -> list[int]:
    m = _Maple(k)
    root = k.ptr(tree + k.off("maple_tree", "ma_root"))
    if not root:
        return []
    if not (root & 3 == 2 and root > 4096):
        return [root]          # a single entry at index 0 (never a real VMA tree)
    out: list[int] = []
    visited: set[int] = set()

    def node(enode: int, lo: int, hi: int, depth: int):
        addr = enode & ~0xFF
        if addr in visited:
            raise WalkError(f"maple node {addr:x} reached twice (cycle)")
        visited.add(addr)
        if len(visited) > MAX_MAPLE_NODES:
            raise WalkError(f"more than {MAX_MAPLE_NODES} maple nodes (corrupt tree?)")
        if depth > MAX_MAPLE_HEIGHT:
            raise WalkError(f"maple tree deeper than {MAX_MAPLE_HEIGHT} (corrupt?)")
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
        errors.append(f"mm {mm:x}: maple tree {tree:x}: {exc} (VMAs after it not listed)")
    return out
