"""Every `vm` / `foreach` command of every fixture's oracle, run through the installed CLI
against an index built by `vmdex ingest`, must print exactly what crash 9.0.2 printed."""
from __future__ import annotations

import gzip

import pytest

from tests import fixturedata as F
from tests.conftest import vmdex

CASES = [(k, f, cmd) for k in F.kernels() for f, cmd, _ in F.oracle_commands(k)
         if cmd.split()[0] in ("vm", "foreach")]


def expected(kernel: str, fname: str) -> bytes:
    path = F.oracle_dir(kernel) / fname
    return gzip.open(path).read() if fname.endswith(".gz") else path.read_bytes()


def run_case(db, name: str, kernel: str, fname: str, cmd: str) -> None:
    # err.* files hold what crash printed to the terminal: stdout and stderr interleaved.
    is_err = fname.startswith("err.")
    p = vmdex("--dump", name, *cmd.split(), db=db, merge_stderr=is_err)
    want = expected(kernel, fname)
    if p.stdout != want:
        got_lines, want_lines = p.stdout.splitlines(), want.splitlines()
        first = next((i for i, (a, b) in enumerate(zip(got_lines, want_lines)) if a != b),
                     min(len(got_lines), len(want_lines)))
        pytest.fail(f"{cmd}: output differs at line {first + 1}:\n"
                    f"  got:  {got_lines[first] if first < len(got_lines) else '<end>'!r}\n"
                    f"  want: {want_lines[first] if first < len(want_lines) else '<end>'!r}\n"
                    f"  stderr: {(p.stderr or b'')[-400:]!r}")
    # crash reports an error with a message; vmdex also says so with its exit status.
    if is_err:
        assert p.returncode != 0, f"{cmd}: error case exited 0"
    else:
        assert p.returncode == 0, f"{cmd}: exited {p.returncode}"


@pytest.mark.parametrize("kernel,fname,cmd", CASES, ids=[f"{k[6:]}:{f}" for k, f, _ in CASES])
def test_oracle_command(oracle_index, kernel, fname, cmd):
    db, name = oracle_index[kernel]
    run_case(db, name, kernel, fname, cmd)
