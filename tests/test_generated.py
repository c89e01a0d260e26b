"""Generated questions (tests/generate), asked of live crash 9.0.2 on each fixture dump and
recorded in tests/generated/<fixture folder>/seed*.jsonl.gz: vmdex must print the same
bytes (stdout and stderr as a terminal shows them) and exit non-zero exactly when crash
reported an error. One test per fixture folder and question family.

Damaged copies of the fixture dumps (tests/generate/damaged.py: cut short, pages holding
VMAs or page tables excluded or past the end of the file, corrupt compressed data) are
rebuilt from the fixture at test time; crash's answers on them are in
damaged-NAME.jsonl.gz.

Record again after a fixture changes: `python -m tests.generate record FOLDER --out ...`,
`python -m tests.generate record-damaged FOLDER`."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from tests import fixturedata as F
from tests.generate import replay

HERE = Path(__file__).resolve().parent / "generated"


def cases():
    by = defaultdict(list)
    for k in F.kernels():
        for f in sorted((HERE / k).glob("seed*.jsonl.gz")):
            for r in replay.load_answers(f):
                by[(k, r["family"])].append(r)
    return by


CASES = cases()


@pytest.mark.parametrize("kernel,family", sorted(CASES), ids=[f"{k[6:]}:{f}" for k, f in sorted(CASES)])
def test_generated_questions(oracle_index, kernel, family):
    db, name = oracle_index[kernel]
    rows = CASES[(kernel, family)]
    diffs: list[str] = []
    per = replay.compare(rows, str(db), name, diffs)
    same, asked = per.get(family, (0, 0))
    assert same == asked, f"{asked - same} of {asked} differ:\n" + "\n".join(diffs[:15])


DAMAGED = [(k, f.name[len("damaged-"):-len(".jsonl.gz")]) for k in F.kernels()
           for f in sorted((HERE / k).glob("damaged-*.jsonl.gz"))]


@pytest.mark.parametrize("kernel,damage", DAMAGED, ids=[f"{k[6:]}:{d}" for k, d in DAMAGED])
def test_damaged_dump_questions(tmp_path, kernel, damage):
    """Every family, on a damaged copy: what crash printed, read errors and all."""
    from tests.conftest import vmdex
    from tests.generate.__main__ import damaged_copies

    copy = damaged_copies(F.kernel_dir(kernel))[damage]
    db = tmp_path / "damaged.db"
    vmdex("ingest", "--vmlinux", str(F.vmlinux(kernel)), "--name", damage, str(copy), db=db,
          check=True)
    rows = replay.load_answers(HERE / kernel / f"damaged-{damage}.jsonl.gz")
    diffs: list[str] = []
    per = replay.compare(rows, str(db), damage, diffs, damaged=True)
    bad = {f: v for f, v in per.items() if v[0] != v[1]}
    assert not bad, f"{bad}\n" + "\n".join(diffs[:15])
