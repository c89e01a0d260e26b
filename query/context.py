"""crash's `set`: show or change the current context, as crash 9.0.2's cmd_set (tools.c),
show_context, set_context (task.c) and set_cpu (kernel.c) do at its prompt.

The context is the open index's `context` (a task address); a bare `vm` answers for it.
Only the shell keeps an index open between commands, so only the shell has `set`.
crash's internal variables (`set scroll off`, `set radix 16`, `set -v`) and `set -a` are
not kept: one line says so.
"""
from __future__ import annotations

from vmdex.indexer.errors import VmdexError
from vmdex.query.index import DumpIndex, Task
from vmdex.query.vm import Out, str_to_context
from vmdex.query.words import getopt

SET_OPTSTRING = "pvc:a:"
USAGE = ("Usage:\n"
         "  set [[-a] [pid | taskp] | [-c cpu] | -p] | [crash_variable [setting]] | -v\n"
         "Enter \"help set\" for details.\n")
# the variable names cmd_set recognises before it tries a pid or task
CRASH_VARIABLES = frozenset((
    "console", "core", "data_debug", "debug", "edit", "error", "gdb", "hash", "namelist",
    "null-stop", "offline", "print_array", "print_max", "radix", "redzone", "refresh",
    "scope", "scroll", "silent", "unwind", "zero_excluded"))


def panic_task(idx: DumpIndex) -> int | None:
    """crash's tt->panic_task as far as the index tells: the startup context, unless that
    is CPU 0's idle task, where crash starts when it finds no panicking task (a dump taken
    without a panic, such as QEMU's dump-guest-memory)."""
    t = idx.task_at(idx.default_task)
    if t is None or (t.is_idle and t.cpu == 0):
        return None
    return t.task


def show_context(idx: DumpIndex, t: Task) -> str:
    """crash's show_context() at the prompt (no indent). THREAD_INFO is the task itself:
    x86_64 (since 4.9) and arm64 (since 4.10) kernels keep thread_info in task_struct."""
    from vmdex.indexer.walk.taskstate import task_state, verbose_state_string

    states = idx.task_states()
    state = (verbose_state_string(states, task_state(t.state, t.exit_state))
             if states is not None else "(unknown)")
    n = len(idx.tasks_by_pid(t.pid))
    mark = ""
    if idx.is_active(t.task):
        mark = "(PANIC)" if t.task == panic_task(idx) else "(ACTIVE)"
    return (f"    PID: {t.pid}\n"
            f"COMMAND: \"{t.comm}\"\n"
            f"   TASK: {t.task:x}  " + (f"(1 of {n})  " if n > 1 else "")
            + f"[THREAD_INFO: {t.task:x}]\n"
            f"    CPU: {t.cpu}\n"
            f"  STATE: {state} {mark}\n")


def _set_context(idx: DumpIndex, task: int | None = None, pid: int | None = None) -> bool:
    """crash's set_context(): False when the context already is that task or pid."""
    cur = idx.task_at(idx.context)
    if cur is not None and (cur.task == task or cur.pid == pid):
        return False
    idx.context = task if task is not None else idx.tasks_by_pid(pid)[0].task
    return True


def _cpu_count(idx: DumpIndex) -> int:
    """kt->cpus: one idle task per CPU."""
    return max((t.cpu for t in idx.tasks() if t.is_idle), default=0) + 1


def _set_cpu(idx: DumpIndex, arg: str, out: Out) -> int:
    """`set -c cpu`: dtoi(FAULT_ON_ERROR), then set_cpu()."""
    s = arg.lstrip(" ")
    bad = next((i for i, ch in enumerate(s) if not "0" <= ch <= "9"), None)
    if bad is not None or not s:
        out.write(f'set: {s}: "{s[bad] if bad is not None else ""}" is not a digit 0 - 9\n')
        return 1
    cpu, n = int(s), _cpu_count(idx)
    if cpu >= n:
        out.write(f"set: invalid cpu number: system has only {n} cpu{'s' if n > 1 else ''}\n")
        return 1
    task = idx.active_task(cpu)
    if task is None:
        out.write(f"set: cannot determine active task on cpu {cpu}\n")
        return 1
    if task != idx.context:
        _set_context(idx, task=task)
        out.write(show_context(idx, idx.task_at(idx.context)))
    return 0


def run_set(open_index, argv: list[str], out: Out, fmt: str = "text") -> int:
    """`set [pid | taskp]... | -c cpu | -p`: an answer runner, as run_vm is."""
    idx = open_index()
    events, words = getopt("set", argv, SET_OPTSTRING)
    argerrs = False
    for ev in events:            # cmd_set's getopt loop: -c, -p, -v, -a end the command
        if ev.opt == "?":
            out.err(ev.complaint)
            argerrs = True
        elif ev.opt == "c":
            return _set_cpu(idx, ev.arg, out)
        elif ev.opt == "p":
            task = panic_task(idx)
            if task is None:
                out.write("set: no panic task found!\n")
                return 1
            _set_context(idx, task=task)
            out.write(show_context(idx, idx.task_at(idx.context)))
            return 0
        elif ev.opt == "v":
            raise VmdexError("set -v: vmdex keeps none of crash's internal variables")
        else:
            raise VmdexError("set -a: vmdex cannot mark another task active (the index "
                             "keeps the dump's active tasks)")
    if argerrs:
        out.write(USAGE)
        return 1
    if not words:
        out.write(show_context(idx, idx.task_at(idx.context)))
        return 0
    failed = 0
    for w in words:
        if w in CRASH_VARIABLES:
            raise VmdexError(f"set {w}: vmdex keeps none of crash's internal variables")
        hit = str_to_context(idx, w)
        if hit is None:
            out.write(f"set: invalid task or pid value: {w}\n")
            failed = 1
            continue
        kind, value = hit
        changed = _set_context(idx, **{kind: value})
        out.write(show_context(idx, idx.task_at(idx.context)))
        if changed:
            # crash then refreshes gdb's thread with a silent `bt`, which reuses the
            # argument array: the words after the first change are never looked at
            break
    return failed
