"""crash's `ps` (task.c cmd_ps and the show_* it calls), answered from the index: the task
list, task_info (what the options read of each task) and dump_info (HZ, uptime, the
runqueue clocks, total pages). Options and messages are crash 9.0.2's, in its order.
"""
from __future__ import annotations

import re

from vmdex.indexer.errors import VmdexError
from vmdex.query.foreach import comm_key, is_kernel_thread, sched_policy_value
from vmdex.query.index import DumpIndex, Task, u
from vmdex.query.record import factory, record
from vmdex.query.render.crashfmt import mk, task_header
from vmdex.query.vm import Out, str_to_context
from vmdex.query.words import Fatal, getopt, is_number

PS_OPTSTRING = "HASgstcpkuGlmarC:y:"     # crash 9.0.2's cmd_ps getopt string
EXCLUSIVE = "gatcplmrSA"                 # PS_EXCLUSIVE's letters (ps_exclusive below)
USAGE = ("Usage:\n"
         "  ps [-k|-u|-G|-y policy] [-s] [-p|-c|-t|-[l|m][-C cpu]|-a|-g|-r|-S|-A|-H]\n"
         "     [pid | task | command] ...\n"
         "Enter \"help ps\" for details.\n")
PS_EXCLUSIVE_MSG = ("ps: -a, -t, -c, -p, -g, -l, -m, -S, -r and -A flags are all "
                    "mutually-exclusive\n")
HEADER = "      PID    PPID  CPU {}  ST  %MEM      VSZ      RSS  COMM\n"
RLIM_NAMES = ("CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK",
              "AS", "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME")
RLIM_INFINITY = (1 << 64) - 1
PF_EXITING = 0x4


class Usage(Exception):
    """crash's cmd_usage(SYNOPSIS)."""


@record
class PsArgs:
    flags: set[str] = factory(set)
    cpus: set[int] | None = None
    policy: int = 0                        # bit mask of 1 << policy
    targets: list[tuple[str, object]] = factory(list)  # (kind, value)


@record
class Info:
    """What ps reads beyond the tasks table, per task (task_info) and per dump."""
    tasks: dict[int, tuple]
    facts: dict[str, str]


def _load_info(idx: DumpIndex) -> Info:
    rows = idx.c.all(
        "SELECT task, parent, start_time, utime, stime, last_run, kstackp, policy, prio, rlim, "
        "args, env, args_error FROM task_info WHERE dump_id = ?", (idx.id,))
    facts = dict(idx.c.all("SELECT key, value FROM dump_info WHERE dump_id = ?", (idx.id,)))
    return Info({u(r[0]): tuple(r[1:]) for r in rows}, facts)


