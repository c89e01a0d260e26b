"""Small things a new user meets first: a PostgreSQL URL without the optional driver is
one line naming the extra, and `vmdex --help` shows the foreach line whole."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

URL = "postgresql+psycopg://nobody@127.0.0.1:1/none"


@pytest.mark.parametrize("words", [["dumps"], ["vm", "1"], ["sql", "SELECT 1"],
                                   ["foreach", "vm"]])
def test_postgres_url_without_psycopg_is_one_line(words):
    code = ("import sys; sys.modules['psycopg'] = None; "
            f"sys.argv = ['vmdex', '--db', {URL!r}] + {words!r}; "
            "from vmdex.query.main import main; main()")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 2, p
    assert p.stderr == ("vmdex: a PostgreSQL index needs the psycopg driver: "
                        "pip install 'vmdex[postgres]'\n"), p.stderr
    assert "Traceback" not in p.stderr


def test_help_shows_the_foreach_line():
    from tests.conftest import VMDEX

    p = subprocess.run([VMDEX, "--help"], capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "200"})
    assert p.returncode == 0
    assert "foreach TASK-SELECTORS... vm VM-ARGS..." in p.stdout
