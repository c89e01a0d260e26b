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

# The dump each fixture's oracle was recorded from (fixtures README: PRIMARY).
PRIMARY = {"linux-6.1.0-56-amd64": "vmcore.kdump-zlib"}


def primary_variant(kernel: str) -> str:
    variants = F.dump_variants(kernel)
    want = PRIMARY.get(kernel, "vmcore.kdump-zlib")
    return want if want in variants else variants[0]


def vmdex(*args: str, db: str | os.PathLike | None = None, merge_stderr: bool = False,
          check: bool = False) -> subprocess.CompletedProcess:
    """Run the installed CLI as a user would."""
    cmd = [VMDEX] + (["--db", str(db)] if db else []) + list(args)
    p = subprocess.run(cmd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}): {p.stderr or p.stdout!r}")
    return p


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
