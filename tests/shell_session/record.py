"""Record one crash 9.0.2 prompt session per fixture: `set` (show and change the context),
a bare `vm` after it, crash's pipes, `help vm`. The same lines, fed to `vmdex` on stdin,
must print the same bytes (tests/test_shell.py).

    [CRASH=other-crash] .venv/bin/python tests/shell_session/record.py [FOLDER...]

Writes tests/shell_session/<folder>.json: [[command, crash's answer], ...] (stdout and
stderr interleaved, as a terminal shows them). Run by hand; the files are committed.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests import fixturedata as F  # noqa: E402
from tests.generate import crashlive  # noqa: E402

HERE = Path(__file__).resolve().parent


def ps(kernel: str) -> list[dict]:
    rows = []
    for line in (F.oracle_dir(kernel) / "ps.txt").read_text().splitlines()[1:]:
        f = line.lstrip(">").split()
        rows.append({"pid": int(f[0]), "cpu": int(f[2]), "task": f[3], "st": f[4]})
    return rows


def commands(kernel: str) -> list[str]:
    r = json.loads((F.oracle_dir(kernel) / "cases.json").read_text())["roles"]
    tasks = ps(kernel)
    idle = [t["pid"] for t in tasks if t["st"] == "ID"]
    anon_task = next(t["task"] for t in tasks if t["pid"] == r["anon"])
    cmds = [
        "set", f"set {r['init']}", "vm", "set abc", "set 999999", "set",
        f"set {r['threads']}", f"set {r['threads-thread']}", "vm",
        *([f"set {idle[0]}"] if idle else []),
        f"set {r['kthread']} {r['init']}", "set", f"set abc {r['filemap']}",
        f"set {r['filemap']} {r['kthread']}", "set", f"set 0x{r['init']:x}",
        f"set {anon_task}", "vm", "set -c 1", "set -c 1", "set -c 64", "set -c x",
        "set -X", "set 0", "set -p", "set", "vm",
        f"vm {r['init']} | grep MM", f"vm {r['filemap']} | grep -c busybox",
        "foreach 'wl_' vm | grep -c VMA", "help vm", "help foreach", "help foo",
    ]
    return cmds


def main(kernels: list[str]) -> None:
    from tests.conftest import primary_variant

    for k in kernels or F.kernels():
        cmds = commands(k)
        answers = crashlive.ask(F.vmlinux(k), F.dump(k, primary_variant(k)), cmds,
                                crashlive.crash_options(F.kernel_dir(k)))
        pairs = [[c, a.decode("utf-8", "surrogateescape")] for c, a in zip(cmds, answers)]
        (HERE / f"{k}.json").write_text(json.dumps(pairs, indent=1) + "\n")
        print(f"{k}: {len(pairs)} commands")


if __name__ == "__main__":
    main(sys.argv[1:])