class Ps:
    def __init__(self, idx: DumpIndex, out: Out, a: PsArgs):
        self.idx, self.out, self.a = idx, out, a
        self.tasks = idx.tasks()
        self.by_addr = {t.task: t for t in self.tasks}
        self.info = _load_info(idx)
        if not self.info.tasks:
            raise VmdexError("ps: this index was made by an older vmdex without what ps reads "
                             "of each task; ingest the dump again")
        self.shown: set[int] = set()      # crash's hq of -G
        self.idle_shown = False           # IDLE_TASK_SHOWN of -g
        self.specified = bool(a.targets)  # TASK_SPECIFIED

    # --- per-task facts ------------------------------------------------------------
    def ti(self, t: Task, i: int):
        r = self.info.tasks.get(t.task)
        return None if r is None else r[i]

    def parent(self, t: Task) -> int | None:
        p = self.ti(t, 0)
        return u(p) if p is not None else None

    def ppid(self, t: Task) -> int:
        """task_to_pid(tc->ptask): the pid of the `parent` task, -1 when no task is there."""
        p = self.parent(t)
        if p is None:
            return t.ppid
        pt = self.by_addr.get(p)
        return pt.pid if pt else -1

    def last_run(self, t: Task) -> int:
        v = self.ti(t, 4)
        return u(v) if v is not None else 0

    def policy_bit(self, t: Task) -> int:
        p = self.ti(t, 6)
        return (1 << p) if p is not None and 0 <= p < 64 else 0

    def leader(self, t: Task) -> Task | None:
        """tgid_to_context: the thread group leader's context."""
        for x in self.tasks:
            if x.pid == t.tgid:
                return x
        return None

    def hz(self) -> int | None:
        v = self.info.facts.get("hz")
        return int(v) if v and v != "?" else None

    def rq_clock(self, cpu: int) -> int:
        clocks = self.info.facts.get("rq_clock")
        if clocks is None:
            raise VmdexError("ps -m: the dump's runqueue clocks were not read at ingest")
        vals = clocks.split()
        if cpu >= len(vals) or vals[cpu] == "-":
            raise Fatal(f"ps: cannot read the runqueue clock of cpu {cpu}\n")
        return int(vals[cpu])

    # --- the common pieces ---------------------------------------------------------
    def header(self, t: Task) -> str:
        return task_header(t.pid, t.task, t.cpu, t.comm)

    def state(self, t: Task) -> str:
        return self.idx.state_code(t)

    def mem_usage(self, t: Task) -> tuple[int, int, float]:
        """get_task_mem_usage: (total_vm pages, rss pages, %MEM)."""
        if not t.mm or self.idx.is_zombie(t):
            return 0, 0, 0.0
        mm = self.idx.mm(t.mm)
        if mm is None:
            return 0, 0, 0.0
        if t.flags & PF_EXITING and mm.mm_count <= 0:
            return 0, 0, 0.0
        rss = t.rss_pages
        if is_kernel_thread(t) and not rss:
            return mm.total_vm, rss, 0.0
        total = self.info.facts.get("total_pages")
        if not total:
            raise VmdexError("ps: %MEM needs the size of memory (high_memory), which this "
                             "dump's ingest could not read")
        return mm.total_vm, rss, rss * 100 / int(total)

    def pointer(self, t: Task) -> str:
        if "s" not in self.a.flags:
            return mk(f"{t.task:x}", 16, center=True, rjust=True)
        ksp = self.ti(t, 5)
        if self.idx.is_active(t.task) or not ksp:
            return mk("--", 16, center=True, rjust=True)
        return mk(f"{u(ksp):x}", 16, center=True, rjust=True)

    def table_header(self) -> str:
        col = mk("KSTACKP", 16, center=True, rjust=True) if "s" in self.a.flags \
            else mk("TASK", 16, center=True)
        return HEADER.format(col)

    # --- show_ps_data ---------------------------------------------------------------
    def show(self, t: Task) -> None:
        f, w = self.a.flags, self.out.write
        if "u" in f and is_kernel_thread(t):
            return
        if "k" in f and not is_kernel_thread(t):
            return
        if "y" in f and not self.policy_bit(t) & self.a.policy:
            return
        if "G" in f:
            if "l" in f or "m" in f:
                raise Fatal(f"ps: -G not supported with -{'l' if 'l' in f else 'm'} option\n")
            if t.pid != t.tgid:
                if not self.specified:
                    return
                t = self.leader(t)
                if t is None or t.task in self.shown:
                    return
            elif t.task in self.shown:
                return
            self.shown.add(t.task)
        for letter, show, blank in (("p", self.parent_list, True), ("c", self.child_list, True),
                                    ("l", self.last_run_lines, False),
                                    ("m", self.msec_lines, False), ("a", self.args, False),
                                    ("r", self.rlimits, False), ("g", self.tgid_list, False)):
            if letter in f:           # show_ps_data's order: one of these, then done
                show(t)
                if blank:
                    w("\n")
                return
        active = self.idx.is_active(t.task)
        if "A" in f and not self.specified and not active:
            return
        total_vm, rss, pct = self.mem_usage(t)
        st = self.state(t)
        pct_s = f"{pct:.1f}"
        if len(pct_s) == 3:
            pct_s = mk(pct_s, 4, center=True, rjust=True)
        kb = self.idx.page_size // 1024
        w(f"{'> ' if active else '  '}{t.pid:7d} {self.ppid(t):7d} {str(t.cpu):>3}  "
          f"{self.pointer(t)} {st:>3}{' ' if len(st) > 3 else '  '}{pct_s} "
          f"{total_vm * kb:8d} {rss * kb:8d}  "
          f"{'[' + t.comm + ']' if is_kernel_thread(t) else t.comm}\n")

    # --- -p / -c / -g ---------------------------------------------------------------
    def parent_list(self, t: Task) -> None:
        chain = [t.task]
        seen = {t.task}
        p = self.parent(t)
        while p is not None and p != chain[-1] and p not in seen:
            chain.append(p)
            seen.add(p)
            pt = self.by_addr.get(p)
            p = self.parent(pt) if pt else None
        for depth, addr in enumerate(reversed(chain)):
            pt = self.by_addr.get(addr)
            if pt:
                self.out.write(" " * depth + self.header(pt))

    def child_list(self, t: Task) -> None:
        w = self.out.write
        w(self.header(t))
        n = 0
        for x in self.tasks:
            if self.parent(x) == t.task:
                w("  " + self.header(x))
                n += 1
        if not n:
            w("  (no children)\n")

    def tgid_list(self, t: Task) -> None:
        w = self.out.write
        if t.pid != t.tgid:
            if not self.specified:
                return
            t = self.leader(t)
            if t is None:
                return
        if t.pid == 0 and self.idle_shown:
            return
        w(self.header(t))
        n = 0
        for x in self.tasks:
            if x.task == t.task:
                continue
            if x.tgid == t.tgid:
                w("  " + self.header(x))
                n += 1
                if x.pid == 0:
                    self.idle_shown = True
        if not n:
            w("  (no threads)\n")
        w("\n")

    # --- -l / -m ----------------------------------------------------------------------
    def stamp_width(self) -> int:
        return len(str(self.last_run(self.tasks[0]))) if self.tasks else 1

    def last_run_lines(self, t: Task | None) -> None:
        fmt_w = self.stamp_width()
        line = lambda x: (f"[{self.last_run(x):{fmt_w}d}] [{self.state(x)}]  "  # noqa: E731
                          + self.header(x))
        self.per_cpu_or(t, line, line)

    def msec_lines(self, t: Task | None) -> None:
        def delta(x: Task) -> str:
            return _nanoseconds(max(self.rq_clock(x.cpu) - self.last_run(x), 0))

        def padded(x: Task) -> str:
            days = len(_nanoseconds(self.rq_clock(x.cpu)).split(" ")[0])
            d = delta(x)
            return (f"[{' ' * (days - len(d.split(' ')[0]))}{d}] [{self.state(x)}]  "
                    + self.header(x))

        self.per_cpu_or(t, padded, lambda x: f"[{delta(x)}] [{self.state(x)}]  "
                        + self.header(x))

    def per_cpu_or(self, t: Task | None, cpu_line, plain_line) -> None:
        """show_last_run / show_milliseconds: per-CPU blocks with -C, else one task, else
        every task (in last-run order)."""
        w = self.out.write
        if self.a.cpus is not None:
            for n, c in enumerate(sorted(self.a.cpus)):
                w(f"{chr(10) if n else ''}CPU: {c}\n")
                for x in self.tasks:
                    if x.cpu == c:
                        w(cpu_line(x))
        elif t is not None:
            w(cpu_line(t))
        else:
            for x in self.tasks:
                w(plain_line(x))

    # --- -a / -r --------------------------------------------------------------------
    def args(self, t: Task) -> None:
        w = self.out.write
        w(self.header(t))
        if not t.mm:
            _say(self.out, "ps: no user stack\n\n")
            return
        args, env, error = self.ti(t, 9), self.ti(t, 10), self.ti(t, 11)
        if args is None:
            _say(self.out, f"ps: cannot access user stack address: {error}\n\n")
            return
        w("ARG: " + _arg_text(bytes(args)))
        if env is None:
            _say(self.out, f"ps: cannot access user stack address: {error}\n\n")
            return
        text, count = _env_text(bytes(env))
        w("\nENV: " + text + "\n" + ("" if count else "\n"))

    def rlimits(self, t: Task) -> None:
        w = self.out.write
        raw = self.ti(t, 8)
        if raw is None:
            raise Fatal("ps: cannot determine rlimit array location\n")
        raw = bytes(raw)
        n = len(raw) // 16
        names = [RLIM_NAMES[i] if i < len(RLIM_NAMES) else "(unknown)" for i in range(n)]
        len1 = max((len(RLIM_NAMES[i]) for i in range(min(n, len(RLIM_NAMES)))), default=0)
        w(self.header(t))
        w(f"  {mk('RLIMIT', len1, rjust=True)}   {mk('CURRENT', 11, center=True, rjust=True)}"
          f"   {mk('MAXIMUM', 11, center=True, rjust=True)}\n")
        for i in range(n):
            cur = int.from_bytes(raw[16 * i:16 * i + 8], "little")
            top = int.from_bytes(raw[16 * i + 8:16 * i + 16], "little")
            w(f"  {mk(names[i], len1, rjust=True)}   {_rlim(cur)}   {_rlim(top)}\n")
        w("\n")

    # --- -t ---------------------------------------------------------------------------
    def times(self, t: Task | None) -> None:
        """show_task_times: one task (and, as crash does, the next that passes -u/-k when
        it does not), or every task by start time."""
        f = self.a.flags
        start = self.tasks.index(t) if t is not None else 0
        chosen = []
        for x in self.tasks[start:]:
            if "u" in f and is_kernel_thread(x):
                continue
            if "k" in f and not is_kernel_thread(x):
                continue
            if "G" in f and x.pid != x.tgid:
                if t is None:
                    continue
                x = self.leader(x)
                if x is None:
                    return
            if "G" in f:
                if x.task in self.shown:
                    return
                self.shown.add(x.task)
            chosen.append(x)
            if t is not None:
                break
        else:
            if t is not None:
                # crash counts RUNNING_TASKS() contexts from this task on, past the end of
                # its own table: what it reads there is its memory, not the dump's
                raise VmdexError(f"ps -t: no task after {t.pid} passes -u/-k; crash 9.0.2 "
                                 "goes on past its task table (crash would read raw memory "
                                 "there)")
        chosen.sort(key=lambda x: u(self.ti(x, 1) or 0))
        hz = self.hz()
        w = self.out.write
        for x in chosen:
            start_time = u(self.ti(x, 1) or 0)
            w(self.header(x))
            w(f"    RUN TIME: {_run_time(start_time, hz, self.info.facts)}\n")
            w(f"  START TIME: {start_time}\n")
            w(f"       UTIME: {_signed(self.ti(x, 2))}\n")
            w(f"       STIME: {_signed(self.ti(x, 3))}\n\n")

    # --- -S ---------------------------------------------------------------------------
    def show_cpu_blocks(self) -> None:
        """show_ps_data(flag, NULL, psi): every task in per-CPU blocks (-l/-m with -C)."""
        if "G" in self.a.flags:
            raise Fatal(f"ps: -G not supported with -{'l' if 'l' in self.a.flags else 'm'} "
                        "option\n")
        (self.last_run_lines if "l" in self.a.flags else self.msec_lines)(None)

    def summary(self) -> None:
        counts: dict[str, int] = {}
        for t in self.tasks:
            st = self.state(t)
            counts[st] = counts.get(st, 0) + 1
        for st, n in counts.items():
            self.out.write(f"  {st}: {n}\n")


