"""The task list as crash builds it: one idle task per CPU, then every pid in init_pid_ns.

crash walks the pid IDR (an xarray since 4.20), so every thread is its own entry; it sorts
by pid, idle tasks by CPU. We do the same so `foreach` iterates in crash's order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from vmdex.indexer.errors import MemoryReadError, WalkError
from vmdex.indexer.walk.kernel import Kernel

PF_EXITING = 0x4          # include/linux/sched.h, unchanged since 2.6
PF_KTHREAD = 0x00200000
MAX_XA_NODES = 1 << 20    # bounds a corrupt (cyclic) tree


@dataclass
class Task:
    addr: int
    pid: int
    tgid: int
    ppid: int
    cpu: int
    comm: str
    state: int
    exit_state: int
    flags: int
    mm: int
    is_idle: bool = False
    is_active: bool = False
    rss_cache: list[int] = field(default_factory=list)  # per-thread rss_stat.count[] (pre-6.2)
    st: str = "??"              # crash's ps ST column (indexer.walk.taskstate), set by ingest


def _xarray_entries(k: Kernel, root_entry: int, errors: list[str]):
    """Leaf entries of an xarray / radix tree whose root pointer is root_entry."""
    slots_off = k.off("xa_node", "slots")
    nslots = k.types.array_length("xa_node", "slots") or 64
    stack = [root_entry]
    visited: set[int] = set()
    while stack:
        e = stack.pop()
        if not e:
            continue
        if e & 3 == 2 and e > 4096:            # internal entry pointing at a node
            node = e & ~3
            if node in visited:                 # a tree has no node twice: corrupt
                errors.append(f"pid xarray: node {node:x} reached twice (cycle), skipped")
                continue
            visited.add(node)
            if len(visited) > MAX_XA_NODES:
                errors.append("pid xarray: too many nodes (corrupt tree?), walk stopped")
                return
            try:
                raw = k.mem.read(node + slots_off, 8 * nslots)
            except (MemoryReadError, WalkError) as exc:
                errors.append(f"pid xarray node {node:x}: {exc}")
                continue
            for i in range(nslots - 1, -1, -1):
                stack.append(int.from_bytes(raw[8 * i:8 * i + 8], "little"))
        elif e & 3 == 0:                        # a plain pointer: the entry itself
            yield e
        # value entries (bit 0) and small internal entries (retry/sibling/zero) carry no pid


def _read_task(k: Kernel, addr: int, is_idle: bool) -> Task:
    t = k.view("task_struct", addr)
    comm = t.raw[k.off("task_struct", "comm"):][:k.member_size("task_struct", "comm")]
    comm = comm.split(b"\0", 1)[0].decode("latin-1")
    state_path = "__state" if t.has("__state") else "state"
    cpu = t.u("cpu", 4) if t.has("cpu") else t.u("thread_info.cpu", 4)
    parent = t.ptr("real_parent") if t.has("real_parent") else t.ptr("parent")
    ppid = 0
    # crash shows PPID 0 for every idle task, though secondary CPUs' idle tasks are forked.
    if parent and parent != addr and not is_idle:
        try:
            ppid = k.mem.sint(parent + k.off("task_struct", "pid"), 4)
        except (MemoryReadError, WalkError):
            ppid = 0
    rss_cache: list[int] = []
    if t.has("rss_stat.count"):
        n = k.types.array_length("task_struct", "rss_stat.count") or 0
        off = k.off("task_struct", "rss_stat.count")
        rss_cache = [int.from_bytes(t.raw[off + 4 * i:off + 4 * i + 4], "little", signed=True)
                     for i in range(n)]
    return Task(addr=addr, pid=t.s("pid", 4), tgid=t.s("tgid", 4), ppid=ppid, cpu=cpu,
                comm=comm, state=t.s(state_path), exit_state=t.u("exit_state", 4),
                flags=t.u("flags", 4), mm=t.ptr("mm"), is_idle=is_idle, rss_cache=rss_cache)


def cpu_count(k: Kernel) -> int:
    """crash's kt->cpus: highest present CPU + 1, capped by the per-CPU areas."""
    mask_sym = k.sym("__cpu_present_mask") or k.sym("cpu_present_mask")
    ncpu = len(k.per_cpu_offsets)
    if mask_sym is None:
        return ncpu
    nbytes = (ncpu + 7) // 8
    bits = int.from_bytes(k.mem.read(mask_sym, max(8, (nbytes + 7) // 8 * 8)), "little")
    return min(bits.bit_length(), ncpu) or 1


def idle_tasks(k: Kernel, ncpus: int) -> list[int]:
    rq = k.need_sym("runqueues")
    off = k.off("rq", "idle")
    return [k.ptr(k.percpu(rq, cpu) + off) for cpu in range(ncpus)]


def active_tasks(k: Kernel, ncpus: int) -> set[int]:
    """The task each CPU's runqueue was running (foreach `active`)."""
    rq = k.need_sym("runqueues")
    off = k.off("rq", "curr")
    return {k.ptr(k.percpu(rq, cpu) + off) for cpu in range(ncpus)}


def walk_tasks(k: Kernel, errors: list[str]) -> list[Task]:
    """All tasks in crash's order: idle tasks by CPU, then by pid."""
    ncpus = cpu_count(k)
    tasks = []
    for cpu, a in enumerate(idle_tasks(k, ncpus)):
        try:
            tasks.append(_read_task(k, a, True))
        except (MemoryReadError, WalkError) as exc:
            errors.append(f"idle task of CPU {cpu} at {a:x}: {exc}")
    ns = k.need_sym("init_pid_ns")
    root = k.ptr(ns + k.off("pid_namespace", "idr") + k.off("idr", "idr_rt")
                 + k.off("xarray", "xa_head"))
    upid_ns = k.off("pid", "numbers") + k.off("upid", "ns")
    first_off = k.off("pid", "tasks") + k.off("hlist_head", "first")
    link = "pid_links" if k.has("task_struct", "pid_links") else "pids"
    link_off = k.off("task_struct", link)
    seen = {t.addr for t in tasks}
    rest = []
    for pid in _xarray_entries(k, root, errors):
        try:
            if k.ptr(pid + upid_ns) != ns:
                continue
            first = k.ptr(pid + first_off)
            if not first:
                continue
            addr = first - link_off
            if addr in seen:
                continue
            seen.add(addr)
            rest.append(_read_task(k, addr, False))
        except (MemoryReadError, WalkError) as exc:
            errors.append(f"pid {pid:x}: {exc}")
    rest.sort(key=lambda t: t.pid)
    tasks += rest
    active = active_tasks(k, ncpus)
    for t in tasks:
        t.is_active = t.addr in active
    return tasks
