"""The `vmdex>` prompt (query/shell.py): driven through a pseudo-terminal as a user types,
and through a pipe as a script feeds it. Its answers must be the CLI's, byte for byte, and
its `set` must print what crash 9.0.2 printed in the same session
(tests/shell_session/<folder>.json, recorded by tests/shell_session/record.py)."""
from __future__ import annotations

import fcntl
import json
import os
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from tests import fixturedata as F
from tests.conftest import VMDEX, vmdex

PROMPT = b"vmdex> "
SESSIONS = Path(__file__).resolve().parent / "shell_session"


@pytest.fixture(scope="module")
def one(oracle_index, tmp_path_factory):
    """(db, dump name, roles) of the first fixture kernel."""
    kernel = F.kernels()[0]
    db, name = oracle_index[kernel]
    roles = json.loads((F.oracle_dir(kernel) / "cases.json").read_text())["roles"]
    return str(db), name, roles


class Pty:
    """vmdex on a pseudo-terminal: what is typed, what the terminal shows."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 250, 0, 0))
        self.proc = subprocess.Popen(          # the pty is its controlling terminal (^C)
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.buf = b""

    def read_until(self, want: bytes, timeout: float = 60) -> bytes:
        end = time.monotonic() + timeout
        while want not in self.buf:
            left = end - time.monotonic()
            ready = select.select([self.master], [], [], max(left, 0))[0]
            if not ready:
                raise AssertionError(f"no {want!r} after {timeout}s; got {self.buf[-800:]!r}")
            try:
                data = os.read(self.master, 65536)
            except OSError:           # EIO: the other side is closed
                data = b""
            if not data:
                raise AssertionError(f"vmdex ended before {want!r}; got {self.buf[-800:]!r}")
            self.buf += data
        i = self.buf.index(want) + len(want)
        got, self.buf = self.buf[:i], self.buf[i:]
        return got

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def command(self, line: str) -> bytes:
        """What the terminal shows between the echoed line and the next prompt, with the
        terminal's \\r\\n turned back into \\n."""
        self.type(line + "\r")
        shown = self.read_until(PROMPT)[:-len(PROMPT)].replace(b"\r\n", b"\n")
        echo, _, answer = shown.partition(b"\n")
        assert echo.endswith(line.encode()), (echo, line)
        return answer

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            os.close(self.master)


def shell_env(tmp_path: Path) -> dict[str, str]:
    inputrc = tmp_path / "inputrc"
    inputrc.write_text("set enable-bracketed-paste off\nset bell-style none\n")
    return {**os.environ, "TERM": "dumb", "INPUTRC": str(inputrc),
            "VMDEX_HISTFILE": str(tmp_path / "history"), "HOME": str(tmp_path)}


def cli(db: str, name: str, *words: str) -> bytes:
    return vmdex("--dump", name, *words, db=db).stdout


def start(db: str, name: str, tmp_path: Path, *more: str) -> Pty:
    pty = Pty([VMDEX, "--db", db, "--dump", name, *more], shell_env(tmp_path))
    pty.read_until(PROMPT)
    return pty


def test_prompt_answers_as_the_cli(one, tmp_path):
    db, name, roles = one
    pid = str(roles["filemap"])
    pty = start(db, name, tmp_path)
    want = cli(db, name, "vm", pid)
    assert pty.command(f"vm {pid}") == want
    set_out = pty.command(f"set {pid}")
    assert set_out.startswith(f"    PID: {pid}\n".encode()), set_out
    assert pty.command("vm") == want                      # the context is now that task
    assert pty.command(f"foreach {pid} vm -p") == cli(db, name, "foreach", pid, "vm", "-p")
    # an erroring command gives crash's message, and the prompt comes back
    assert pty.command("vm 999999") == cli(db, name, "vm", "999999") == \
        b"vm: invalid task or pid value: 999999\n"
    assert pty.command("frobnicate 1") == b"vmdex: command not found: frobnicate\n"
    assert pty.command("vm |") == b"vmdex: no shell command after '|'\n"
    pty.type("q\r")
    assert pty.wait() == 0
    hist = (tmp_path / "history").read_text().splitlines()
    assert f"vm {pid}" in hist and "vm" in hist and "frobnicate 1" in hist


