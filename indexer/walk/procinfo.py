"""What crash's `ps` options read beyond the task list: per task its times, last run,
kernel stack pointer, scheduling policy, resource limits and the argument/environment
pages; per dump the per-CPU runqueue clocks and the size of memory %MEM divides by, and
the kernel's HZ (which `sys` stores). One helper per kernel concept; the query side only prints.
"""
from __future__ import annotations

from vmdex.indexer.arch.base import to_signed
from vmdex.indexer.arch.pagewalk import translate
from vmdex.indexer.errors import MemoryReadError, WalkError
from vmdex.indexer.walk.kernel import Kernel

NSEC_PER_SEC = 1_000_000_000
MAX_ARG_BYTES = 4 << 20     # argv/envp larger than this is a garbage mm, not a process
_READ_ERRORS = (MemoryReadError, WalkError, ValueError, IndexError)

# crash's HZ when it cannot read the kernel's (no mq-deadline scope and no IKCONFIG): its
# per-machine default, x86_64.c and arm64.c machdep_init (`machdep->hz = 1000` / `100`).
CRASH_DEFAULT_HZ = {"x86_64": 1000, "arm64": 100}
# crash reads HZ through gdb from mq-deadline's `write_expire` (5 * HZ) when one of these
# functions gives it a scope (task.c task_init), else from CONFIG_HZ in IKCONFIG.
_DEADLINE_SCOPES = ("dd_init_queue", "dd_init_sched", "deadline_init_queue")


def kernel_hz(k: Kernel) -> int | None:
    """The kernel's HZ, from its own jiffies clocksource: `clocksource_jiffies.mult` is
    TICK_NSEC << JIFFIES_SHIFT and `.shift` is JIFFIES_SHIFT (kernel/time/jiffies.c), so
    NSEC_PER_SEC / TICK_NSEC rounds to HZ. None when the kernel lacks it."""
    cs = k.sym("clocksource_jiffies")
    if cs is None or not k.has("clocksource", "mult") or not k.has("clocksource", "shift"):
        return None
    try:
        v = k.view("clocksource", cs)
        tick_nsec = v.u("mult") >> v.u("shift")
    except _READ_ERRORS:
        return None
    return round(NSEC_PER_SEC / tick_nsec) if tick_nsec else None


def crash_hz(k: Kernel, arch_name: str) -> int | None:
    """The HZ crash computes with (machdep->hz): the kernel's own where crash can read it,
    else crash's machine default."""
    readable = any(k.sym(s) is not None for s in _DEADLINE_SCOPES) or \
        k.sym("kernel_config_data") is not None
    return kernel_hz(k) if readable else CRASH_DEFAULT_HZ.get(arch_name)


def total_pages(k: Kernel, page_size: int) -> int | None:
    """crash's vt->total_pages, what %MEM divides by: the physical address of high_memory
    in pages (64-bit kernels have no highmem to add)."""
    sym = k.sym("high_memory")
    if sym is None:
        return None
    try:
        return k.mem.vtop(k.ptr(sym)) // page_size
    except _READ_ERRORS:
        return None


def rq_clock_member(k: Kernel) -> str | None:
    """The runqueue timestamp crash's `ps -m` subtracts from (kernel.c: rq.clock, else
    most_recent_timestamp, else timestamp_last_tick)."""
    for name in ("clock", "most_recent_timestamp", "timestamp_last_tick"):
        if k.has("rq", name):
            return name
    return None


def rq_clocks(k: Kernel, ncpus: int) -> list[int | None]:
    member = rq_clock_member(k)
    rq = k.sym("runqueues")
    if member is None or rq is None:
        return [None] * ncpus
    off = k.off("rq", member)
    out = []
    for cpu in range(ncpus):
        try:
            out.append(k.mem.u64(k.percpu(rq, cpu) + off))
        except _READ_ERRORS:
            out.append(None)
    return out


def last_run_member(k: Kernel) -> str | None:
    """task_last_run's source (task.c): task_struct.last_run, .timestamp or
    sched_info.last_arrival, the first the kernel has."""
    for path in ("last_run", "timestamp", "sched_info.last_arrival"):
        if k.has("task_struct", path):
            return path
    return None


def kstack_member(k: Kernel) -> str | None:
    """Where the saved kernel stack pointer is (crash's task_pointer_string): x86's
    thread.sp (or .esp / .ksp), arm64's thread.cpu_context.sp."""
    for path in ("thread.esp", "thread.sp", "thread.ksp", "thread.cpu_context.sp"):
        if k.has("task_struct", path):
            return path
    return None


