"""The facts crash's `sys` prints (kernel.c display_sys_stats), read once at ingest into
DumpImage.info (table dump_info). One helper per kernel concept; each returns
{key: value} and a fact that cannot be read is stored as UNKNOWN with its reason under
`<key>.why`, so `vmdex sys` prints `?` and names it, never a guess.

Every value is a string; the keys are listed in docs/schema.md (dump_info).
"""
from __future__ import annotations

from vmdex.indexer.errors import MemoryReadError, VmdexError, WalkError
from vmdex.indexer.walk.kernel import Kernel

UNKNOWN = "?"
_READ_ERRORS = (MemoryReadError, WalkError, VmdexError)

# crash's panic strings (task.c panic_msg[], then panic_keywords[]): a kernel log line
# holding one of these is what crash prints as PANIC.
PANIC_MESSAGES = (
    "SysRq : Crash", "SysRq : Trigger a crash", "SysRq : Netdump", "Kernel panic: ",
    "Kernel panic - ", "Kernel BUG at", "kernel BUG at",
    "Unable to handle kernel paging request",
    "Unable to handle kernel NULL pointer dereference", "BUG: unable to handle kernel ",
    "general protection fault: ", "double fault: ", "divide error: ", "stack segment: ",
    "[Hardware Error]: ", "Bad mode in ", "Oops: ")
PANIC_KEYWORDS = ("Unable to handle kernel", "BUG: unable to handle kernel", "Kernel BUG at",
                  "kernel BUG at", "Bad mode in", "Oops", "Kernel panic")
BUFSIZE = 1500    # crash's line buffer: a log line is read 1499 bytes at a time


def _unknown(key: str, why: str) -> dict[str, str]:
    return {key: UNKNOWN, f"{key}.why": why}


def _guard(key: str, what: str, read) -> dict[str, str]:
    """{key: read()}, or the fact marked unknown when the dump cannot give it."""
    try:
        return {key: read()}
    except _READ_ERRORS as exc:
        return _unknown(key, f"{what} unreadable: {exc}")


def utsname(k: Kernel) -> dict[str, str]:
    """NODENAME, RELEASE, VERSION, MACHINE: init_uts_ns.name (crash's kt->utsname)."""
    ns = k.sym("init_uts_ns")
    if ns is None or not k.has("uts_namespace", "name"):
        facts: dict[str, str] = {}
        for field in ("nodename", "release", "version", "machine"):
            facts |= _unknown(field, "kernel has no init_uts_ns.name")
        return facts
    base = ns + k.off("uts_namespace", "name")
    facts = {}
    for field in ("nodename", "release", "version", "machine"):
        facts |= _guard(field, f"init_uts_ns.name.{field}", lambda f=field: k.mem.read(
            base + k.off("new_utsname", f), k.member_size("new_utsname", f))
            .split(b"\0", 1)[0].decode("latin-1"))
    return facts


def kernel_hz(k: Kernel) -> dict[str, str]:
    """The HZ crash divides jiffies by (machdep->hz): indexer.walk.procinfo.crash_hz."""
    from vmdex.indexer.walk.procinfo import crash_hz

    hz = crash_hz(k, k.mem.arch.name)
    return {"hz": str(hz)} if hz else _unknown(
        "hz", "kernel has no readable clocksource_jiffies (its HZ)")


def jiffies(k: Kernel) -> dict[str, str]:
    """UPTIME's count: jiffies_64 (else jiffies), as read; the query applies crash's
    INITIAL_JIFFIES rule (kernel.c get_uptime)."""
    for name in ("jiffies_64", "jiffies"):
        sym = k.sym(name)
        if sym is not None:
            return {"jiffies_symbol": name} | _guard("jiffies", name,
                                                     lambda: str(k.mem.u64(sym)))
    return _unknown("jiffies", "kernel has no jiffies_64 or jiffies")


def load_average(k: Kernel) -> dict[str, str]:
    """avenrun[3], fixed point (FSHIFT 11), as three integers."""
    sym = k.sym("avenrun")
    if sym is None:
        return _unknown("avenrun", "kernel has no avenrun")
    return _guard("avenrun", "avenrun",
                  lambda: " ".join(str(k.mem.u64(sym + 8 * i)) for i in range(3)))


