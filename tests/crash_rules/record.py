"""Record what crash 9.0.2 prints for argument rules of `vm` and `foreach ... vm`.

    [CRASH=other-crash] .venv/bin/python tests/crash_rules/record.py [FOLDER...]

The rules come from crash's task.c (cmd_foreach, foreach, str_to_context, task state
names) and memory.c / tools.c (cmd_vm, vm_area_dump, is_valid_mm, htol/htoll): foreach
task-state selectors, selector conflicts, argument errors, crash's hex parsing, `-M` on a
task without mm. Writes tests/crash_rules/<folder>/<name>.txt (stdout and stderr
interleaved, as a terminal shows them) and commands.tsv: file, command, and `error` or
`ok` (crash printed an error — a `vm:`/`foreach:` message, a usage text, `(not found)` —
or not: vmdex's exit status must say the same). Commands are split at whitespace, as
crash's own tokenizer does, so a backslash or a quote reaches vmdex unchanged. Commands
are built from each fixture's cases.json and ps.txt; run by hand, the files are committed.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests import fixturedata as F  # noqa: E402
from tests.generate import crashlive  # noqa: E402

HERE = Path(__file__).resolve().parent
ERROR = re.compile(r"^(vm: |foreach: |Usage:|\(not found\))", re.M)


def task_addresses(kernel: str) -> dict[int, str]:
    """pid -> task address of the first task with that pid, from the oracle's ps.txt."""
    out: dict[int, str] = {}
    for line in (F.oracle_dir(kernel) / "ps.txt").read_text().splitlines()[1:]:
        f = line.lstrip(">").split()
        out.setdefault(int(f[0]), f[3])
    return out