def _say(out: Out, msg: str) -> None:
    """crash's error(INFO, ...): the message, and the command goes on (exit status 1)."""
    out.write(msg)
    out.failed = True


def _signed(v) -> int:
    return 0 if v is None else (u(v) - (1 << 64) if u(v) >> 63 else u(v))


def _rlim(v: int) -> str:
    return "(unlimited)" if v == RLIM_INFINITY else mk(str(v), 11, center=True)


def _arg_text(buf: bytes) -> str:
    out, run = [], 0
    for b in buf:
        if b == 0:
            if run:
                out.append(" ")
            run = 0
        else:
            out.append(chr(b))
            run += 1
    return "".join(out)


def _env_text(buf: bytes) -> tuple[str, int]:
    out, run, count = [], 0, 0
    for i, b in enumerate(buf):
        if b == 0:
            if run:
                out.append("\n")
            run = 0
        else:
            out.append(("     " if not run and i else "") + chr(b))
            run += 1
            count += 1
    return "".join(out), count


def _nanoseconds(v: int) -> str:
    """translate_nanoseconds: 'days hh:mm:ss.ms'."""
    v //= 1000000
    ms, v = v % 1000, v // 1000
    secs, v = v % 60, v // 60
    mins, v = v % 60, v // 60
    hours, days = v % 24, v // 24
    return f"{days} {hours:02d}:{mins:02d}:{secs:02d}.{ms:03d}"