def date(k: Kernel) -> dict[str, str]:
    """DATE: xtime seconds, from where crash 9.0.2's get_xtime (kernel.c, tag 9.0.2) looks,
    in its order: timekeeper.xtime; timekeeper.xtime_sec in `timekeeper`, then in
    `shadow_timekeeper`; xtime. A kernel with none of them (7.x keeps its timekeepers in
    timekeeper_data[]) leaves crash's date at 0: the epoch."""
    def sec_at(addr):
        return lambda: str(k.mem.sint(addr, 8))
    if k.has("timekeeper", "xtime") and k.sym("timekeeper") is not None:
        return _guard("xtime_sec", "timekeeper.xtime",
                      sec_at(k.sym("timekeeper") + k.off("timekeeper", "xtime")))
    if k.has("timekeeper", "xtime_sec"):
        for name in ("timekeeper", "shadow_timekeeper"):
            if k.sym(name) is not None:
                return _guard("xtime_sec", f"{name}.xtime_sec",
                              sec_at(k.sym(name) + k.off("timekeeper", "xtime_sec")))
    if k.sym("xtime") is not None:
        return _guard("xtime_sec", "xtime", sec_at(k.sym("xtime")))
    return {"xtime_sec": "0"}


def cpu_mhz(k: Kernel) -> dict[str, str]:
    """MACHINE's (N Mhz): x86_64.c reads cpu_khz / 1000 (0 when absent: "unknown");
    arm64.c's arm64_processor_speed() is always 0."""
    if k.mem.arch.name == "arm64":
        return {"mhz": "0"}
    if k.mem.arch.name != "x86_64":
        return _unknown("mhz", f"crash's processor speed on {k.mem.arch.name} is not read "
                        "by vmdex")
    sym = k.sym("cpu_khz")
    if sym is None:
        return {"mhz": "0"}
    return _guard("mhz", "cpu_khz", lambda: str(k.mem.sint(sym, 4) // 1000 if
                                                   k.mem.sint(sym, 4) > 0 else 0))


def cpus(k: Kernel, kt_cpus: int) -> dict[str, str]:
    """CPUS: bits of the present mask (else crash's kt->cpus), and the online count."""
    def bits(names):
        for n in names:
            sym = k.sym(n)
            if sym is not None:
                nbytes = (len(k.per_cpu_offsets) + 63) // 64 * 8
                return bin(int.from_bytes(k.mem.read(sym, nbytes), "little")).count("1")
        return 0
    facts = _guard("cpus_present", "cpu_present_mask",
                   lambda: str(bits(("__cpu_present_mask", "cpu_present_mask")) or kt_cpus))
    return facts | _guard("cpus_online", "cpu_online_mask",
                          lambda: str(bits(("__cpu_online_mask", "cpu_online_mask"))
                                      or kt_cpus))


def memory_total(k: Kernel, nodes: list[int]) -> dict[str, str]:
    """MEMORY: Σ node_present_pages (node_spanned_pages where 0) × page size, in bytes
    (crash's total_node_memory); the query rounds and prints it."""
    def read():
        total = 0
        for node in nodes:
            present = k.mem.u64(node + k.off("pglist_data", "node_present_pages"))
            if not present:
                present = k.mem.u64(node + k.off("pglist_data", "node_spanned_pages"))
            total += present * k.mem.page
        return str(total)
    return _guard("memory", "node_data", read) | {"page_size": str(k.mem.page)}


