"""crash's `foreach [selectors...] vm [options]`: vm over a filtered task list, in crash's
task order. Parsing follows crash 9.0.2's cmd_foreach() and the FOREACH_VM checks and
task filters of foreach() (task.c); only the `vm` command can be answered from the index.
"""
from __future__ import annotations

import re

from vmdex.indexer.errors import VmdexError
from vmdex.query.index import DumpIndex, Task
from vmdex.query.record import factory, record
from vmdex.indexer.walk.taskstate import INVALID, SELECTORS, selector_value
from vmdex.query.vm import Out, RefSearch, TaskAbort, VmCommand, str_to_context
from vmdex.query.words import Fatal, VmArgs, getopt, is_number

PF_KTHREAD = 0x00200000

# cmd_foreach's getopt string: every flag of every foreach command is accepted whatever the
# command; vm uses -R, -p, -m, -v and the radix flags -x (or -h) and -d.
FOREACH_OPTSTRING = "R:vomlgersStTpukcfFxhdaGy:"
COMMANDS = ("bt", "vm", "task", "set", "files", "net", "vtop", "sig", "test", "ps")
MAX_PIDS = MAX_TASKS = MAX_COMMS = 50
MAX_REGEX = 10
TASK_COMM_LEN = 16

USAGE = ("Usage:\n"
         "  foreach [[pid | taskp | name | state | [kernel | user | gleader]] ...]\n"
         "          command [flag] [argument]\n"
         "Enter \"help foreach\" for details.\n")

# sched_policy_info[] of task.c, for -y (checked even though vm ignores it)
SCHED_POLICIES = (("NORMAL", 0), ("FIFO", 1), ("RR", 2), ("BATCH", 3), ("ISO", 4),
                  ("IDLE", 5), ("DEADLINE", 6))

REGEX_CHARS = set(".*+?[]()^$|\\{}")


class Usage(Exception):
    """crash's cmd_usage(SYNOPSIS): the usage text, then the command stops."""


@record
class Selection:
    """What cmd_foreach gathered: crash's struct foreach_data, the parts vm needs."""
    flags: set[str] = factory(set)   # option letters, x for -h too
    ref: str | None = None
    keyword: str | None = None
    pids: list[int] = factory(list)
    tasks: list[int] = factory(list)
    comms: list[str] = factory(list)
    regexes: list[re.Pattern] = factory(list)
    specified: bool = False        # FOREACH_SPECIFIED: a selector was given (or bogus)
    kernel: bool = False
    user: bool = False
    gleader: bool = False
    active: bool = False
    state: str | None = None


def sched_policy_value(piece: str) -> int | None:
    """sched_policy_bit_from_str: the first policy whose name the word starts with, or whose
    digit or 0X form it is exactly; None for an invalid word."""
    up = piece.upper()
    return next((v for name, v in SCHED_POLICIES
                 if up.startswith(name) or up == str(v) or up == f"0X{v:X}"), None)


def comm_key(s: str) -> str:
    """strlcpy(buf, s, TASK_COMM_LEN): command names compare on their first 15 bytes."""
    return s.encode("latin-1", "replace")[:TASK_COMM_LEN - 1].decode("latin-1")


def _regex(pattern: str) -> re.Pattern:
    """regcomp(REG_EXTENDED|REG_NOSUB); crash stops the command when it fails."""
    try:
        return re.compile(pattern)
    except re.error:
        raise Fatal(f"foreach: invalid regular expression: {pattern}\n") from None


