"""crash's `foreach [selectors...] vm [options]`: vm over a filtered task list, in pid order."""
from __future__ import annotations

import re

from query.index import DumpIndex, Task
from query.vm import Out, RefSearch, TaskAbort, VmCommand, resolve_task
from query.words import Fatal, VmArgs, getopt, is_decimal, is_hexadecimal

PF_KTHREAD = 0x00200000
KEYWORDS = ("user", "kernel", "gleader", "active")


def parse_foreach_vm(words: list[str]) -> VmArgs:
    """The options crash's foreach accepts for vm: -p -m -v -x -d -R ref."""
    events, rest = getopt("foreach", words, "pmvxdR:")
    a = VmArgs(words=rest)
    for ev in events:
        if ev.opt == "?":
            raise Fatal(ev.complaint)
        if ev.opt in "pmv":
            a.mode.add(ev.opt)
        elif ev.opt == "R":
            a.ref = ev.arg
        elif ev.opt == "x":
            if a.radix == 10:
                raise Fatal("foreach: vm: -x and -d options are mutually exclusive\n")
            a.radix = 16
        elif ev.opt == "d":
            if a.radix == 16:
                raise Fatal("foreach: vm: -x and -d options are mutually exclusive\n")
            a.radix = 10
    if len(a.mode) > 1:
        raise Fatal("foreach: vm command accepts only one of -p, -m or -v flags\n")
    if a.ref is not None and "m" in a.mode:
        raise Fatal("foreach: vm: -m is not applicable to the -R option\n")
    if a.ref is not None and "v" in a.mode:
        raise Fatal("foreach: vm: -v is not applicable to the -R option\n")
    if a.ref is not None:
        a.mode = {"p"}
    return a


REGEX_CHARS = set(".*+?[]()^$|\\{}")


def select_tasks(idx: DumpIndex, selectors: list[str]) -> list[Task]:
    """Tasks named by pid, task address, command name or 'regex', then keyword filters.

    crash takes a regex in single quotes; a shell usually eats those, so a word with regex
    metacharacters that is not an exact command name is taken as a regex too."""
    tasks = idx.tasks()
    keywords = [s for s in selectors if s in KEYWORDS]
    picks = [s for s in selectors if s not in KEYWORDS]
    if picks:
        chosen: set[int] = set()
        for s in picks:
            named = {t.task for t in tasks if t.comm == s}
            quoted = len(s) > 1 and s[0] == s[-1] == "'"
            if quoted or (not named and REGEX_CHARS & set(s)):
                try:
                    rx = re.compile(s[1:-1] if quoted else s)
                except re.error:
                    raise Fatal(f'foreach: invalid regular expression: "{s}"\n') from None
                chosen |= {t.task for t in tasks if rx.search(t.comm)}
            elif is_decimal(s) or is_hexadecimal(s):
                found = resolve_task(idx, s)
                if found is None and not named:
                    raise Fatal(f'foreach: unknown argument: "{s}"\n')
                chosen |= {t.task for t in found or ()} | named
            elif named:
                chosen |= named
            else:
                raise Fatal(f'foreach: unknown argument: "{s}"\n')
        tasks = [t for t in tasks if t.task in chosen]
    for k in keywords:
        if k == "user":
            tasks = [t for t in tasks if not t.flags & PF_KTHREAD and not t.is_idle]
        elif k == "kernel":
            tasks = [t for t in tasks if t.flags & PF_KTHREAD or t.is_idle]
        elif k == "gleader":   # user-space thread group leaders only
            tasks = [t for t in tasks if t.pid == t.tgid and not t.flags & PF_KTHREAD
                     and not t.is_idle]
        elif k == "active":
            tasks = [t for t in tasks if idx.is_active(t.task)]
    return tasks


def run_foreach(open_index, argv: list[str], out: Out, fmt: str = "text") -> int:
    cmd = None
    try:
        if "vm" not in argv:
            raise Fatal("foreach: vmdex answers only `foreach ... vm ...`\n")
        cut = argv.index("vm")
        a = parse_foreach_vm(argv[cut + 1:])
        if a.words:
            raise Fatal(f"foreach: unexpected argument to vm: {a.words[0]}\n")
        idx = open_index()
        tasks = select_tasks(idx, argv[:cut])
        cmd = VmCommand(idx, out, a, fmt)
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
        return 1 if out.failed else 0
    except Fatal as exc:
        (cmd.sink.text if cmd else out.write)(str(exc))
        return 1
    finally:
        if cmd is not None:
            cmd.sink.close()
