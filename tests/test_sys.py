"""`vmdex sys`: byte for byte crash 9.0.2's `sys` on every fixture (oracle/sys.txt), on the
other variants crash was asked about (tests/extra_oracle/<kernel>/sys/), through the CLI and
the prompt, and with the kernel taken from the index's cache."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests import fixturedata as F
from tests.conftest import VMDEX, primary_variant

EXTRA = Path(__file__).resolve().parent / "extra_oracle"
ENV = {**os.environ, "TZ": "UTC"}     # the oracles were recorded in UTC


def run(args, cwd, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([VMDEX, *args], cwd=cwd, env=ENV, capture_output=True,
                          input=stdin if stdin is not None else b"")


def names_crash_saw(oracle: bytes) -> tuple[str, str]:
    lines = oracle.decode().splitlines()
    kernel = lines[0].split(": ", 1)[1].split("  ")[0]
    dump = lines[1].split(": ", 1)[1].split("  ")[0]
    return kernel, dump


def ingest_as_crash_saw(tmp: Path, kernel: str, variant: str, oracle: bytes) -> Path:
    """A folder with the files under the names crash was given, the dump ingested there
    with those names (`vmdex ingest --vmlinux vmlinux vmcore.x`, cwd the folder)."""
    kname, dname = names_crash_saw(oracle)
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / kname).symlink_to(F.vmlinux(kernel))
    (tmp / dname).symlink_to(F.dump(kernel, variant))
    p = run(["--db", "sys.db", "ingest", "--vmlinux", kname, dname], tmp)
    assert p.returncode == 0, p.stderr
    return tmp


def cases():
    out = []
    for k in F.kernels():
        extra = EXTRA / k / "sys"
        primary = primary_variant(k)
        recorded = F.oracle_dir(k) / "sys.txt"
        # a live answer on the primary variant replaces the folder's (extra_oracle/SYS.md)
        if not (extra / f"{primary}.txt").is_file() or \
                names_crash_saw(recorded.read_bytes())[1] != primary:
            out.append((k, primary, recorded))
        for v in F.dump_variants(k):
            if (extra / f"{v}.txt").is_file():
                out.append((k, v, extra / f"{v}.txt"))
    return out


@pytest.mark.parametrize("kernel,variant,oracle", cases(),
                         ids=lambda x: x.name if isinstance(x, Path) else str(x))
def test_sys_is_crash(tmp_path, kernel, variant, oracle):
    want = oracle.read_bytes()
    d = ingest_as_crash_saw(tmp_path / "d", kernel, variant, want)
    p = run(["--db", "sys.db", "sys"], d)
    assert (p.returncode, p.stderr) == (0, b"")
    assert p.stdout == want
    # the prompt answers the same words with the same bytes
    p = run(["--db", "sys.db"], d, stdin=b"sys\n")
    assert (p.returncode, p.stdout) == (0, want)
    t = EXTRA / kernel / "sys" / f"sys-t.{variant}.txt"
    if t.is_file():
        p = run(["--db", "sys.db", "sys", "-t"], d)
        assert (p.returncode, p.stdout) == (0, t.read_bytes())


def test_sys_bad_options_are_crash(tmp_path):
    kernel = "linux-6.1.0-56-amd64"
    if kernel not in F.kernels():
        pytest.skip("no 6.1 fixture")
    oracle = F.oracle_dir(kernel) / "sys.txt"
    d = ingest_as_crash_saw(tmp_path / "d", kernel, primary_variant(kernel),
                            oracle.read_bytes())
    extra = EXTRA / kernel / "sys"
    # crash: getopt's complaint on stderr, then the usage on stdout
    p = run(["--db", "sys.db", "sys", "-x"], d)
    assert p.returncode == 1
    assert p.stderr + p.stdout == (extra / "sys-x.txt").read_bytes()
    p = run(["--db", "sys.db", "sys", "foo"], d)
    assert (p.returncode, p.stdout) == (1, (extra / "sys-foo.txt").read_bytes())
    for form in (["-c"], ["config"], ["-i"]):
        p = run(["--db", "sys.db", "sys", *form], d)
        assert p.returncode == 1 and p.stdout == b""
        assert b"vmdex does not answer" in p.stderr
    p = run(["--db", "sys.db"], d, stdin=b"help sys\n")
    assert p.stdout == (Path(__file__).resolve().parents[1] / "query/help/sys.txt").read_bytes()
    p = run(["--db", "sys.db", "--format", "json", "sys"], d)
    rows = {r["key"]: r["value"] for r in json.loads(p.stdout)}
    assert rows["release"] == "6.1.0-56-amd64" and rows["panic"] == '""'
    p = run(["--db", "sys.db", "--format", "csv", "sys"], d)
    assert p.stdout.decode().splitlines()[0] == "key,value"


def test_sys_kernel_from_cache(tmp_path):
    """A second dump of the same kernel, ingested without --vmlinux: the kernel row comes
    from the index, and KERNEL names the file the kernel was first read from."""
    kernel = "linux-6.1.0-56-amd64"
    if kernel not in F.kernels() or "vmcore.mdf-c-d31" not in F.dump_variants(kernel):
        pytest.skip("no 6.1 fixture with two variants")
    oracle = F.oracle_dir(kernel) / "sys.txt"
    d = ingest_as_crash_saw(tmp_path / "d", kernel, primary_variant(kernel),
                            oracle.read_bytes())
    (d / "vmcore.mdf-c-d31").symlink_to(F.dump(kernel, "vmcore.mdf-c-d31"))
    p = run(["--db", "sys.db", "ingest", "vmcore.mdf-c-d31"], d)
    assert p.returncode == 0, p.stderr
    p = run(["--db", "sys.db", "--dump", "vmcore.mdf-c-d31", "sys"], d)
    assert p.returncode == 0, p.stderr
    want = (EXTRA / kernel / "sys" / "vmcore.mdf-c-d31.txt").read_bytes().decode()
    want = want.replace("      KERNEL: vmlinux\n", f"      KERNEL: {d / 'vmlinux'}\n", 1)
    assert p.stdout.decode() == want