class ForeachParser:
    """cmd_foreach's argument loop; INFO messages go to `say`, FATAL ones raise."""

    def __init__(self, open_index, out: Out, unquoted_regex: bool = True):
        self.open_index, self.out = open_index, out
        self.unquoted_regex = unquoted_regex
        self.errors = 0
        self.pending: list[str] = []   # INFO messages, shown through the output's sink

    def say(self, msg: str) -> None:
        self.pending.append(msg)
        self.errors += 1

    def flush(self, write) -> None:
        for m in self.pending:
            write(m)
        self.pending = []

    def parse(self, argv: list[str]) -> Selection:
        sel = Selection()
        events, words = getopt("foreach", argv, FOREACH_OPTSTRING)
        argerrs = False
        for ev in events:           # in command-line order, as getopt hands them over
            if ev.opt == "?":
                self.out.err(ev.complaint)      # glibc's, on stderr as getopt goes
                self.errors += 1
                argerrs = True
            elif ev.opt == "R":
                sel.ref = ev.arg
            elif ev.opt == "y":
                for piece in ev.arg.split(","):
                    if sched_policy_value(piece) is None:
                        raise Fatal(f"foreach: {piece}: invalid scheduling policy\n")
                sel.flags.add("y")
            else:
                sel.flags.add("x" if ev.opt == "h" else ev.opt)
        if argerrs or not words:
            raise Usage()
        idx: DumpIndex | None = None
        args: list[str] = []
        for w in words:
            if sel.keyword is not None:     # after the command: its arguments
                args.append(w)
                continue
            if w in COMMANDS:
                sel.keyword = w
                continue
            if idx is None:
                idx = self.open_index()
            if is_number(w):
                if w == "DE" and idx.tasks_by_pid(0xDE):
                    self.say("foreach: ambiguous task-identifying argument: DE\n"
                             "         for a \"state\" argument, use: \\DE\n"
                             "         for a \"pid\" argument, use: 0xDE, 0xde, de or 222\n\n")
                    raise Usage()
                hit = str_to_context(idx, w)
                if hit is not None:
                    kind, v = hit
                    into, most = (sel.pids, MAX_PIDS) if kind == "pid" else (sel.tasks,
                                                                              MAX_TASKS)
                    if len(into) == most:
                        self.say(f"foreach: too many {kind}s specified!\n")
                    else:
                        into.append(v)
                        sel.specified = True
                    continue
            if w == "kernel":
                if sel.user:
                    raise Fatal("foreach: user and kernel are mutually exclusive!\n")
                sel.kernel = True
                continue
            if w == "\\DE":
                w = "DE"
            if w in SELECTORS:
                if sel.state is not None:
                    raise Fatal("foreach: only one task state allowed\n")
                states = idx.task_states()
                if states is None:
                    raise VmdexError(
                        f"foreach {w}: the index holds no task-state names for this dump "
                        f"(release {idx.release}): crash takes the state bits from the "
                        "kernel's task_state_array, which the ingest could not read "
                        "(or the dump was indexed before migration 0004: ingest it again)")
                if selector_value(states, w) == INVALID:
                    raise Fatal(f"foreach: invalid task state for this kernel: {w}\n")
                sel.state = w
                continue
            if w == "user":
                if sel.kernel:
                    raise Fatal("foreach: user and kernel are mutually exclusive!\n")
                sel.user = True
                continue
            if w == "gleader":
                if sel.kernel:
                    raise Fatal("foreach: gleader and kernel are mutually exclusive!\n")
                sel.user = sel.gleader = True
                continue
            if w == "active":
                sel.active = True           # a dump is always a DUMPFILE()
                continue
            if len(w) >= 2 and w[0] == w[-1] == "'":    # SINGLE_QUOTED_STRING
                if len(sel.regexes) == MAX_REGEX:
                    self.say("foreach: too many expressions specified!\n")
                else:
                    sel.regexes.append(_regex(w[1:-1]))
                continue
            name = w[1:] if w.startswith("\\") else w
            key = comm_key(name)
            if any(t.comm == key for t in idx.tasks()):
                if len(sel.comms) == MAX_COMMS:
                    self.say("foreach: too many commands specified!\n")
                else:
                    sel.comms.append(key)
                    sel.specified = True
                continue
            # The CLI's own addition (not at the prompt, where crash's words rule): a
            # shell has usually eaten crash's single quotes, so a word with regex
            # metacharacters that names no command is taken as a regex (not one with
            # crash's leading backslash, which marks a command name).
            if self.unquoted_regex and not w.startswith("\\") and REGEX_CHARS & set(w) \
                    and len(sel.regexes) < MAX_REGEX:
                sel.regexes.append(_regex(w))
                continue
            sel.specified = True
            self.say(f'foreach: unknown argument: "{w}"\n')
        if sel.keyword is None:
            self.say("foreach: no keywords specified\n")
        return sel


