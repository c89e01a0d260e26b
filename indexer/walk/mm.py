"""mm_struct and its VMAs: what `vm` prints in the MM and VMA lines, plus raw bytes for -m/-v."""
from __future__ import annotations

from dataclasses import dataclass, field

from vmdex.indexer.errors import MemoryReadError, WalkError
from vmdex.indexer.walk.kernel import Kernel
from vmdex.indexer.walk.paths import PathResolver
from vmdex.indexer.walk.vmas import vma_addresses


@dataclass
class Vma:
    addr: int
    start: int
    end: int
    flags: int
    pgoff: int
    file: int
    path: str | None
    raw: bytes


@dataclass
class Mm:
    addr: int
    pgd: int
    total_vm: int
    map_count: int
    mm_count: int
    counters: list[int]          # mm-wide rss counters, signed, indexed by MM_* enum
    raw: bytes
    vmas: list[Vma] = field(default_factory=list)
    # The first VMA the dump lost: (its place in the list, its address, the kernel address
    # that failed, cause code). crash's walk stops there, so the list stops there too.
    vma_fault: tuple[int, int, int, str] | None = None


def rss_counter_indexes(k: Kernel) -> list[int]:
    """Which rss counters crash adds: FILE, ANON and (when it exists) SHMEM. Never SWAPENTS."""
    idx = [k.enum("MM_FILEPAGES", 0), k.enum("MM_ANONPAGES", 1)]
    shmem = k.enum("MM_SHMEMPAGES")
    if shmem is not None:
        idx.append(shmem)
    return idx


def _counters(k: Kernel, mm) -> list[int]:
    """The mm-wide counters: atomic_long_t count[] (< 6.2) or percpu_counter[] (≥ 6.2)."""
    if k.has("mm_struct", "rss_stat.count"):
        n = k.types.array_length("mm_struct", "rss_stat.count") or 0
        off = k.off("mm_struct", "rss_stat.count")
        return [int.from_bytes(mm.raw[off + 8 * i:off + 8 * i + 8], "little", signed=True)
                for i in range(n)]
    if k.has("mm_struct", "rss_stat"):
        # Per-CPU counters: count + Σ per-cpu deltas, clamped at 0 per counter (as crash does).
        from vmdex.indexer.walk.tasks import cpu_count
        n = k.types.array_length("mm_struct", "rss_stat") or 0
        size = k.sizeof("percpu_counter")
        base = k.off("mm_struct", "rss_stat")
        c_off = k.off("percpu_counter", "count")
        has_pcpu = k.has("percpu_counter", "counters")
        p_off = k.off("percpu_counter", "counters") if has_pcpu else 0
        ncpu = cpu_count(k)
        out = []
        for i in range(n):
            o = base + i * size
            v = int.from_bytes(mm.raw[o + c_off:o + c_off + 8], "little", signed=True)
            if has_pcpu:
                pcpu = int.from_bytes(mm.raw[o + p_off:o + p_off + 8], "little")
                for cpu in range(ncpu):
                    v += k.mem.sint(k.percpu(pcpu, cpu), 4)
            out.append(max(v, 0))
        return out
    return []


def read_mm(k: Kernel, addr: int, paths: PathResolver, errors: list[str]) -> Mm:
    v = k.view("mm_struct", addr)
    mm_count_path = "mm_count.counter" if v.has("mm_count.counter") else "mm_count"
    mm = Mm(addr=addr, pgd=v.ptr("pgd"), total_vm=v.s("total_vm"), map_count=v.s("map_count", 4),
            mm_count=v.s(mm_count_path, 4), counters=_counters(k, v), raw=v.raw)
    owner = k.off("vm_area_struct", "vm_mm") if k.has("vm_area_struct", "vm_mm") else None
    for va in vma_addresses(k, addr, errors, mm.map_count):
        try:
            view = k.view("vm_area_struct", va)
        except MemoryReadError as exc:
            # crash reads each VMA with FAULT_ON_ERROR (fill_vma_cache): its walk of this
            # mm ends here, with a read error naming the address.
            errors.append(f"mm {addr:x}: VMA {va:x} lost, the VMA list stops there: {exc}")
            mm.vma_fault = (len(mm.vmas), va, exc.vaddr if exc.vaddr is not None else va,
                            exc.cause)
            break
        try:
            vma = _vma(view, paths)
        except (MemoryReadError, WalkError) as exc:
            errors.append(f"mm {addr:x}: VMA {va:x}: {exc}")
            continue
        if owner is not None:
            vm_mm = int.from_bytes(vma.raw[owner:owner + 8], "little")
            if vm_mm != addr:   # kept (crash would show it), but the tree/list is suspect
                errors.append(f"mm {addr:x}: VMA {va:x} belongs to mm {vm_mm:x} "
                              "(corrupt VMA tree or list?)")
        mm.vmas.append(vma)
    return mm


def _vma(v, paths: PathResolver) -> Vma:
    addr = v.addr
    flags_path = "vm_flags" if v.has("vm_flags") else "__vm_flags"
    f = v.ptr("vm_file")
    return Vma(addr=addr, start=v.ptr("vm_start"), end=v.ptr("vm_end"), flags=v.u(flags_path),
               pgoff=v.u("vm_pgoff"), file=f, path=paths.file_path(f) if f else None, raw=v.raw)


def crash_rss(k: Kernel, counters: list[int], thread_caches: list[list[int]]) -> int:
    """RSS in pages as crash computes it: FILE+ANON+SHMEM, each only if positive, plus the
    per-thread rss_stat caches (CONFIG_SPLIT_RSS_COUNTING, < 6.2) of the tgid's tasks."""
    idx = rss_counter_indexes(k)
    rss = sum(counters[i] for i in idx if i < len(counters) and counters[i] > 0)
    for cache in thread_caches:
        rss += sum(cache[i] for i in idx if i < len(cache) and cache[i] > 0)
    return min(rss, (1 << 63) - 1)  # corrupt counters must still fit the index's BIGINT