def taint(k: Kernel) -> dict[str, str]:
    """[TAINTED] (kernel.c is_kernel_tainted: `tainted` if the kernel has it, else
    tainted_mask), [LIVEPATCH] (taint K or a module named kpatch), [TRANSITION]
    (klp_transition_patch set), and `sys -t`'s letters from the kernel's taint_flags[]."""
    facts: dict[str, str] = {}
    old = k.sym("tainted")
    mask_sym = k.sym("tainted_mask")
    if old is not None:
        facts |= _guard("tainted", "tainted", lambda: str(k.mem.sint(old, 4)))
        facts["taint_symbol"] = "tainted"
    elif mask_sym is not None:
        facts |= _guard("tainted", "tainted_mask", lambda: str(k.mem.u64(mask_sym)))
        facts["taint_symbol"] = "tainted_mask"
    else:
        facts |= {"tainted": "0", "taint_symbol": ""}
    facts |= _taint_letters(k, facts)
    tp = k.sym("klp_transition_patch")
    facts |= {"transition": "0"} if tp is None else _guard(
        "transition", "klp_transition_patch",
        lambda: "0" if not k.mem.u64(tp) else UNKNOWN)
    if facts.get("transition") == UNKNOWN and "transition.why" not in facts:
        facts["transition.why"] = "a livepatch transition is under way (klp_patches not read)"
    letters = facts.get("taint_letters", "")
    facts |= {"livepatch": "1"} if "K" in letters else _kpatch_module(k)
    return facts


def _taint_letters(k: Kernel, facts: dict[str, str]) -> dict[str, str]:
    """crash's show_kernel_taints: per bit of taint_flags[], c_true when set, else c_false
    unless that is ' ', '-' or 'G'."""
    flags = k.sym("taint_flags")
    if facts["taint_symbol"] != "tainted_mask" or flags is None or facts["tainted"] == UNKNOWN:
        return {}
    n = k.types.variable_array_length("taint_flags")
    size = k.sizeof("taint_flag")
    names = ("c_true", "c_false") if k.has("taint_flag", "c_true") else ("true", "false")
    if not n or not size or not k.has("taint_flag", names[0]):
        return _unknown("taint_letters", "kernel's taint_flag layout not in the index")
    mask = int(facts["tainted"])

    def read():
        out = []
        for i in range(n):
            raw = k.mem.read(flags + i * size, size)
            if mask >> i & 1:
                out.append(chr(raw[k.off("taint_flag", names[0])]))
            else:
                c = chr(raw[k.off("taint_flag", names[1])])
                if c not in " -G":
                    out.append(c)
        return "".join(out)
    return _guard("taint_letters", "taint_flags", read)


def _kpatch_module(k: Kernel) -> dict[str, str]:
    """[LIVEPATCH] without taint K: a loaded module named kpatch (crash's is_livepatch)."""
    head = k.sym("modules")
    if head is None:
        return {"livepatch": "0"}
    if not (k.has("module", "list") and k.has("module", "name")):
        return _unknown("livepatch", "kernel's struct module layout not in the index")

    def read():
        lo, no = k.off("module", "list"), k.off("module", "name")
        p, seen = k.ptr(head), 0
        while p != head and seen < 100000:
            if k.mem.cstring(p - lo + no, 64) == b"kpatch":
                return "1"
            p, seen = k.ptr(p), seen + 1
        return "0"
    return _guard("livepatch", "the module list", read)


def panic_message(k: Kernel) -> dict[str, str]:
    """PANIC: crash 9.0.2's get_panicmsg (task.c): the string at `panicmsg` where the kernel
    has one; else the first log line holding one of its panic messages, tried message by
    message in its order; else the first line holding one of its panic keywords (a line with
    "sysrq" stops that search when the kernel has `sysrq_pressed`: its value says whether
    that line is the message); else no message ("")."""
    sym = k.sym("panicmsg")
    if sym is not None:
        return _guard("panic", "panicmsg",
                      lambda: k.mem.cstring(k.ptr(sym), BUFSIZE - 1).decode("latin-1"))
    try:
        lines = log_lines(k)
    except _READ_ERRORS as exc:
        return _unknown("panic", f"the kernel log is unreadable: {exc}")
    if lines is None:
        return _unknown("panic", "kernel log format not read by vmdex (no printk ringbuffer)")
    lines = [line[:BUFSIZE - 1] for line in lines]      # what one fgets() gets
    for msg in PANIC_MESSAGES:
        for line in lines:
            if msg in line:
                return {"panic": line}
    pressed = k.sym("sysrq_pressed")
    for line in lines:
        if "sysrq" in line and pressed is not None:
            return _guard("panic", "sysrq_pressed",
                          lambda: line if k.mem.sint(pressed, 4) else "")
        if any(word in line for word in PANIC_KEYWORDS):
            return {"panic": line}
    return {"panic": ""}