def test_pipes_and_redirection(one, tmp_path):
    db, name, roles = one
    pid = str(roles["init"])
    want = cli(db, name, "vm", pid)
    pty = start(db, name, tmp_path, "shell")
    grep = b"".join(line for line in want.splitlines(keepends=True) if b"MM" in line)
    assert pty.command(f"vm {pid} | grep MM") == grep
    assert pty.command(f"vm {pid} | grep -v VMA | grep MM") == grep   # the rest goes to sh
    out = tmp_path / "answer.txt"
    assert pty.command(f"vm {pid} > {out}") == b""
    assert out.read_bytes() == want
    assert pty.command(f"vm {pid} >> {out}") == b""
    assert out.read_bytes() == want + want
    assert pty.command(f"vm {pid} > {tmp_path}/no/such/dir") == \
        f"vmdex: unable to open {tmp_path}/no/such/dir\n".encode()
    assert pty.command("!echo hello from sh") == b"hello from sh\n"
    assert pty.command(f"vm {pid} | head -1") == want.splitlines(keepends=True)[0]
    # Ctrl-C: a new prompt. Typed once the line is echoed, i.e. once readline reads the
    # terminal: a ^C that comes before is handled by the terminal before readline waits for
    # input, and Python's readline then waits for the next key (a race of the test's typing,
    # not of a person's).
    pty.type("vm 1 half-typed")
    pty.read_until(b"half-typed")
    pty.type("\x03")
    pty.read_until(PROMPT)
    assert pty.command(f"vm {pid}") == want
    pty.type("\x04")                                       # Ctrl-D: a clean exit
    assert pty.wait() == 0


def test_tab_completion(one, tmp_path):
    db, name, roles = one
    tasks = json.loads(vmdex("sql", "--format", "json", "SELECT pid, comm FROM v_tasks "
                             f"WHERE dump = '{name}'", db=db, check=True).stdout)
    pids = sorted({str(t["pid"]) for t in tasks})
    pty = start(db, name, tmp_path)
    # a pid that a shorter prefix names alone is completed; else the pids are listed
    pid = max(pids, key=lambda p: (len(p), p))
    prefix = pid[:-1]
    hits = [p for p in pids if p.startswith(prefix)]
    if len(hits) == 1:
        pty.type(f"set {prefix}\t")
        pty.read_until(f"{pid} ".encode())
    else:
        pty.type(f"set {prefix}\t\t")
        listed = b""
        while not all(f"{p} ".encode() in listed for p in hits):
            listed += pty.read_until(b" ")
        pty.type(pid[-1])
    pty.type("\r")
    pty.read_until(f"\n    PID: {pid}\r\n".encode())      # set's answer for that pid
    pty.read_until(PROMPT)
    comm = "wl_manyvma"
    assert comm in {t["comm"] for t in tasks}
    pty.type("fore\t")                                    # a command
    pty.read_until(b"foreach ")
    pty.type("wl_many\t")                                 # a command name of the dump
    pty.read_until(comm.encode() + b" ")
    pty.type("vm\r")
    got = pty.read_until(PROMPT)[:-len(PROMPT)].replace(b"\r\n", b"\n").partition(b"\n")[2]
    assert got == cli(db, name, "foreach", comm, "vm")
    pty.type("vm -\t\t")                                  # the options, listed
    listed = pty.read_until(b"-P")
    assert b"-R" in listed + pty.read_until(b"-x")
    pty.type("\x15q\r")                                   # ^U clears the line
    assert pty.wait() == 0


def test_piped_commands(one, tmp_path):
    """stdin not a terminal: one command a line, only the answers, crash's `-s` way."""
    db, name, roles = one
    a, b = str(roles["filemap"]), str(roles["init"])
    script = f"vm {a}\nforeach {b} vm\n\nset {b}\nvm\nvm 999999\nq\nvm {a}\n"
    p = subprocess.run([VMDEX, "--db", db, "--dump", name], input=script.encode(),
                       capture_output=True)
    head = cli(db, name, "vm", a) + cli(db, name, "foreach", b, "vm")
    tail = cli(db, name, "vm", b) + b"vm: invalid task or pid value: 999999\n"
    assert p.stdout.startswith(head) and p.stdout.endswith(tail)   # nothing after q
    context = p.stdout[len(head):-len(tail)]
    assert context.startswith(f"    PID: {b}\n".encode()) and context.count(b"\n") == 5
    assert p.returncode == 1                            # the worst status of its commands
    assert p.stderr == b""
    empty = subprocess.run([VMDEX, "--db", db, "--dump", name], input=b"",
                           capture_output=True)
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, b"", b"")


