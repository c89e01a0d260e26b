"""The per-user kernel cache (indexer.kernel.usercache): a new index takes the kernel an
earlier ingest read from the same build's vmlinux, and answers exactly as with the DWARF
read again; a stripped vmlinux (no DWARF, same build id) proves the DWARF was not read.
A damaged cache file is ignored, and "off" turns the cache off. The real CLI, installed,
on a real fixture dump; the rest of the suite runs with the cache off (conftest)."""
from __future__ import annotations

import os
import sqlite3
import subprocess

from tests import fixturedata as F
from tests.conftest import VMDEX

K61 = "linux-6.1.0-56-amd64"
DUMP = "vmcore.mdf-c-d31"
QUESTIONS = [["vm", "-p", "1"], ["sys"], ["ps"], ["smaps", "1"], ["vm", "-v", "1"]]


def run(db, *args, cache, check=True) -> subprocess.CompletedProcess:
    env = dict(os.environ, VMDEX_KERNEL_CACHE=str(cache))
    p = subprocess.run([VMDEX, "--db", str(db), *args], env=env, capture_output=True,
                       stdin=subprocess.DEVNULL)
    if check:
        assert p.returncode == 0, p.stderr.decode()
    return p


def kernel_row(db) -> tuple:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT build_id, types_json, symtab, source FROM kernels").fetchone()
    finally:
        con.close()


def answers(db, cache) -> list[bytes]:
    # sys names the KERNEL file as typed: compare the lines that do not
    return [b"\n".join(l for l in run(db, *q, cache=cache).stdout.splitlines()
                       if not l.lstrip().startswith(b"KERNEL:"))
            for q in QUESTIONS]


def test_new_index_takes_the_cached_kernel(tmp_path, stripped_vmlinux):
    cache = tmp_path / "kernels"
    dump = F.dump(K61, DUMP)
    first = tmp_path / "first.db"
    run(first, "ingest", "--vmlinux", str(F.vmlinux(K61)), str(dump), cache=cache)
    files = list(cache.glob("*.kernel"))
    bid = kernel_row(first)[0]
    assert [f.name.split("-")[0] for f in files] == [bid]

    # a new index, a vmlinux without DWARF: only the cache can give its kernel
    second = tmp_path / "second.db"
    run(second, "ingest", "--vmlinux", str(stripped_vmlinux), str(dump), cache=cache)
    assert kernel_row(second) == kernel_row(first)
    assert answers(second, cache) == answers(first, cache)
    assert all(answers(first, cache))

    # without the cache the same stripped vmlinux is refused in one line, nothing stored
    off = tmp_path / "off.db"
    p = run(off, "ingest", "--vmlinux", str(stripped_vmlinux), str(dump), cache="off",
            check=False)
    err = p.stderr.decode()
    assert p.returncode != 0 and err.count("\n") == 1 and "no debug info" in err, err


def test_damaged_cache_file_is_ignored_and_replaced(tmp_path, stripped_vmlinux):
    cache = tmp_path / "kernels"
    dump = F.dump(K61, DUMP)
    good = tmp_path / "good.db"
    run(good, "ingest", "--vmlinux", str(F.vmlinux(K61)), str(dump), cache=cache)
    (path,) = cache.glob("*.kernel")
    whole = path.read_bytes()
    for damage in (whole[:len(whole) // 2],                          # cut short
                   whole[:-100] + bytes(100),                        # bytes changed
                   b"not a kernel cache file"):
        path.write_bytes(damage)
        p = run(tmp_path / "x.db", "ingest", "--vmlinux", str(stripped_vmlinux), str(dump),
                cache=cache, check=False)
        assert p.returncode != 0 and b"no debug info" in p.stderr, p.stderr
        # the next ingest with the real vmlinux reads its DWARF and mends the file
        db = tmp_path / f"mend{len(damage)}.db"
        run(db, "ingest", "--vmlinux", str(F.vmlinux(K61)), str(dump), cache=cache)
        assert path.read_bytes() == whole
        assert kernel_row(db) == kernel_row(good)


def test_unwritable_cache_is_no_cache(tmp_path):
    """A cache folder that cannot be made (its parent is a file): the ingest goes on."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    db = tmp_path / "i.db"
    run(db, "ingest", "--vmlinux", str(F.vmlinux(K61)), str(F.dump(K61, DUMP)),
        cache=blocker / "kernels")
    assert kernel_row(db)[3] == "vmlinux"