def log_lines(k: Kernel) -> list[str] | None:
    """The text of every record of the lockless printk ringbuffer (`prb`), line by line;
    None for a kernel without one."""
    prb_sym = k.sym("prb")
    if prb_sym is None or not k.has("printk_ringbuffer", "desc_ring"):
        return None
    prb = k.ptr(prb_sym)
    dr = prb + k.off("printk_ringbuffer", "desc_ring")
    tr = prb + k.off("printk_ringbuffer", "text_data_ring")
    count = 1 << k.mem.sint(dr + k.off("prb_desc_ring", "count_bits"), 4)
    descs = k.ptr(dr + k.off("prb_desc_ring", "descs"))
    infos = k.ptr(dr + k.off("prb_desc_ring", "infos"))
    tail = k.mem.u64(dr + k.off("prb_desc_ring", "tail_id"))
    head = k.mem.u64(dr + k.off("prb_desc_ring", "head_id"))
    size = 1 << k.mem.sint(tr + k.off("prb_data_ring", "size_bits"), 4)
    data = k.ptr(tr + k.off("prb_data_ring", "data"))
    dsz, isz = k.sizeof("prb_desc"), k.sizeof("printk_info")
    state_off = k.off("prb_desc", "state_var")
    begin_off = k.off("prb_desc", "text_blk_lpos") + k.off("prb_data_blk_lpos", "begin")
    next_off = k.off("prb_desc", "text_blk_lpos") + k.off("prb_data_blk_lpos", "next")
    len_off = k.off("printk_info", "text_len")
    id_mask = (1 << 62) - 1
    lines: list[str] = []
    rid = tail
    for _ in range(count):
        idx = rid % count
        state = k.mem.u64(descs + idx * dsz + state_off)
        sv = state >> 62
        if (state & id_mask) == (rid & id_mask) and sv in (1, 2):   # committed / finalized
            begin = k.mem.u64(descs + idx * dsz + begin_off)
            nxt = k.mem.u64(descs + idx * dsz + next_off)
            n = int.from_bytes(k.mem.read(infos + idx * isz + len_off, 2), "little")
            if not begin & 1 and n:
                at = begin % size if begin // size == nxt // size else 0
                text = k.mem.read(data + at + 8, n)
                lines += text.decode("latin-1").split("\n")
        if rid == head:
            break
        rid = (rid + 1) & ((1 << 64) - 1)
    return lines


def dump_flags(phys) -> dict[str, str]:
    """DUMPFILE's suffix (display_sys_stats): kdump-compressed files: [PARTIAL DUMP] when
    the sub-header's dump_level > 0 (diskdump.c), [INCOMPLETE] and [EXCLUDED VMEMMAP] from
    the header status bits; ELF: [PARTIAL DUMP] with a non-zero NT_DISKDUMP note."""
    if hasattr(phys, "dump_level"):
        status = getattr(phys, "status", 0)
        level = phys.dump_level if getattr(phys, "header_version", 0) >= 1 else -1
        return {"dump_kind": "diskdump", "partial": str(int(level > 0)),
                "incomplete": str(int(bool(status & 0x8))),
                "excluded_vmemmap": str(int(bool(status & 0x10)))}
    nt_diskdump = 0x70000001
    partial = any(t == nt_diskdump and any(d[:4]) for _, t, d in getattr(phys, "notes", []))
    return {"dump_kind": "netdump", "partial": str(int(partial))}


def system_facts(k: Kernel, phys, nodes: list[int], kt_cpus: int, ntasks: int | None
                 ) -> dict[str, str]:
    """Everything `sys` prints except the file names (ingest adds those)."""
    facts = {"arch": k.mem.arch.name}
    for part in (utsname(k), kernel_hz(k), jiffies(k), load_average(k), date(k),
                 cpu_mhz(k), cpus(k, kt_cpus), memory_total(k, nodes), taint(k),
                 panic_message(k), dump_flags(phys)):
        facts |= part
    facts |= ({"tasks": str(ntasks)} if ntasks is not None else
              _unknown("tasks", "some tasks could not be read"))
    return facts
