"""crash's `ps` from the index: the fixture oracle's `ps` (crash 9.0.2 on each fixture's
primary dump) through the CLI and the `vmdex>` prompt. Every other ps form is asked of live
crash by the question generator (families ps, ps_lastrun, ps_rules, ps_args: recorded in
tests/generated/, replayed by test_generated.py) and by the kernel matrix."""
from __future__ import annotations

import subprocess

import pytest

from tests import fixturedata as F
from tests.conftest import VMDEX, vmdex


@pytest.mark.parametrize("kernel", F.kernels())
def test_ps_is_crash(oracle_index, kernel):
    db, name = oracle_index[kernel]
    want = (F.kernel_dir(kernel) / "oracle" / "ps.txt").read_bytes()
    p = vmdex("--dump", name, "ps", db=db)
    assert p.returncode == 0, p.stderr
    assert p.stdout == want


@pytest.mark.parametrize("kernel", F.kernels()[:1])
def test_ps_at_the_prompt(oracle_index, kernel):
    """The prompt answers `ps` and crash's `last` alias (ps -l) as the CLI does."""
    db, name = oracle_index[kernel]
    want = (F.kernel_dir(kernel) / "oracle" / "ps.txt").read_bytes()
    last = vmdex("--dump", name, "ps", "-l", db=db, check=True).stdout
    p = subprocess.run([VMDEX, "--db", str(db), "--dump", name], input=b"ps\nlast\n",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.returncode == 0, p.stderr
    assert p.stdout == want + last


def test_ps_options_conflict_as_crash(oracle_index):
    db, name = next(iter(oracle_index.values()))
    p = vmdex("--dump", name, "ps", "-p", "-c", db=db, merge_stderr=True)
    assert p.returncode == 1
    assert p.stdout == (b"ps: -a, -t, -c, -p, -g, -l, -m, -S, -r and -A flags are all "
                        b"mutually-exclusive\n")
    p = vmdex("--dump", name, "ps", "-Z", db=db)
    assert p.returncode == 1
    assert p.stderr == b"ps: invalid option -- 'Z'\n"
    assert p.stdout.startswith(b"Usage:\n  ps [-k|-u|-G|-y policy]")


def test_ps_json_is_refused_in_one_line(oracle_index):
    db, name = next(iter(oracle_index.values()))
    p = vmdex("--dump", name, "--format", "json", "ps", db=db)
    assert p.returncode == 2
    assert p.stderr.count(b"\n") == 1 and b"text only" in p.stderr


def test_unquoted_regex_in_foreach(oracle_index):
    """At the prompt an unquoted regex-looking word is crash's unknown argument; on the
    command line (a shell ate the quotes) vmdex reads it as the regex (README)."""
    db, name = oracle_index["linux-6.1.0-56-amd64"] if "linux-6.1.0-56-amd64" in oracle_index \
        else next(iter(oracle_index.values()))
    p = subprocess.run([VMDEX, "--db", str(db), "--dump", name], input=b"foreach wl_.* vm\n",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.startswith(b'foreach: unknown argument: "wl_.*"\n'), p.stdout[:200]
    cli = vmdex("--dump", name, "foreach", "wl_.*", "vm", db=db)
    quoted = vmdex("--dump", name, "foreach", "'wl_.*'", "vm", db=db, check=True)
    assert cli.returncode == 0 and cli.stdout == quoted.stdout
