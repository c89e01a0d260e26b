"""Small things a new user meets first: a PostgreSQL URL without the optional driver is
one line naming the extra, and `vmdex --help` shows the foreach line whole."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

URL = "postgresql+psycopg://nobody@127.0.0.1:1/none"


@pytest.mark.parametrize("words,needs_psycopg", [
    (["dumps"], False), (["vm", "1"], False), (["sql", "SELECT 1"], True),
    (["foreach", "vm"], False)])
def test_postgres_url_without_psycopg_is_one_line(words, needs_psycopg):
    """Without psycopg: `vmdex sql` says it needs the driver; the answers go through libpq
    (query.libpq, present where PostgreSQL is) and get as far as the server."""
    code = ("import sys; sys.modules['psycopg'] = None; "
            f"sys.argv = ['vmdex', '--db', {URL!r}] + {words!r}; "
            "from vmdex.query.main import main; main()")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 2, p
    if needs_psycopg:
        assert p.stderr == ("vmdex: a PostgreSQL index needs the psycopg driver: "
                            "pip install 'vmdex[postgres]'\n"), p.stderr
    else:
        assert p.stderr.startswith(f"vmdex: cannot connect to {URL}: ") and \
            p.stderr.count("\n") == 1 and "refused" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


def test_help_shows_the_foreach_line():
    from tests.conftest import VMDEX

    p = subprocess.run([VMDEX, "--help"], capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "200"})
    assert p.returncode == 0
    assert "foreach TASK-SELECTORS... vm VM-ARGS..." in p.stdout
