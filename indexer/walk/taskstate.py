"""A task's state as crash 9.0.2 names it: the two letters of `ps`'s ST column.

crash (task.c initialize_task_state) learns the TASK_* bit values from the kernel's own
state-name table, task_state_array ("R (running)", "S (sleeping)", ...): the i-th name's
bit is 0 for i = 0, else 1 << (i - 1). The ingest reads that table from the dump
(read_state_names) and stores it; states_from_names() repeats crash's derivation,
including the states the table does not list, which crash adds by kernel version
(task.c: >= 4.14 the five bits above PARKED, 2.6.32-4.13 the three above DEAD): one of
the rules vmdex takes by release number because crash does. task_state() ORs
task_struct.state (`__state`) with exit_state; state_string() is task_state_string(),
verbose_state_string() its VERBOSE form (`set`'s STATE line).
Pure functions only: the query side imports this module without the walkers.
"""
from __future__ import annotations

import re
from collections import namedtuple

U64 = (1 << 64) - 1
INVALID = -1   # crash's TASK_STATE_UNINITIALIZED


# crash's task-state bit values, frozen (a namedtuple: the answer path imports this module,
# and dataclasses would pull in inspect)
States = namedtuple("States", "running interruptible uninterruptible stopped tracing_stopped "
                              "zombie dead swapping exclusive wakekill waking parked noload new")


def read_state_names(k) -> list[str] | None:
    """task_state_array's strings from the dump's memory, as crash reads them (a
    Kernel from indexer.walk.kernel), or None when the kernel has no such table."""
    base = k.sym("task_state_array")
    if base is None or k.sym("stat_nam") is not None:
        return None             # crash prefers stat_nam (2.6.33-4.13): not read here
    n = k.types.variable_array_length("task_state_array") or 32
    names = []
    for i in range(n):
        try:
            s = k.mem.cstring(k.ptr(base + 8 * i), 64).decode("latin-1")
        except Exception:       # past the table's end (length unknown): stop, as crash does
            break
        if not re.fullmatch(r". \(.*\)", s):
            break
        names.append(s)
    return names or None


def kernel_version(release: str) -> tuple[int, int, int] | None:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release or "")
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def states_from_names(names: list[str] | None, release: str) -> States | None:
    """crash's TASK_* values for a kernel with this task_state_array (None: unknown)."""
    v = kernel_version(release)
    if not names or v is None:
        return None
    val = dict(running=INVALID, interruptible=INVALID, uninterruptible=INVALID,
               stopped=INVALID, tracing_stopped=INVALID, zombie=INVALID, dead=INVALID,
               swapping=INVALID, exclusive=INVALID, wakekill=INVALID, waking=INVALID,
               parked=INVALID, noload=INVALID, new=INVALID)
    words = (("(running)", "running"), ("(sleeping)", "interruptible"),
             ("(disk sleep)", "uninterruptible"), ("(stopped)", "stopped"),
             ("(zombie)", "zombie"), ("(dead)", "dead"), ("(swapping)", "swapping"),
             ("(tracing stop)", "tracing_stopped"), ("(wakekill)", "wakekill"),
             ("(waking)", "waking"), ("(parked)", "parked"))
    bit = 0
    for name in names:
        for word, key in words:
            if word in name:
                if key in ("dead", "tracing_stopped") and val[key] != INVALID:
                    val[key] |= bit
                else:
                    val[key] = bit
                break
        bit = 1 if not bit else bit << 1
    if v >= (4, 14, 0):
        if val["parked"] != INVALID:
            p = val["parked"]
            if val["dead"] != INVALID:          # C: -1 | x stays -1
                val["dead"] |= p << 1
            val.update(wakekill=p << 2, waking=p << 3, noload=p << 4, new=p << 5)
    elif v >= (2, 6, 32) and val["dead"] != INVALID and bin(val["dead"]).count("1") == 1:
        d = val["dead"] & -val["dead"]
        val.update(dead=val["dead"] | d << 1, wakekill=d << 2, waking=d << 3)
    return States(**val)