def _run_time(start_time: int, hz: int | None, facts: dict[str, str]) -> str:
    """convert_time(convert_start_time(start_time, jiffies_64)) for nanosecond start times."""
    from vmdex.query.sys import convert_time, uptime_ticks

    if not hz:
        return "(cannot calculate: unknown HZ value)"
    jiffies = facts.get("jiffies")
    if jiffies is None or jiffies == "?":
        raise VmdexError("ps -t: the dump's jiffies were not read at ingest")
    current = uptime_ticks(int(jiffies), hz, facts.get("jiffies_symbol", "jiffies_64"))
    ticks = (start_time // 1000000000) * hz
    return convert_time(0 if ticks > current else current - ticks, hz)


# --- options -------------------------------------------------------------------------
def _cpumask(spec: str, ncpus: int) -> set[int]:
    """make_cpumask (tools.c) with FAULT_ON_ERROR."""
    cpus: set[int] = set()
    for piece in spec.split(","):
        if not piece:
            continue
        if piece in ("a", "all"):
            lo, hi = 0, ncpus - 1
        else:
            parts = [p for p in piece.split("-") if p]
            lo = _dtoi(parts[0]) if parts else -1
            hi = _dtoi(parts[1]) if len(parts) > 1 else lo
        if not (0 <= lo < ncpus and 0 <= hi < ncpus):
            raise Fatal(f"ps: invalid cpu specification: {spec}\n")
        cpus.update(range(lo, hi + 1))
    return cpus


def _dtoi(s: str) -> int:
    s = s.lstrip(" ")
    for ch in s:
        if not "0" <= ch <= "9":
            raise Fatal(f'ps: {s}: "{ch}" is not a digit 0 - 9\n')
    return int(s) if len(s) < 10 else int(s) & 0xFFFFFFFF


def _policy_mask(spec: str) -> int:
    """make_sched_policy: the policies of a comma-separated list, as a bit mask."""
    mask = 0
    for piece in spec.split(","):
        v = sched_policy_value(piece)
        if v is None:
            raise Fatal(f"ps: {piece}: invalid scheduling policy\n")
        mask |= 1 << v
    return mask


def parse_ps(argv: list[str], out: Out, open_index) -> PsArgs:
    """cmd_ps's getopt loop and argument words, in crash's order."""
    a = PsArgs()
    events, words = getopt("ps", argv, PS_OPTSTRING)
    argerrs = False
    cpuspec = None
    for ev in events:
        c = ev.opt
        if c == "?":
            out.err(ev.complaint)
            argerrs = True
        elif c in "ku":
            if ("u" if c == "k" else "k") in a.flags:
                raise Fatal("ps: -u and -k are mutually exclusive\n")
            a.flags.add(c)
        elif c in EXCLUSIVE:
            if any(x in a.flags for x in EXCLUSIVE if x != c):
                raise Fatal(PS_EXCLUSIVE_MSG)
            a.flags.add(c)
        elif c == "C":
            cpuspec = ev.arg
            a.cpus = _cpumask(ev.arg, _ncpus(open_index))
        elif c == "y":
            a.flags.add("y")
            a.policy = _policy_mask(ev.arg)
        else:                               # H, s, G
            a.flags.add(c)
    if argerrs:
        raise Usage()
    if a.cpus is not None and not ("l" in a.flags or "m" in a.flags):
        _say(out, "ps: -C option is only applicable with -l and -m\n")
        a.flags.add("bail")
        return a
    if not words:
        return a
    if "S" in a.flags:
        raise Fatal("ps: -S option takes no arguments\n")
    if cpuspec is not None:
        _say(out, "ps: -C option is not applicable with specified tasks\n")
    idx = None
    for w in words:
        if is_number(w):
            idx = idx or open_index()
            hit = str_to_context(idx, w)
            if hit is None:
                _say(out, f"ps: invalid task or pid value: {w}\n\n")
            else:
                a.targets.append(hit)
        elif len(w) >= 2 and w[0] == "'" and w[-1] == "'":
            pattern = w[1:-1]
            try:
                a.targets.append(("regex", re.compile(pattern)))
            except re.error:
                raise Fatal(f"ps: invalid regular expression: {pattern}\n") from None
        else:
            a.targets.append(("comm", comm_key(w[1:] if w.startswith("\\") else w)))
    if not a.targets and words:
        a.targets.append(("none", None))     # only invalid words: the header, no task
    return a


def _ncpus(open_index) -> int:
    idx = open_index()
    r = idx.c.one("SELECT cpus FROM dumps WHERE id = ?", (idx.id,))
    return r[0]


def _matches(ps: Ps, t: Task, kind: str, value) -> bool:
    f = ps.a.flags
    if kind == "pid":
        return t.pid == value
    if kind == "task":
        return t.task == value
    if kind == "comm":
        hit = t.comm == value
    elif kind == "regex":
        hit = value.search(t.comm) is not None
    else:
        return False
    if hit and ("g" in f or "G" in f):
        return t.pid == t.tgid
    return hit


def run_ps(open_index, argv: list[str], out: Out, fmt: str = "text") -> int:
    if fmt != "text":
        raise VmdexError("ps answers in text only (--format json|csv: use `vmdex sql` on "
                         "the tasks and task_info tables)")
    try:
        try:
            a = parse_ps(argv, out, open_index)
        except Usage:
            out.write(USAGE)
            return 1
        if "bail" in a.flags:
            return 1
        ps = Ps(open_index(), out, a)
        f = a.flags
        if "l" in f or "m" in f:         # sort_context_array_by_last_run (stable, as glibc)
            ps.tasks = sorted(ps.tasks, key=lambda t: -ps.last_run(t))
        if not set(f) & (set(EXCLUSIVE) - {"A"}) and "H" not in f:
            out.write(ps.table_header())
        if not a.targets:
            if "t" in f:
                ps.times(None)
            elif "S" in f:
                if f & {"u", "k", "G"}:
                    raise Fatal("ps: -S option cannot be used with other options\n")
                ps.summary()
            elif a.cpus is not None:
                ps.show_cpu_blocks()
            else:
                for t in ps.tasks:
                    ps.show(t)
            return 1 if out.failed else 0
        for t in ps.tasks:
            for kind, value in a.targets:
                if _matches(ps, t, kind, value):
                    if "t" in f:
                        ps.times(t)
                    else:
                        ps.show(t)
        return 1 if out.failed else 0
    except Fatal as exc:
        out.write(str(exc))
        return 1
