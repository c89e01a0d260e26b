"""Session fixtures: real fixture dumps ingested once by the real `vmdex` CLI."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import fixturedata as F

VMDEX = shutil.which("vmdex", path=str(Path(sys.executable).parent)) or "vmdex"


def pytest_configure(config) -> None:
    """Every index a test makes starts without the kernels of earlier ingests, as the
    refusal tests expect of a fresh index: the per-user kernel cache is off, except where
    tests/test_kernel_cache.py turns it on for its own ingests. (Set here, not on import:
    the benchmarks import this module's helpers and keep the user's cache.)"""
    os.environ["VMDEX_KERNEL_CACHE"] = "off"


def primary_variant(kernel: str) -> str:
    """The dump the folder's oracle was recorded from: make-dumps.sh's PRIMARY
    (vmcore.kdump-zlib) when the folder has it, else the one variants.json lists first."""
    variants = F.dump_variants(kernel)
    if "vmcore.kdump-zlib" in variants:
        return "vmcore.kdump-zlib"
    listed = F.kernel_dir(kernel) / "variants.json"
    if listed.is_file():
        import json
        for v in json.loads(listed.read_text()):
            if v.get("variant") in variants:
                return v["variant"]
    return variants[0]


def vmdex(*args: str, db: str | os.PathLike | None = None, merge_stderr: bool = False,
          check: bool = False) -> subprocess.CompletedProcess:
    """Run the installed CLI as a user would."""
    cmd = [VMDEX] + (["--db", str(db)] if db else []) + list(args)
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}): {p.stderr or p.stdout!r}")
    return p


def make_kernel_row_old(db) -> None:
    """Turn the SQLite index's one kernels row into what an older vmdex cached: no digest
    of what was asked of DWARF, and no smaps structs."""
    import json
    import sqlite3

    con = sqlite3.connect(db)
    data = json.loads(con.execute("SELECT types_json FROM kernels").fetchone()[0])
    assert data.pop("wanted")
    data["named"] = {k: v for k, v in data["named"].items() if "mem_size_stats" not in k}
    con.execute("UPDATE kernels SET types_json = ?", (json.dumps(data),))
    con.commit()
    con.close()


def ingest(db, kernel: str, variant: str, name: str | None = None) -> str:
    name = name or f"{kernel}/{variant}"
    vmdex("ingest", "--vmlinux", str(F.vmlinux(kernel)), "--name", name,
          str(F.dump(kernel, variant)), db=db, check=True)
    return name


@pytest.fixture(scope="session")
def oracle_index(tmp_path_factory):
    """One SQLite index holding each fixture kernel's primary dump: {kernel: (db, name)}."""
    db = tmp_path_factory.mktemp("index") / "vmdex.db"
    return {k: (db, ingest(db, k, primary_variant(k))) for k in F.kernels()}


# --- PostgreSQL and multi-dump ("fleet") indexes: tests/test_sql.py, test_concurrency.py,
# --- test_oracle_pg.py -----------------------------------------------------------------
def fleet_dumps() -> list[tuple[str, str]]:
    """Every fixture dump stored uncompressed (no .xz to unpack) and every kernel's primary
    dump: (kernel, variant)."""
    return [(k, v) for k in F.kernels() for v in F.dump_variants(k)
            if (F.kernel_dir(k) / v).exists() or v == primary_variant(k)]


def ingest_parallel(db, pairs: list[tuple[str, str]], names: list[str] | None = None,
                    jobs: int = 2) -> list[str]:
    """`vmdex ingest --name` of each (kernel, variant), up to `jobs` processes at once."""
    names = names or [f"{k}/{v}" for k, v in pairs]
    todo = list(zip(pairs, names))
    running: list[tuple[subprocess.Popen, list[str]]] = []
    while todo or running:
        while todo and len(running) < jobs:
            (k, v), name = todo.pop(0)
            cmd = [VMDEX, "--db", str(db), "ingest", "--vmlinux", str(F.vmlinux(k)),
                   "--name", name, str(F.dump(k, v))]
            running.append((subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                             stderr=subprocess.STDOUT), cmd))
        p, cmd = running.pop(0)
        out = p.communicate()[0]
        if p.returncode != 0:
            raise AssertionError(f"{cmd} failed ({p.returncode}): {out[-2000:]!r}")
    return names


@pytest.fixture(scope="session")
def pg_server_url():
    """A throwaway PostgreSQL server for the session (tests/pg.py); fails if not installed."""
    from tests.pg import pg_server

    with pg_server() as url:
        yield url


@pytest.fixture(scope="session")
def fleet_sqlite(tmp_path_factory):
    """SQLite index holding every uncompressed fixture dump, named kernel/variant."""
    db = tmp_path_factory.mktemp("fleet") / "fleet.db"
    ingest_parallel(db, fleet_dumps())
    return str(db)


@pytest.fixture(scope="session")
def fleet_pg(pg_server_url):
    """The same fleet in a PostgreSQL database (its SQLAlchemy URL)."""
    from tests.pg import new_database

    url = new_database(pg_server_url, "fleet")
    ingest_parallel(url, fleet_dumps())
    return url


@pytest.fixture(scope="session")
def fleet_pg_reader(fleet_pg):
    """The PostgreSQL fleet as a reader role made by `vmdex grant-reader` (what `vmdex sql`
    runs under; fleet_pg's own role is the server's superuser)."""
    from tests.pg import new_reader

    return new_reader(fleet_pg)


@pytest.fixture(scope="session")
def pg_oracle_index(fleet_pg):
    """Like oracle_index, on PostgreSQL: {kernel: (url, name of its primary dump)}."""
    return {k: (fleet_pg, f"{k}/{primary_variant(k)}") for k in F.kernels()}


@pytest.fixture(scope="session")
def stripped_vmlinux(tmp_path_factory):
    """The 6.1 fixture's vmlinux without DWARF (objcopy --strip-debug): same build id."""
    out = tmp_path_factory.mktemp("strip") / "vmlinux.nodebug"
    subprocess.run(["objcopy", "--strip-debug", str(F.vmlinux("linux-6.1.0-56-amd64")),
                    str(out)], check=True)
    return out