def valid(x: int) -> bool:
    return x != INVALID


def task_state(state: int, exit_state: int) -> int:
    """crash's task_state(): state | exit_state, as an unsigned long."""
    return (state | exit_state) & U64


def state_string(s: States, value: int) -> str:
    """crash's task_state_string(task, buf, 0) for a task_state() value."""
    def eq(x):                       # C compares long with ulong: -1 is ULONG_MAX
        return value == x & U64

    buf = "??"
    exclusive = 0
    if valid(s.exclusive):
        exclusive = value & s.exclusive
        value &= ~s.exclusive & U64
    found = set_ = 0
    if eq(s.running):
        buf, found = "RU", found + 1
    if value & s.interruptible & U64:
        buf, found, set_ = "IN", found + 1, set_ + 1
    if value & s.uninterruptible & U64:
        buf = "ID" if valid(s.noload) and value & s.noload else "UN"
        found, set_ = found + 1, set_ + 1
    if value & s.zombie & U64:
        buf, found, set_ = "ZO", found + 1, set_ + 1
    if value & s.stopped & U64:
        buf, found, set_ = "ST", found + 1, set_ + 1
    if valid(s.tracing_stopped) and value & s.tracing_stopped:
        buf, found, set_ = "TR", found + 1, set_ + 1
    if eq(s.swapping):
        buf, found, set_ = "SW", found + 1, set_ + 1
    if value & s.dead & U64 and not set_:
        buf, found, set_ = "DE", found + 1, set_ + 1
    if eq(s.parked):
        buf, found = "PA", found + 1
    if eq(s.waking):
        buf, found = "WA", found + 1
    if eq(s.new):
        buf, found = "NE", found + 1
    if found and exclusive:
        buf += "EX"
    return buf


def verbose_state_string(s: States, value: int) -> str:
    """crash's task_state_string_verbose() (task.c) for a task_state() value:
    "TASK_RUNNING", "TASK_UNINTERRUPTIBLE|TASK_NOLOAD", ..."""
    def eq(x):
        return value == x & U64

    if eq(s.running):
        return "TASK_RUNNING"
    names = []
    for bits, name in ((s.interruptible, "TASK_INTERRUPTIBLE"),
                       (s.uninterruptible, "TASK_UNINTERRUPTIBLE"),
                       (s.stopped, "TASK_STOPPED"), (s.tracing_stopped, "TASK_TRACED")):
        if value & bits & U64:
            names.append(name)
    both = value & s.dead & U64
    if both:
        names.append("EXIT_DEAD|TASK_DEAD" if bin(both).count("1") > 1 else "EXIT_DEAD")
    if value & s.zombie & U64:
        names.append("EXIT_ZOMBIE")
    for bits, name in ((s.waking, "TASK_WAKING"), (s.wakekill, "TASK_WAKEKILL"),
                       (s.noload, "TASK_NOLOAD"), (s.new, "TASK_NEW")):
        if valid(bits) and value & bits:
            names.append(name)
    if eq(s.parked):
        return "TASK_PARKED"
    return "|".join(names)


SELECTORS = ("RU", "IN", "UN", "ST", "TR", "ZO", "DE", "PA", "WA", "ID", "NE", "SW")


def selector_value(s: States, word: str) -> int:
    """The state a `foreach` state word stands for (INVALID: not in this kernel)."""
    if word == "ID":
        if not valid(s.uninterruptible) or not valid(s.noload):
            return INVALID           # -1 | anything is -1 in crash's C
        return s.uninterruptible | s.noload
    return {"RU": s.running, "IN": s.interruptible, "UN": s.uninterruptible,
            "ST": s.stopped, "TR": s.tracing_stopped, "ZO": s.zombie, "DE": s.dead,
            "SW": s.swapping, "PA": s.parked, "WA": s.waking, "NE": s.new}[word]