def test_one_line_errors(oracle_index, tmp_path):
    db = next(iter(oracle_index.values()))[0]
    if len(oracle_index) > 1:      # several dumps and no --dump: as every other command
        p = subprocess.run([VMDEX, "--db", str(db)], input=b"vm\n", capture_output=True)
        assert p.returncode == 2
        assert p.stderr.startswith(b"vmdex: the index holds several dumps; choose one with "
                                   b"--dump: ") and p.stderr.count(b"\n") == 1, p.stderr
    p = subprocess.run([VMDEX, "--db", str(tmp_path / "none.db"), "shell"], input=b"",
                       capture_output=True)
    assert p.returncode == 2 and p.stderr.count(b"\n") == 1 and b"Traceback" not in p.stderr
    name = next(iter(oracle_index.values()))[1]
    p = subprocess.run([VMDEX, "--db", str(db), "--dump", name],
                       input=b"set radix 16\nbt\nset -X\nhelp nothing\n\"\n)(\nvm 1 >\n",
                       capture_output=True)
    assert b"Traceback" not in p.stdout + p.stderr
    assert p.stderr.decode().splitlines() == [
        "vmdex: set radix: vmdex keeps none of crash's internal variables",
        "vmdex: bt: a crash command vmdex does not answer (it answers vm, foreach ... vm, ps, "
        "set, sys, help)",
        "set: invalid option -- 'X'",
        "vmdex: command not found: ",
        "vmdex: command not found: )(",
        "vmdex: no file name after >"]
    assert p.returncode == 2


SESSION_CASES = [k for k in F.kernels() if (SESSIONS / f"{k}.json").is_file()]


@pytest.mark.parametrize("kernel", SESSION_CASES, ids=[k[6:] for k in SESSION_CASES])
def test_session_as_crash(oracle_index, kernel):
    """The lines of a recorded crash session, fed to vmdex: the same answer to each."""
    db, name = oracle_index[kernel]
    pairs = json.loads((SESSIONS / f"{kernel}.json").read_text())
    script = "".join(f"!echo '@@@@ {i}'\n{cmd}\n" for i, (cmd, _) in enumerate(pairs))
    p = subprocess.run([VMDEX, "--db", str(db), "--dump", name],
                       input=script.encode("utf-8", "surrogateescape"),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    blocks = p.stdout.split(b"@@@@ ")[1:]
    got = {int(blk.split(b"\n", 1)[0]): blk.split(b"\n", 1)[1] for blk in blocks}
    for i, (cmd, want) in enumerate(pairs):
        assert got.get(i, b"").decode("utf-8", "surrogateescape") == want, cmd


def test_split_redirect_follows_crash():
    """crash's setup_redirect: quotes and parentheses hide | ! >; `->` is no redirect."""
    from vmdex.query.shell import LineError, split_redirect

    assert split_redirect("vm 1") == ("vm 1", None, None, False)
    assert split_redirect("vm 1 | grep x | wc") == ("vm 1 ", "pipe", "grep x | wc", False)
    assert split_redirect("vm 1 ! grep x") == ("vm 1 ", "pipe", "grep x", False)
    assert split_redirect("foreach 'a|b' vm") == ("foreach 'a|b' vm", None, None, False)
    assert split_redirect('foreach "a>b" vm') == ('foreach "a>b" vm', None, None, False)
    assert split_redirect("p (a|b)") == ("p (a|b)", None, None, False)
    assert split_redirect("p a->b") == ("p a->b", None, None, False)
    assert split_redirect("vm >>  out file") == ("vm ", "file", "out file", True)
    assert split_redirect("vm>out") == ("vm", "file", "out", False)
    assert split_redirect("!ls -l") == ("", "run", "ls -l", False)
    assert split_redirect("|") == ("", "sh", None, False)
    for bad, msg in (("vm |", "no shell command after '|'"), ("vm >", "no file name after >"),
                     ("vm >>", "no file name after >>"), ("vm | wc |", "pipe to nowhere?")):
        with pytest.raises(LineError, match=msg.replace("?", r"\?")):
            split_redirect(bad)
