"""The PostgreSQL answer path (query.libpq): libpq through ctypes, no psycopg import, one
read-only session. Real server (tests/pg.py), real fixture dumps, the installed CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import fixturedata as F
from tests.conftest import VMDEX, primary_variant, vmdex
from vmdex.indexer.errors import VmdexError
from vmdex.query.conn import connect

K61 = "linux-6.1.0-56-amd64"


def _phys(kernel: str) -> str:
    return json.loads((F.oracle_dir(kernel) / "cases.json").read_text())["phys_anon"]


def test_answer_imports_no_psycopg(fleet_pg, oracle_index):
    """`foreach vm -R` on PostgreSQL: crash's answer (as on SQLite), and psycopg (0.4 s of
    imports) is never loaded on the way."""
    name = f"{K61}/{primary_variant(K61)}"
    python = Path(VMDEX).parent / "python"
    p = subprocess.run([str(python), "-X", "importtime", "-m", "vmdex.query.main", "--db",
                        fleet_pg, "--dump", name, "foreach", "vm", "-R", _phys(K61)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-500:]
    imported = [line.split("|")[-1].strip() for line in p.stderr.splitlines()
                if line.startswith("import time:")]
    assert imported and not [m for m in imported if m.startswith("psycopg")], imported
    db, sq_name = oracle_index[K61]
    want = vmdex("--dump", sq_name, "foreach", "vm", "-R", _phys(K61), db=db, check=True)
    assert p.stdout == want.stdout.decode()


def test_session_is_read_only(fleet_pg):
    """A statement that writes is refused by the server, in a plain call and inside
    iter()'s transaction; stacked statements are refused (the answer path sends only
    vmdex's own SQL, its values as parameters: this is the server's second line)."""
    conn = connect(fleet_pg)
    try:
        assert type(conn).__name__ == "LibpqConn"
        for sql in ("CREATE TABLE vmdex_w (i int)", "DELETE FROM dumps",
                    "SET default_transaction_read_only = off; DELETE FROM dumps"):
            with pytest.raises(VmdexError, match="read-only|cannot insert multiple"):
                conn.all(sql)
        with pytest.raises(VmdexError, match="read-only"):
            conn.all("SELECT nextval(pg_get_serial_sequence('dumps', 'id'))")
        with pytest.raises(VmdexError, match="read-only"):
            list(conn.iter("SELECT nextval(pg_get_serial_sequence('dumps', 'id'))"))
        assert conn.one("SELECT count(*) FROM dumps")[0] > 0
    finally:
        conn.close()


def test_iter_batches_and_nesting(fleet_pg):
    """iter() in batches of a few rows gives all() rows, values typed as the driver's
    (ints, text, bool, NULL); an iter() inside another keeps the outer cursor."""
    conn = connect(fleet_pg)
    try:
        sql = ("SELECT id, name, id > 1, NULL::int, pid FROM dumps d JOIN tasks t "
               "ON t.dump_id = d.id WHERE pid < ? ORDER BY id, pid")
        whole = conn.all(sql, (50,))
        assert len(whole) > 20 and isinstance(whole[0][0], int) and isinstance(whole[0][1], str)
        assert whole[0][3] is None and isinstance(whole[0][2], bool)
        got = []
        for row in conn.iter(sql, (50,), size=7):
            got.append(row)
            if len(got) == 3:
                assert list(conn.iter("SELECT id FROM dumps ORDER BY id", size=2))
        assert got == whole
        assert conn.one("SELECT count(*) FROM dumps")[0] > 0      # the session goes on
    finally:
        conn.close()


def test_bad_server_is_one_line(tmp_path):
    p = vmdex("--db", "postgresql+psycopg://nobody@127.0.0.1:1/none", "vm")
    assert p.returncode != 0 and p.stderr.count(b"\n") == 1, p.stderr
    assert p.stderr.startswith(b"vmdex: cannot connect to postgresql+psycopg://nobody@127.0.0.1:1/none")
