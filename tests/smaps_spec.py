"""The kernel's own smaps, as the guest printed it before the dump (console.log `SMAPS`
lines, tools/README.md of the fixtures), and the comparison of `vmdex smaps` with it.

Used by tests/test_smaps.py (every fixture folder with SMAPS lines) and by the kernel
matrix (tests/kernels/matrix.py, tests/test_matrix.py: every freshly built dump).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

LINE = re.compile(r"^SMAPS (\d+) (\S+) (rollup|full): (.*)$")
# a kernel message the serial console wrote into the middle of a line ("[   13.159814] ...")
PRINTK = re.compile(r"\[ *\d+\.\d{6}\] .*$")
STAMP = re.compile(r"\[ *\d+\.\d{6}\]")        # a kernel message's own line
# what a whole smaps line looks like: a figure, VmFlags, or a VMA's header
SMAPS_TEXT = re.compile(r"^(?:[A-Za-z_]+: +-?\d+(?: kB)?|VmFlags:(?: [a-z0-9]{2})* ?"
                        r"|[0-9a-f]+-[0-9a-f]+ [-rwxsp]{4} [0-9a-f]+ [0-9a-f]+:[0-9a-f]+ \d+.*)$")


def expected(console: Path) -> dict[tuple[int, str], tuple[str, str]]:
    """(pid, 'rollup'|'full') -> (comm, the text the kernel printed)."""
    out: dict[tuple[int, str], list] = {}
    comms: dict[int, str] = {}
    if not console.is_file():
        return {}
    raw = console.read_bytes().decode("utf-8", "replace")
    for line in _rejoined(raw.splitlines()):
        m = LINE.match(line.rstrip("\r"))
        if m:
            pid, comm, kind, text = int(m[1]), m[2], m[3], PRINTK.sub("", m[4])
            comms[pid] = comm
            out.setdefault((pid, kind), []).append(text + "\n")
    return {key: (comms[key[0]], "".join(v)) for key, v in out.items()}


def _rejoined(lines: list[str]) -> list[str]:
    """The console's lines with an SMAPS line that a kernel message cut in two made whole
    again: "SMAPS 180 wl_man[   18.75] irq 4: nobody cared ...", the message's own lines,
    then "yvma full: Shared_Dirty: ..." (the rest of the SMAPS line). A one-line message
    has no lines of its own ("SMAPS 130 wl_manyvma full: Priv[    7.52] clocksource: ...",
    then "ate_Dirty:  4 kB"): the next line is taken when the two make a whole smaps line."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip("\r")
        cut = PRINTK.search(line)
        if line.startswith("SMAPS ") and cut and cut.start() > 0:
            j = i + 1
            while j < len(lines) and STAMP.match(lines[j]):
                j += 1
            if j < len(lines) and not lines[j].startswith("SMAPS "):
                joined = line[:cut.start()] + lines[j].rstrip("\r")
                m = LINE.match(joined)
                if j > i + 1 or (m and SMAPS_TEXT.match(m[4])):
                    out.append(joined)
                    i = j + 1
                    continue
        out.append(line)
        i += 1
    return out


def has_smaps(folder: Path) -> bool:
    return bool(expected(folder / "console.log"))


def diff(want: str, got: str) -> str:
    w, g = want.splitlines(), got.splitlines()
    bad = [(i, a, b) for i, (a, b) in enumerate(zip(w, g)) if a != b]
    return (f"{len(bad)} of {len(w)} lines differ (got {len(g)} lines); first: "
            + "; ".join(f"line {i}: want {a!r} got {b!r}" for i, a, b in bad[:5]))


def same_lines(want: str, got: str) -> int:
    w, g = want.splitlines(), got.splitlines()
    if len(w) != len(g):
        return sum(a == b for a, b in zip(w, g)) if len(g) < len(w) else 0
    return sum(a == b for a, b in zip(w, g))


def compare(ask: Callable[[list[str]], tuple[int, str, str]], console: Path,
            diffs: list[str]) -> tuple[int, int]:
    """Ask `vmdex smaps [--rollup] PID` for every process the kernel printed (ask(args) ->
    (exit code, stdout, stderr)); (identical lines, lines the kernel printed). A line only
    counts when the whole answer came without an error."""
    same = total = 0
    for (pid, kind), (_comm, want) in sorted(expected(console).items()):
        args = ["smaps", "--rollup", str(pid)] if kind == "rollup" else ["smaps", str(pid)]
        rc, out, err = ask(args)
        n = want.count("\n")
        total += n
        if rc == 0 and not err and out == want:
            same += n
            continue
        same += same_lines(want, out) if rc == 0 and not err else 0
        diffs.append(f"smaps {kind} {pid}: rc {rc} {err.strip()[:200]!r} {diff(want, out)}")
    return same, total