def vm_args(sel: Selection) -> VmArgs:
    """foreach()'s FOREACH_VM checks, then the flags vm_area_dump gets."""
    f = sel.flags
    if {"x", "d"} <= f:
        raise Fatal("foreach: vm: -x and -d options are mutually exclusive\n")
    if len(f & {"p", "m", "v"}) > 1:
        raise Fatal("foreach: vm command accepts only one of -p, -m or -v flags\n")
    if sel.ref is not None and "m" in f:
        raise Fatal("foreach: vm: -m is not applicable to the -R option\n")
    if sel.ref is not None and "v" in f:
        raise Fatal("foreach: vm: -v is not applicable to the -R option\n")
    a = VmArgs()
    a.radix = 16 if "x" in f else 10 if "d" in f else None
    if sel.ref is not None:
        a.ref, a.mode = sel.ref, {"p"}
    else:
        a.mode = f & {"p", "m", "v"}
    return a


def is_kernel_thread(t: Task) -> bool:
    return bool(t.flags & PF_KTHREAD) or t.is_idle


def select_tasks(idx: DumpIndex, sel: Selection) -> list[Task]:
    """foreach()'s filters, in its order, over crash's task list."""
    specified = bool(sel.tasks or sel.pids or sel.comms or sel.regexes or sel.specified)
    out = []
    for t in idx.tasks():
        if sel.active and not idx.is_active(t.task):
            continue
        if sel.user and is_kernel_thread(t):
            continue
        if sel.gleader and t.pid != t.tgid:
            continue
        if sel.kernel and not is_kernel_thread(t):
            continue
        if sel.state is not None and not idx.state_code(t).startswith(sel.state):
            continue
        if specified and not (t.task in sel.tasks or t.pid in sel.pids
                              or t.comm in sel.comms
                              or any(rx.search(t.comm) for rx in sel.regexes)):
            continue
        out.append(t)
    return out


def run_foreach(open_index, argv: list[str], out: Out, fmt: str = "text",
                unquoted_regex: bool = True) -> int:
    """`foreach ... vm ...`; `unquoted_regex`: the CLI's reading of a regex whose quotes the
    shell ate (False at the prompt, which takes crash's words as crash does)."""
    cmd = None
    parser = ForeachParser(open_index, out, unquoted_regex)
    try:
        try:
            sel = parser.parse(argv)
        except Usage:
            parser.flush(out.write)
            out.write(USAGE)
            return 1
        if sel.keyword is None:
            parser.flush(out.write)
            return 1
        if sel.keyword != "vm":
            raise Fatal("foreach: vmdex answers only `foreach ... vm ...`\n")
        a = vm_args(sel)
        idx = open_index()
        tasks = select_tasks(idx, sel)
        cmd = VmCommand(idx, out, a, fmt)
        parser.flush(cmd.sink.text)
        search = RefSearch(idx, a.ref) if a.ref is not None else None
        for i, t in enumerate(tasks):
            if search is None:
                cmd.header(t, i > 0)
            try:
                cmd.dump_task(t, search)
            except TaskAbort as stop:   # crash's RESUME_FOREACH: on to the next task
                if str(stop):
                    cmd.sink.text(str(stop))
                out.failed = True
        return 1 if out.failed or parser.errors else 0
    except VmdexError:
        parser.flush(out.write)
        raise
    except Fatal as exc:
        parser.flush(out.write)
        (cmd.sink.text if cmd else out.write)(str(exc))
        return 1
    finally:
        if cmd is not None:
            cmd.sink.close()
