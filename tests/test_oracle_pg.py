"""The whole oracle comparison of tests/test_oracle.py, against a PostgreSQL index.

Same cases, same checks (its run_case), but the index is a PostgreSQL database filled by
`vmdex --db postgresql+psycopg://... ingest` (the pg_oracle_index fixture in conftest.py).
"""
from __future__ import annotations

import pytest

from tests.test_oracle import CASES, run_case


@pytest.mark.parametrize("kernel,fname,cmd", CASES, ids=[f"pg:{k[6:]}:{f}" for k, f, _ in CASES])
def test_oracle_command_pg(pg_oracle_index, kernel, fname, cmd):
    url, name = pg_oracle_index[kernel]
    run_case(url, name, kernel, fname, cmd)