def rlimit_bytes(k: Kernel, signal: int) -> bytes | None:
    """signal_struct.rlim[] as the kernel holds it: RLIM_NLIMITS (cur, max) pairs."""
    if not signal or not k.has("signal_struct", "rlim"):
        return None
    n = k.types.array_length("signal_struct", "rlim")
    size = k.member_size("signal_struct", "rlim")
    if not n or not size:
        return None
    try:
        return k.mem.read(signal + k.off("signal_struct", "rlim"), size)
    except _READ_ERRORS:
        return None


def user_bytes(phys, arch, pgd: int, start: int, end: int) -> tuple[bytes | None, int | None]:
    """Bytes of [start, end) of a user address space, page by page through its tables, as
    crash's read_arg_string reads them: (bytes, None), or (None, the address whose page is
    not mapped or not in the dump)."""
    if end < start or end - start > MAX_ARG_BYTES:
        return None, start
    root = arch.user_root(pgd)
    out = bytearray()
    va, page = start, arch.page_size
    while va < end:
        n = min(page - (va & (page - 1)), end - va)
        try:
            pa = translate(phys, arch, root, va)
            if pa is None:
                return None, va
            out += phys.read(pa, n)
        except _READ_ERRORS:
            return None, va
        va += n
    return bytes(out), None


def task_rows(k: Kernel, phys, arch, tasks, mms) -> list[dict]:
    """One task_info row (without dump_id) per task, in the task list's order."""
    last = last_run_member(k)
    ksp = kstack_member(k)
    times = {m: k.has("task_struct", m) for m in ("start_time", "utime", "stime", "policy",
                                                  "prio", "signal", "parent")}
    args_of: dict[int, tuple] = {}

    def member(view, path, signed=False):
        if path is None or not view.has(path):
            return None
        return view.s(path) if signed else view.u(path)

    rows = []
    for t in tasks:
        row = dict(task=to_signed(t.addr), parent=None, start_time=None, utime=None,
                   stime=None, last_run=None, kstackp=None, policy=None, prio=None, rlim=None,
                   arg_start=None, arg_end=None, env_start=None, env_end=None, args=None,
                   env=None, args_error=None)
        try:
            v = k.view("task_struct", t.addr)
        except _READ_ERRORS as exc:
            row["args_error"] = f"task_struct unreadable: {exc}"
            rows.append(row)
            continue
        for m in ("start_time", "utime", "stime"):
            if times[m]:
                row[m] = to_signed(v.u(m))
        row["last_run"] = None if last is None else to_signed(v.u(last))
        row["kstackp"] = None if ksp is None else to_signed(v.u(ksp))
        row["policy"] = member(v, "policy") if times["policy"] else None
        row["prio"] = member(v, "prio", signed=True) if times["prio"] else None
        row["parent"] = to_signed(v.ptr("parent")) if times["parent"] else None
        if times["signal"]:
            row["rlim"] = rlimit_bytes(k, v.ptr("signal"))
        if t.mm:
            if t.mm not in args_of:
                args_of[t.mm] = _mm_args(k, phys, arch, t.mm, mms.get(t.mm))
            (row["arg_start"], row["arg_end"], row["env_start"], row["env_end"],
             row["args"], row["env"], row["args_error"]) = args_of[t.mm]
        rows.append(row)
    return rows


def _mm_args(k: Kernel, phys, arch, mm_addr: int, mm) -> tuple:
    """(arg_start, arg_end, env_start, env_end, args, env, error) of one mm."""
    if mm is None or not k.has("mm_struct", "arg_start"):
        return (None,) * 6 + ("mm_struct unreadable",)
    try:
        v = k.view("mm_struct", mm_addr)
    except _READ_ERRORS as exc:
        return (None,) * 6 + (f"mm_struct unreadable: {exc}",)
    a0, a1, e0, e1 = (v.u(m) for m in ("arg_start", "arg_end", "env_start", "env_end"))
    args, bad = user_bytes(phys, arch, mm.pgd, a0, a1)
    env, error = None, None
    if args is None:
        error = f"{bad:x}"
    else:
        env, bad = user_bytes(phys, arch, mm.pgd, e0, e1)
        if env is None:
            error = f"{bad:x}"
    return (to_signed(a0), to_signed(a1), to_signed(e0), to_signed(e1), args, env, error)


def dump_facts(k: Kernel, page_size: int, ncpus: int) -> dict[str, str]:
    """dump_info rows for ps: total pages, rq clocks, the last-run member (HZ and jiffies
    are sys's: indexer.walk.system).
    A fact the dump does not give is left out (the query side says so)."""
    facts: dict[str, str] = {}
    pages = total_pages(k, page_size)
    if pages:
        facts["total_pages"] = str(pages)
    clocks = rq_clocks(k, ncpus)
    if any(c is not None for c in clocks):
        facts["rq_clock"] = " ".join("-" if c is None else str(c) for c in clocks)
    last = last_run_member(k)
    if last:
        facts["last_run_member"] = last
    return facts
