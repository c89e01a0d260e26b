"""`vmdex ingest` without --vmlinux: the kernel from the index, the debug directories, or a
real debuginfod server; and `vmdex ingest DIR` over a /var/crash-style tree."""
from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests import fixturedata as F
from tests.conftest import VMDEX, make_kernel_row_old
from tests.debuginfod_server import debuginfod_server
from tests.test_oracle import run_case

K61 = "linux-6.1.0-56-amd64"
K510 = "linux-5.10.0-32-cloud-amd64"
REL61, REL510 = "6.1.0-56-amd64", "5.10.0-32-cloud-amd64"
BID61 = "eb4fbcd037e7253717950bf2b93bd5566f47c56f"   # the fixtures' own build ids
BID510 = "e0c94673e97d58a386e99a20572aa7d597d5aa5c"
FIND_ENV = ("DEBUGINFOD_URLS", "VMDEX_DEBUG_DIRS", "DEBUGINFOD_CACHE_PATH", "DEBUGINFOD_TIMEOUT")


def run(*args: str, db, **env: str) -> subprocess.CompletedProcess:
    """The CLI with only the lookup settings given here (and an empty debuginfod cache
    unless one is given), so nothing on this machine is found by accident."""
    e = {k: v for k, v in os.environ.items() if k not in FIND_ENV}
    e.update(env)
    e.setdefault("DEBUGINFOD_CACHE_PATH", str(Path(db).parent / "no-cache"))
    return subprocess.run([VMDEX, "--db", str(db), *args], env=e, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def ok(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    return p.stderr


def one_line_error(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    return lines[0]


def oracle_vm_cases(kernel: str) -> list[tuple[str, str]]:
    """`vm PID` and `vm -p PID` of every workload: the answers that need the kernel's types."""
    return [(f, cmd) for f, cmd, _ in F.oracle_commands(kernel)
            if f.startswith(("vm.", "vm-p."))]


def check_oracle(db, name: str, kernel: str) -> None:
    cases = oracle_vm_cases(kernel)
    assert cases
    for fname, cmd in cases:
        run_case(db, name, kernel, fname, cmd)


@pytest.fixture(scope="module")
def debuginfod_url():
    with debuginfod_server([F.vmlinux(K61)], build_ids=[BID61]) as url:
        yield url


# --- debuginfod ----------------------------------------------------------------------------
def test_debuginfod_fetch_then_ingest_matches_oracle(debuginfod_url, tmp_path):
    db, cache = tmp_path / "i.db", tmp_path / "cache"
    p = run("ingest", "--name", "d", str(F.dump(K61, "vmcore.kdump-zlib")), db=db,
            DEBUGINFOD_URLS=f"http://127.0.0.1:1 {debuginfod_url}",   # the first is down
            DEBUGINFOD_CACHE_PATH=str(cache), VMDEX_DEBUG_DIRS=str(tmp_path / "none"))
    assert f"({cache}/{BID61}/debuginfo)" in ok(p)
    got = cache / BID61 / "debuginfo"
    assert got.stat().st_size == F.vmlinux(K61).stat().st_size
    assert os.listdir(got.parent) == ["debuginfo"]   # the temp file was renamed, not left
    check_oracle(db, "d", K61)


def test_debuginfod_cache_is_reused_without_server(debuginfod_url, tmp_path):
    from vmdex.indexer import debuginfod

    cache = tmp_path / "cache"
    (cache / BID61).mkdir(parents=True)
    (cache / BID61 / "debuginfo").touch(mode=0)   # elfutils' "not found" mark: not a hit
    path, failures = debuginfod.fetch(BID61, [debuginfod_url], cache)
    assert path == cache / BID61 / "debuginfo" and failures == []
    # elfutils' layout: the same file is found again with no server at all
    assert debuginfod.fetch(BID61, [], cache) == (path, [])
    assert debuginfod.fetch(BID61, ["http://127.0.0.1:1"], cache) == (path, [])


def test_debuginfod_server_without_the_build(debuginfod_url, tmp_path):
    db = tmp_path / "i.db"
    p = run("ingest", "--vmlinux-required", str(F.dump(K510, "vmcore.mdf-c-d31")), db=db,
            DEBUGINFOD_URLS=debuginfod_url, VMDEX_DEBUG_DIRS=str(tmp_path / "none"))
    line = one_line_error(p)
    assert f"build id {BID510}, kernel {REL510}" in line
    assert f"{debuginfod_url}: not found (HTTP 404)" in line
    assert not (tmp_path / "no-cache" / BID510 / "debuginfo").exists()


def test_debuginfod_timeout_is_one_reason(tmp_path):
    """A server that accepts and never answers is given up after $DEBUGINFOD_TIMEOUT."""
    from vmdex.indexer import debuginfod

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        old = os.environ.get("DEBUGINFOD_TIMEOUT")
        os.environ["DEBUGINFOD_TIMEOUT"] = "0.5"
        try:
            path, failures = debuginfod.fetch(BID61, [url], tmp_path / "cache")
        finally:
            if old is None:
                del os.environ["DEBUGINFOD_TIMEOUT"]
            else:
                os.environ["DEBUGINFOD_TIMEOUT"] = old
    assert path is None
    assert failures == [f"{url}: timed out after 0.5s"]


# --- debug directories ---------------------------------------------------------------------
def test_build_id_layout(tmp_path):
    root = tmp_path / "debug"
    link = root / ".build-id" / BID510[:2] / f"{BID510[2:]}.debug"
    link.parent.mkdir(parents=True)
    link.symlink_to(F.vmlinux(K510))
    p = run("ingest", str(F.dump(K510, "vmcore.mdf-c-d31")), db=tmp_path / "i.db",
            VMDEX_DEBUG_DIRS=f"{tmp_path / 'empty'}:{root}")
    assert f"({link})" in ok(p)


@pytest.mark.parametrize("layout", ["boot/vmlinux-{rel}", "lib/modules/{rel}/vmlinux",
                                    "vmlinux-{rel}"])
def test_release_layouts(tmp_path, layout):
    root = tmp_path / "debug"
    path = root / layout.format(rel=REL510)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(F.vmlinux(K510))
    p = run("ingest", str(F.dump(K510, "vmcore.mdf-c-d31")), db=tmp_path / "i.db",
            VMDEX_DEBUG_DIRS=str(root))
    assert f"({path})" in ok(p)


def test_release_match_of_another_build_is_passed_over(tmp_path):
    """boot/vmlinux-REL of the wrong build comes first; the right one further on is used;
    with only the wrong one, nothing is found and the message says what was passed over."""
    root = tmp_path / "debug"
    wrong, right = root / "boot" / f"vmlinux-{REL510}", root / f"vmlinux-{REL510}"
    wrong.parent.mkdir(parents=True)
    wrong.symlink_to(F.vmlinux(K61))
    dump = str(F.dump(K510, "vmcore.mdf-c-d31"))
    line = one_line_error(run("ingest", "--vmlinux-required", dump, db=tmp_path / "i.db",
                              VMDEX_DEBUG_DIRS=str(root)))
    assert f"passed over {wrong}: build id {BID61}" in line
    right.symlink_to(F.vmlinux(K510))
    assert f"({right})" in ok(run("ingest", dump, db=tmp_path / "i.db",
                                  VMDEX_DEBUG_DIRS=str(root)))


def test_release_only_lookup_for_a_dump_without_build_id(tmp_path):
    """Kernels before VMCOREINFO had BUILD-ID (5.10 upstream): found by release alone."""
    from vmdex.indexer.kernel.locate import find_in_dirs

    root = tmp_path / "debug"
    (root / "lib" / "modules" / REL510).mkdir(parents=True)
    (root / "lib" / "modules" / REL510 / "vmlinux").symlink_to(F.vmlinux(K510))
    assert find_in_dirs(None, REL510, [tmp_path / "none", root]) == (
        root / "lib" / "modules" / REL510 / "vmlinux", [])
    assert find_in_dirs(None, REL61, [root]) == (None, [])


def test_not_found_is_one_line_naming_where(tmp_path):
    dirs = f"{tmp_path / 'a'}:{tmp_path / 'b'}"
    p = run("ingest", "--vmlinux-required", str(F.dump(K61, "vmcore.mdf-c-d31")),
            db=tmp_path / "i.db", VMDEX_DEBUG_DIRS=dirs, DEBUGINFOD_URLS="http://127.0.0.1:1")
    line = one_line_error(p)
    assert line.startswith(f"vmdex: {F.dump(K61, 'vmcore.mdf-c-d31')}: no vmlinux found "
                           f"(build id {BID61}, kernel {REL61}): looked in debug dirs "
                           f"{tmp_path / 'a'}, {tmp_path / 'b'}, /usr/lib/debug; debuginfod "
                           "http://127.0.0.1:1: "), line
    assert "give --vmlinux" in line
    p = run("ingest", "--vmlinux-required", str(F.dump(K61, "vmcore.mdf-c-d31")),
            db=tmp_path / "i.db", VMDEX_DEBUG_DIRS=dirs)
    assert "(DEBUGINFOD_URLS is not set)" in one_line_error(p)
    # without --vmlinux-required the dump's own BTF and kallsyms stand in
    p = run("ingest", str(F.dump(K61, "vmcore.mdf-c-d31")), db=tmp_path / "i.db",
            VMDEX_DEBUG_DIRS=dirs)
    assert "(BTF and kallsyms from the dump)" in ok(p)


# --- the index already holds the kernel ----------------------------------------------------
def test_second_dump_of_a_kernel_needs_no_vmlinux(tmp_path):
    db = tmp_path / "i.db"
    ok(run("ingest", "--vmlinux", str(F.vmlinux(K61)), "--name", "first",
           str(F.dump(K61, "vmcore.mdf-c-d31")), db=db))
    p = run("ingest", "--name", "second", str(F.dump(K61, "vmcore.kdump-zlib")), db=db,
            VMDEX_DEBUG_DIRS=str(tmp_path / "none"))
    assert f"(kernel {BID61} cached in the index)" in ok(p)
    check_oracle(db, "second", K61)
    # A dump without a build id finds the cached kernel by its release (one build has it).
    from vmdex.indexer.db import make_engine
    from vmdex.indexer.store import known_kernel

    engine = make_engine(str(db))
    try:
        assert known_kernel(engine, None, REL61) == BID61
        assert known_kernel(engine, None, REL510) is None
        assert known_kernel(engine, BID510, REL61) is None   # the build id decides
    finally:
        engine.dispose()


# --- /var/crash trees ----------------------------------------------------------------------
def test_var_crash_tree_ingested_once(tmp_path):
    crash, debug = tmp_path / "crash", tmp_path / "debug"
    dumps = {"202601011200": F.dump(K61, "vmcore.kdump-zlib"),
             "202601011300": F.dump(K510, "vmcore.mdf-c-d31")}
    for stamp, src in dumps.items():
        (crash / stamp).mkdir(parents=True)
        (crash / stamp / f"dump.{stamp}").symlink_to(src)
        (crash / stamp / f"dmesg.{stamp}").write_text("not a dump\n")
    (crash / "kexec_cmd").write_text("kexec -p ...\n")
    for k, rel in ((K61, REL61), (K510, REL510)):
        (debug / "boot").mkdir(parents=True, exist_ok=True)
        (debug / "boot" / f"vmlinux-{rel}").symlink_to(F.vmlinux(k))
    db = tmp_path / "i.db"
    err = ok(run("ingest", "--jobs", "2", str(crash), db=db, VMDEX_DEBUG_DIRS=str(debug)))
    assert sorted(l.split(":")[0] for l in err.splitlines()) == [
        "ingested 202601011200", "ingested 202601011300"], err
    check_oracle(db, "202601011200", K61)

    again = ok(run("ingest", "--jobs", "2", str(crash), db=db))   # no vmlinux needed to skip
    assert again.splitlines() == [
        f"vmdex: {crash}/{s}/dump.{s}: skipped, already in the index as {s} (same file, "
        "same size)" for s in sorted(dumps)]
    one = ok(run("ingest", str(crash / "202601011300"), db=db))   # one stamp directory
    assert "skipped, already in the index as 202601011300" in one


def test_directory_without_dumps(tmp_path):
    (tmp_path / "crash" / "x").mkdir(parents=True)
    line = one_line_error(run("ingest", str(tmp_path / "crash"), db=tmp_path / "i.db"))
    assert line == (f"vmdex: {tmp_path / 'crash'}: no crash dumps under this directory "
                    "(looked for <dir>/dump.<stamp> and <dir>/vmcore files)")


def test_stale_cached_kernel_is_read_again_from_a_found_vmlinux(tmp_path):
    """Without --vmlinux, a kernels row cached by an older vmdex (less asked of DWARF: here
    no smaps structs) is read again from the vmlinux vmdex finds by itself; found nowhere,
    the dump is still indexed from the old row and ingest_errors says how to get smaps."""
    import json
    import sqlite3

    db = tmp_path / "i.db"
    dump = str(F.dump(K61, "vmcore.mdf-c-d31"))
    ok(run("ingest", "--vmlinux", str(F.vmlinux(K61)), "--name", "first", dump, db=db))
    make_kernel_row_old(db)
    con = sqlite3.connect(db)

    def smaps_errors(name):
        return [r[0] for r in con.execute(
            "SELECT message FROM ingest_errors e JOIN dumps d ON d.id = e.dump_id "
            "WHERE d.name = ? AND message LIKE 'smaps%'", (name,))]

    ok(run("ingest", "--name", "stale", dump, db=db, VMDEX_DEBUG_DIRS=str(tmp_path / "none")))
    assert len(smaps_errors("stale")) == 1 and "--vmlinux" in smaps_errors("stale")[0]
    root = tmp_path / "debug"
    (root / "boot").mkdir(parents=True)
    (root / "boot" / f"vmlinux-{F.release(K61)}").symlink_to(F.vmlinux(K61))
    ok(run("ingest", "--name", "found", dump, db=db, VMDEX_DEBUG_DIRS=str(root)))
    assert smaps_errors("found") == []
    assert "wanted" in json.loads(con.execute("SELECT types_json FROM kernels").fetchone()[0])
    con.close()
    rollup = run("--dump", "found", "smaps", "--rollup", "1", db=db)
    assert rollup.returncode == 0 and "Pss:" in rollup.stdout