def commands(kernel: str) -> list[tuple[str, str]]:
    c = json.loads((F.oracle_dir(kernel) / "cases.json").read_text())
    r = c["roles"]
    fm, kt, init, child = r["filemap"], r["kthread"], r["init"], r["anon-child"]
    mm, vma = c["filemap_mm"], c["blob_vma"]["vma"]
    tasks = task_addresses(kernel)
    pids = sorted(tasks)
    other = tasks[init]          # a kernel address that is no mm_struct
    return [
        # task-state selectors (RU IN UN ST TR ZO DE SW WA PA ID NE; SW is not in 4.14+)
        ("foreach-ID", "foreach ID vm"),
        ("foreach-ID-user", "foreach ID user vm"),
        ("foreach-ID-R", "foreach ID vm -R 8100073"),
        ("foreach-UN", "foreach UN vm"),
        ("foreach-RU", "foreach RU vm"),
        ("foreach-IN-kernel", "foreach IN kernel vm"),
        ("foreach-IN-user", "foreach IN user vm"),
        ("foreach-ST", "foreach ST vm"),
        ("foreach-TR", "foreach TR vm"),
        ("foreach-ZO", "foreach ZO vm"),
        ("foreach-DE", "foreach DE vm"),
        ("foreach-backslash-DE", "foreach \\DE vm"),
        ("foreach-SW", "foreach SW vm"),
        ("foreach-WA", "foreach WA vm"),
        ("foreach-PA", "foreach PA vm"),
        ("foreach-NE", "foreach NE vm"),
        ("foreach-lowercase-state", "foreach id vm"),
        ("foreach-backslash-ID", "foreach \\ID vm"),
        ("foreach-two-states", "foreach ID IN vm"),
        ("foreach-same-state-twice", "foreach ID ID vm"),
        ("foreach-pid-state", f"foreach {kt} IN {fm} vm"),
        ("foreach-pid-state-miss", f"foreach {init} ID vm"),
        ("foreach-active-RU", "foreach active RU vm"),
        ("foreach-state-after-vm", f"foreach {fm} vm ID"),
        # no command, no arguments, unknown words
        ("foreach-state-no-command", "foreach ID"),
        ("foreach-pid-no-command", f"foreach {init}"),
        ("foreach-bogus-no-command", "foreach bogus"),
        ("foreach-nothing", "foreach"),
        ("foreach-bogus-and-pid", f"foreach bogus {init} vm"),
        ("foreach-pid-and-bogus", f"foreach {init} bogus vm"),
        ("foreach-backslash-pid", f"foreach \\{init} vm"),
        ("foreach-bogus-x-d", "foreach bogus vm -x -d"),
        # mutually exclusive selectors
        ("foreach-user-kernel", "foreach user kernel vm"),
        ("foreach-kernel-user", "foreach kernel user vm"),
        ("foreach-gleader-kernel", "foreach gleader kernel vm"),
        ("foreach-kernel-gleader", "foreach kernel gleader vm"),
        ("foreach-bogus-user-kernel", "foreach bogus user kernel vm"),
        ("foreach-user-kernel-bad-option", "foreach user kernel vm -z"),
        # foreach's own options: any foreach flag is taken, anywhere on the line
        ("foreach-bad-option", "foreach vm -z"),
        ("foreach-M", f"foreach {kt} vm -M {mm}"),
        ("foreach-P", f"foreach {fm} vm -P 0"),
        ("foreach-R-missing", "foreach vm -R"),
        ("foreach-y-missing", "foreach vm -y"),
        ("foreach-option-first", f"foreach -m {child} vm"),
        ("foreach-other-flag", f"foreach {fm} vm -u"),
        ("foreach-h-is-x", f"foreach {init} vm -m -h"),
        ("foreach-d-h", f"foreach {init} vm -d -h"),
        ("foreach-y-ok", f"foreach {fm} vm -y fifo"),
        ("foreach-y-number", f"foreach {fm} vm -y 0X1"),
        ("foreach-y-bad", f"foreach {fm} vm -y bogus"),
        ("foreach-y-empty-piece", f"foreach {fm} vm -y fifo,"),
        ("foreach-bad-option-then-y-bad", f"foreach {fm} vm -z -y bogus"),
        ("foreach-dashdash", f"foreach -- {init} vm"),
        # words after the command are its arguments, which vm ignores
        ("foreach-vm-arg", f"foreach {fm} vm 1"),
        ("foreach-vm-vm", f"foreach {fm} vm vm"),
        ("foreach-vm-bt", f"foreach {fm} vm bt"),
        # task words
        ("foreach-0x", "foreach 0x vm"),
        ("foreach-hex-with-x", f"foreach x{fm:x} vm"),
        ("foreach-long-comm", "foreach rcu_tasks_rude_kthread vm"),
        ("foreach-quoted-regex", "foreach 'wl_f' vm"),
        ("foreach-bad-regex", "foreach '[' vm"),
        ("foreach-same-task-thrice", f"foreach {tasks[fm]} {fm} wl_filemap vm"),
        ("foreach-too-many-pids", "foreach " + " ".join(map(str, pids[:52])) + " vm"),
        # -R numbers
        ("foreach-R-0x", "foreach kernel vm -R 0x"),
        ("foreach-R-too-large", "foreach vm -R 12345678901234567"),
        ("foreach-R-too-large-no-task", "foreach 99999 vm -R 12345678901234567"),
        ("foreach-R-twice", f"foreach {fm} vm -R 1 -R 400000"),
        ("vm-R-too-large", f"vm -R 12345678901234567 {fm}"),
        ("vm-R-too-large-hex", f"vm -R 0x12345678901234567 {fm}"),
        ("vm-R-too-large-after-bad-pid", f"vm -R 12345678901234567 99999 {fm}"),
        ("vm-R-bad-pid-after", f"vm -R 400000 {fm} 99999"),
        ("vm-R-bad-pid-around", f"vm -R 400000 99999 {fm} 99999"),
        ("vm-R-0x", f"vm -R 0x {fm}"),
        ("vm-R-bad-option-R", "vm -R 1 -z -R 2 1"),
        # -f / -P / -M numbers: crash's htol/htoll
        ("vm-f-0x", "vm -f 0x"),
        ("vm-f-0X10", "vm -f 0X10"),
        ("vm-f-negative", "vm -f -5"),
        ("vm-f-too-large", "vm -f 12345678901234567"),
        ("vm-f-0x-too-large", "vm -f 0x12345678901234567"),
        ("vm-f-16-digits", "vm -f ffffffffffffffff"),
        ("vm-f-trailing-garbage", "vm -f 10zz"),
        ("vm-f-0x0x", "vm -f 0x0x10"),
        ("vm-f-h", "vm -f 1h"),
        ("vm-f-only-x", "vm -f xxx"),
        ("vm-P-0x", f"vm -P 0x {fm}"),
        ("vm-P-too-large", f"vm -P 12345678901234567 {fm}"),
        ("vm-P-h-too-large", f"vm -P h{vma} {fm}"),
        ("vm-P-0X", f"vm -P 0X{vma} {fm}"),
        ("vm-M-0x", f"vm -M 0x {kt}"),
        ("vm-M-x", f"vm -M x {kt}"),
        ("vm-M-negative", f"vm -M -1 {kt}"),
        ("vm-M-too-large", f"vm -M 12345678901234567 {kt}"),
        ("vm-M-bad-option-first", "vm -z -M 0"),
        ("vm-M-before-f", "vm -M 0 -f 3"),
        # -M: an address that is no mm_struct is fatal for the whole command
        ("vm-M-not-mm", f"vm -M {other} {kt}"),
        ("vm-M-not-mm-stops", f"vm -M {other} {kt} {init}"),
        ("vm-M-not-mm-user-first", f"vm -M {other} {init} {kt} {fm}"),
        ("vm-M-not-mm-user", f"vm -M {other} {fm}"),
        # -M with -m / -v / -P / -R on a task without mm
        ("vm-M-m", f"vm -m -M {mm} {kt}"),
        ("vm-M-v", f"vm -v -M {mm} {kt}"),
        ("vm-M-P", f"vm -P {vma} -M {mm} {kt}"),
        ("vm-M-P-two", f"vm -P {vma} -M {mm} {kt} {fm}"),
        ("vm-M-R", f"vm -R 400000 -M {mm} {kt}"),
        ("vm-M-R-zero", f"vm -M {mm} -R 0 {kt}"),
        # task words: crash's decimal/hexadecimal readings
        ("vm-pid-0x", "vm 0x"),
        ("vm-pid-1x", "vm 1x"),
        ("vm-pid-x1", "vm x1"),
        ("vm-task-decimal", f"vm {int(tasks[fm], 16)}"),
        # option conflicts
        ("vm-x-d-after-pid", "vm 1 -x -d"),
        ("vm-m-x-d", "vm -m -x -d 1"),
        ("vm-two-bad-options", "vm -z -z"),
        ("vm-P-then-R", "vm -P 2 -R 1 1"),
        ("vm-m-then-R", "vm -m -R 1 1"),
    ]


def record(kernel: str) -> None:
    cmds = commands(kernel)
    out_dir = HERE / kernel
    out_dir.mkdir(exist_ok=True)
    got = crashlive.ask_named(kernel, cmds)
    with open(out_dir / "commands.tsv", "w") as tsv:
        tsv.write("# file\tcrash 9.0.2 command (split at whitespace)\terror|ok\n")
        for name, cmd in cmds:
            text = got.get(name, b"(no output)\n")
            (out_dir / f"{name}.txt").write_bytes(text)
            status = "error" if ERROR.search(text.decode(errors="replace")) else "ok"
            tsv.write(f"{name}.txt\t{cmd}\t{status}\n")


if __name__ == "__main__":
    for k in sys.argv[1:] or F.kernels():
        if not (F.oracle_dir(k) / "cases.json").is_file():
            continue
        record(k)
        print("recorded", k)
