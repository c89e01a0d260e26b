"""`vmdex smaps`: the kernel's own /proc/PID/smaps and smaps_rollup, byte for byte.

The spec is what the guest kernel printed just before the dump (console.log `SMAPS` lines,
tests/fixturedata's boot2 folders); the dumps are real, ingested by the real CLI.
"""
from __future__ import annotations

import csv
import io
import json
import re

import pytest

from tests import fixturedata as F
from tests.conftest import vmdex

BOOT2 = [k for k in ("linux-6.1.0-56-amd64-boot2", "linux-5.10.0-32-cloud-amd64-boot2")
         if (F.kernel_dir(k) / "console.log").is_file()]
LINE = re.compile(r"^SMAPS (\d+) (\S+) (rollup|full): (.*)$")


def expected(kernel: str) -> dict[tuple[int, str], tuple[str, str]]:
    """(pid, 'rollup'|'full') -> (comm, the text the kernel printed)."""
    out: dict[tuple[int, str], list] = {}
    comms: dict[int, str] = {}
    raw = (F.kernel_dir(kernel) / "console.log").read_bytes().decode("utf-8", "replace")
    for line in raw.splitlines():
        m = LINE.match(line.rstrip("\r"))
        if m:
            pid, comm, kind, text = int(m[1]), m[2], m[3], m[4]
            comms[pid] = comm
            out.setdefault((pid, kind), []).append(text + "\n")
    return {key: (comms[key[0]], "".join(v)) for key, v in out.items()}


@pytest.fixture(scope="module")
def smaps_index(tmp_path_factory):
    db = tmp_path_factory.mktemp("smaps") / "vmdex.db"
    names = {}
    for k in BOOT2:
        names[k] = f"{k}/vmcore.mdf-c-d31"
        vmdex("ingest", "--vmlinux", str(F.vmlinux(k)), "--name", names[k],
              str(F.dump(k, "vmcore.mdf-c-d31")), db=db, check=True)
    return db, names


def _cases(kind: str):
    return [pytest.param(k, pid, id=f"{k}-{pid}") for k in BOOT2
            for (pid, kd) in sorted(expected(k)) if kd == kind]


def _diff(want: str, got: str) -> str:
    w, g = want.splitlines(), got.splitlines()
    bad = [(i, a, b) for i, (a, b) in enumerate(zip(w, g)) if a != b]
    return (f"{len(bad)} of {len(w)} lines differ (got {len(g)} lines); first: "
            + "; ".join(f"line {i}: want {a!r} got {b!r}" for i, a, b in bad[:5]))


@pytest.mark.parametrize("kernel,pid", _cases("rollup"))
def test_rollup_identical(smaps_index, kernel, pid):
    db, names = smaps_index
    want = expected(kernel)[(pid, "rollup")][1]
    p = vmdex("--dump", names[kernel], "smaps", "--rollup", str(pid), db=db)
    assert p.stderr.decode() == "" and p.returncode == 0
    got = p.stdout.decode()
    assert got == want, _diff(want, got)


@pytest.mark.parametrize("kernel,pid", _cases("full"))
def test_full_identical(smaps_index, kernel, pid):
    db, names = smaps_index
    want = expected(kernel)[(pid, "full")][1]
    p = vmdex("--dump", names[kernel], "smaps", str(pid), db=db)
    got = p.stdout.decode()
    assert got == want, _diff(want, got)
    assert p.stderr.decode() == "" and p.returncode == 0
