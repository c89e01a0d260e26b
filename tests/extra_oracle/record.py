"""Record what crash 9.0.2 prints for `vm` forms the fixtures' oracle does not cover.

    [CRASH=other-crash] .venv/bin/python tests/extra_oracle/record.py

Needs the fixture tools' crash 9.0.2 (../shared/fixtures/tools: its sid chroot). Writes
tests/extra_oracle/<kernel>/<name>.txt (stdout and stderr as a terminal shows them) and a
commands.tsv, for tests/test_extra_oracle.py. Commands are built from each fixture's
cases.json, so the same list serves every kernel. Run by hand; the files are committed.
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


def commands(kernel: str) -> list[tuple[str, str]]:
    c = json.loads((F.oracle_dir(kernel) / "cases.json").read_text())
    r = c["roles"]
    vm_filemap = (F.oracle_dir(kernel) / "vm.filemap.txt").read_text().splitlines()
    mm, pgd = vm_filemap[2].split()[:2]
    fm, an, ch, sw, th, tt = (r["filemap"], r["anon"], r["anon-child"], r["swap"],
                              r["threads"], r["threads-thread"])
    swap_off = c["swap_example"].split("OFFSET: ")[1]
    return [
        # task arguments: several, invalid in the middle, pid 0, hex pids
        ("vm-two-pids", f"vm {r['init']} {r['kthread']}"),
        ("vm-bad-pid-middle", f"vm {r['init']} 99999 {r['kthread']}"),
        ("vm-pid0", "vm 0"),
        ("vm-hex-pid", f"vm {fm:x}"),
        ("vm-task-addr", "vm " + re.search(r"TASK: (\S+)", vm_filemap[0]).group(1)),
        # -R forms
        ("vm-R-zero", "vm -R 0"),
        ("foreach-vm-R-zero", "foreach vm -R 0"),
        ("vm-R-mm", f"vm -R {mm} {fm}"),
        ("vm-R-pgd", f"vm -R {pgd} {fm}"),
        ("vm-R-swap-decimal", f"vm -R {swap_off} {sw}"),
        ("vm-R-file-offset", f"vm -R 10000 {fm}"),
        ("vm-R-slash", f"vm -R / {fm}"),
        ("vm-R-0x", f"vm -R 0x{c['phys_anon']} {an}"),
        ("vm-p-R", f"vm -p -R {c['phys_anon']} {an}"),
        ("vm-R-then-p", f"vm -R {c['phys_anon']} -p {an}"),
        ("vm-R-twice", f"vm -R 1 -R 2 {an}"),
        ("vm-R-no-pid", f"vm -R {c['phys_anon']}"),
        ("foreach-vm-p-R", f"foreach vm -p -R {c['phys_anon']}"),
        ("foreach-vm-R-swapdev", "foreach vm -R zram0"),
        # option rules
        ("vm-f-then-p", "vm -f 3 -p"),
        ("vm-p-then-f", "vm -p -f 3"),
        ("vm-m-v", f"vm -m -v {fm}"),
        ("vm-x-plain", f"vm -x {fm}"),
        ("vm-P-bad-hex", f"vm -P xyz {fm}"),
        ("vm-f-bad-hex", "vm -f xyz"),
        ("vm-M-kthread", f"vm -M {mm} {r['kthread']}"),
        ("vm-M-p-kthread", f"vm -p -M {mm} {r['kthread']}"),
        ("vm-pid-then-option", f"vm {sw} -p"),
        # foreach selectors
        ("foreach-user", "foreach user vm"),
        ("foreach-kernel", "foreach kernel vm"),
        ("foreach-gleader", "foreach gleader vm"),
        ("foreach-active", "foreach active vm"),
        ("foreach-regex", "foreach 'wl_.*' vm"),
        ("foreach-pids", f"foreach {fm} {an} vm"),
        ("foreach-threads", f"foreach {th} {tt} vm -R {c['phys_anon']}"),
        ("foreach-name-p", "foreach wl_cow vm -p"),
        ("foreach-child", f"foreach {ch} vm -m"),
        ("foreach-bad-name", "foreach no_such_comm vm"),
        ("foreach-bad-pid", "foreach 99999 vm"),
        ("foreach-x-d", "foreach vm -x -d"),
        ("foreach-p-m", "foreach vm -p -m"),
        ("foreach-m-R", "foreach vm -m -R 1"),
    ]


def record(kernel: str) -> None:
    cmds = commands(kernel)
    out_dir = HERE / kernel
    out_dir.mkdir(exist_ok=True)
    got = crashlive.ask_named(kernel, cmds)
    with open(out_dir / "commands.tsv", "w") as tsv:
        tsv.write("# file\tcrash 9.0.2 command (stdout+stderr as a terminal shows them)\n")
        for name, cmd in cmds:
            (out_dir / f"{name}.txt").write_bytes(got.get(name, b"(no output)\n"))
            tsv.write(f"{name}.txt\t{cmd}\n")


if __name__ == "__main__":
    for k in sys.argv[1:] or F.kernels():
        record(k)
        print("recorded", k)
