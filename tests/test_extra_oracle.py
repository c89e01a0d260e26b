"""More of crash 9.0.2's `vm` behaviour, recorded on the same fixture dumps by
tests/extra_oracle/record.py (task arguments, -R corner cases, option rules, foreach
selectors and errors): vmdex must print the same bytes, stdout and stderr interleaved."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests import fixturedata as F
from tests.conftest import vmdex

HERE = Path(__file__).resolve().parent / "extra_oracle"


def cases():
    out = []
    for k in F.kernels():
        tsv = HERE / k / "commands.tsv"
        for line in tsv.read_text().splitlines()[1:]:
            fname, cmd = line.split("\t")[:2]
            out.append((k, fname, cmd))
    return out


CASES = cases()


@pytest.mark.parametrize("kernel,fname,cmd", CASES, ids=[f"{k[6:]}:{f}" for k, f, _ in CASES])
def test_extra_oracle(oracle_index, kernel, fname, cmd):
    import shlex

    db, name = oracle_index[kernel]
    p = vmdex("--dump", name, *shlex.split(cmd), db=db, merge_stderr=True)
    want = (HERE / kernel / fname).read_bytes()
    assert p.stdout.decode(errors="replace") == want.decode(errors="replace")
