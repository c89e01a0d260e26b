"""Ask one live crash session many questions and keep its answers as a terminal shows
them (stdout and stderr interleaved), one per question."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CRASH = REPO.parent / "shared" / "fixtures" / "tools" / "crash9.sh"
ARM64_CRASH = DEFAULT_CRASH.with_name("crash9-arm64.sh")   # crash built for target=ARM64


def crash_command(dump: Path | None = None) -> list[str]:
    """$CRASH, else the crash that reads the dump's machine: make-dumps.sh records
    `arch: arm64` in the folder's build-info.txt."""
    if "CRASH" in os.environ:
        return shlex.split(os.environ["CRASH"])
    info = Path(dump).parent / "build-info.txt" if dump else None
    if info and info.is_file() and "\narch: arm64" in "\n" + info.read_text():
        return [str(ARM64_CRASH)]
    return [str(DEFAULT_CRASH)]


def crash_options(folder: Path) -> list[str]:
    """Options the folder's oracle was made with (e.g. --no_modules on 7.x, recorded by
    make-dumps.sh in timings.txt / crash-error.txt), so the live session matches it."""
    opts = []
    if (folder / "crash-error.txt").is_file():
        opts.append("--no_modules")
    t = folder / "timings.txt"
    if t.is_file():
        m = re.search(r"(-m phys_offset=\S+)", t.read_text())
        if m:
            opts += m.group(1).split()
    return opts


# What ask() records for a question during which crash itself died (a crash bug, e.g. some
# `ps -l`/`-m` forms with several task words): replay sets such questions aside.
CRASH_DIED = b"@@ crash 9.0.2 died answering this question\n"


def ask(vmlinux: Path, dump: Path, commands: list[str], extra: list[str] = (),
        timeout: int = 3600) -> list[bytes]:
    """crash's answer to each command, in order. A question that kills crash is answered
    CRASH_DIED and a new session goes on with the rest."""
    answers: list[bytes] = []
    while len(answers) < len(commands):
        got = _session(vmlinux, dump, commands[len(answers):], extra, timeout)
        answers += got
        if len(answers) < len(commands):
            answers.append(CRASH_DIED)
    return answers


def _session(vmlinux: Path, dump: Path, commands: list[str], extra, timeout) -> list[bytes]:
    """One crash session: the answers up to the first question it did not survive."""
    script = []
    for i, cmd in enumerate(commands):
        script += [f"!echo '@@@@ {i}'", cmd]
    script += [f"!echo '@@@@ {len(commands)}'", "quit"]
    with tempfile.NamedTemporaryFile("w", suffix=".crash", delete=False) as f:
        f.write("\n".join(script) + "\n")
    try:
        with open(f.name) as stdin:
            p = subprocess.run(crash_command(dump) + [*extra, "-s", str(vmlinux), str(dump)],
                               stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "TERM": "dumb"}, timeout=timeout)
    finally:
        os.unlink(f.name)
    blocks = re.split(rb"^@@@@ (\d+)\n", p.stdout, flags=re.M)
    got = {int(n): body for n, body in zip(blocks[1::2], blocks[2::2])}
    if 0 not in got:
        raise RuntimeError(f"crash session did not start: {p.stdout[-500:]!r}")
    # What follows marker i, up to marker i + 1, is the answer to command i; the command
    # after the last marker seen killed crash.
    last = max(got)
    return [got.get(i, b"") for i in range(min(last, len(commands)))]


def ask_named(kernel: str, cmds: list[tuple[str, str]]) -> dict[str, bytes]:
    """crash's answer to each (name, command) on a fixture folder's primary dump, by name:
    the recorders of tests/extra_oracle and tests/crash_rules."""
    from tests import fixturedata as F
    from tests.conftest import primary_variant

    dump = F.dump(kernel, primary_variant(kernel))
    answers = ask(F.vmlinux(kernel), dump, [cmd for _, cmd in cmds])
    return {name: text for (name, _), text in zip(cmds, answers)}
