"""A task's state as crash 9.0.2 names it: the two letters of `ps`'s ST column.

crash (task.c initialize_task_state) learns the TASK_* bit values from the kernel's own
state-name table, then task_state() ORs task_struct.state (`__state`) with exit_state and
task_state_string() turns the result into RU/IN/UN/ID/ZO/ST/TR/SW/DE/PA/WA/NE (plus EX
on kernels that have TASK_EXCLUSIVE). `foreach STATE ...` selects the tasks whose string
begins with the word, after checking that the kernel has that state at all.

The index holds each task's state and exit_state, and the dump's release. The state
names are not stored: crash reads them from the kernel's task_state_array (or, from 2.6.33
to 4.13, its stat_nam string), which vmdex does not keep. From 4.14 on that array is the
same in every kernel ("R (running)", "S (sleeping)", "D (disk sleep)", "T (stopped)",
"t (tracing stop)", "X (dead)", "Z (zombie)", "P (parked)", "I (idle)"), and crash then
derives TASK_DEAD, WAKEKILL, WAKING, NOLOAD and NEW as the next bits above PARKED; so for
those kernels the release decides the table. Older kernels need the array's text, which
the index lacks: STATES() returns None for them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

U64 = (1 << 64) - 1
INVALID = -1   # crash's TASK_STATE_UNINITIALIZED


@dataclass(frozen=True)
class States:
    running: int
    interruptible: int
    uninterruptible: int
    stopped: int
    tracing_stopped: int
    zombie: int
    dead: int
    swapping: int
    exclusive: int
    wakekill: int
    waking: int
    parked: int
    noload: int
    new: int


# task_state_array of 4.14 and later, read as initialize_task_state reads it: the i-th
# name's bit is 0 for i = 0, else 1 << (i - 1); "(dead)" is X; "I (idle)" is not looked for.
# Then (>= 4.14, PARKED known): DEAD |= PARKED << 1, WAKEKILL, WAKING, NOLOAD, NEW follow.
_P = 0x40
MODERN = States(running=0, interruptible=0x1, uninterruptible=0x2, stopped=0x4,
                tracing_stopped=0x8, zombie=0x20, dead=0x10 | _P << 1, swapping=INVALID,
                exclusive=INVALID, wakekill=_P << 2, waking=_P << 3, parked=_P, noload=_P << 4,
                new=_P << 5)


def kernel_version(release: str) -> tuple[int, int, int] | None:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release or "")
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def states_for(release: str) -> States | None:
    """crash's TASK_* values for this kernel, or None when the index cannot tell."""
    v = kernel_version(release)
    return MODERN if v is not None and v >= (4, 14, 0) else None


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
