"""Kernels that ../shared/fixtures does not hold, built fresh by the kernel matrix
(tests/kernels/matrix.py: make-dumps.sh, QEMU, the Debian archive, crash 9.0.2 from a sid
chroot) and checked like a fixture: every dump format against the whole crash oracle, and
questions from the generator asked of live crash and of vmdex.

The rows are $VMDEX_MATRIX_ROWS (comma-separated names of tests/kernels/kernels.tsv),
default CI_ROWS: sid's current kernel, so a new sid kernel is tested the day it appears.
A built folder is kept in ~/.cache/vmdex-matrix and rebuilt only when the kernel changes.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest

from tests.generate.replay import dump_sets
from tests.kernels import matrix as M

# x86_64 sid, one arm64 guest, and one real-system row (the guest's own kdump after a panic,
# files on ext4: ELF copy, filtered ELF, compressed, --split set)
CI_ROWS = "sid-cloud,arm64-bookworm-cloud,bookworm-kdump-ext4"
LIVE_QUESTIONS = 400

ROWS = {r.name: r for r in M.read_rows()}
WANTED = [n for n in os.environ.get("VMDEX_MATRIX_ROWS", CI_ROWS).split(",") if n]


def _formats(row: M.Row) -> list[str]:
    opts = row.options
    fmts = shlex.split(opts[opts.index("--formats") + 1]) if "--formats" in opts else \
        ["elf", "kdump-zlib", "mdf-c-d31"]
    return [f"vmcore.{f}" for f in fmts]     # a --split set is named vmcore.kdump-split


CASES = [(n, v) for n in WANTED for v in _formats(ROWS[n])]


@pytest.fixture(scope="session")
def built():
    """Build (or reuse) each wanted row's dump folder: {name: error text or ''}."""
    return {n: M.build(ROWS[n], sys.stderr) for n in WANTED}


@pytest.fixture(scope="session")
def matrix_index(built, tmp_path_factory):
    """One SQLite index per row, each dump of the folder ingested under its file name."""
    out = {}
    for n in WANTED:
        if built[n]:
            continue
        db = tmp_path_factory.mktemp("matrix") / f"{n}.db"
        folder = ROWS[n].folder
        for name, files in dump_sets(list(folder.glob("vmcore.*"))):
            subprocess.run([M.VMDEX, "--db", str(db), "ingest", "--vmlinux",
                            str(folder / "vmlinux"), "--name", name, *map(str, files)],
                           check=True, capture_output=True)
        out[n] = db
    return out


def test_rows_are_in_the_matrix():
    assert WANTED and all(n in ROWS for n in WANTED), (WANTED, sorted(ROWS))


def test_doc_table_keeps_rows_a_run_did_not_check():
    head = "| name | kernel |\n|---|---|\n"
    old = head + "| a | 6.1 |\n| b | 6.12 |\n| c | 7.2 |\n"
    new = head + "| b | 6.12.9 |\n| d | 7.3 |\n"
    assert M.merge_tables(old, new) == head + "| a | 6.1 |\n| b | 6.12.9 |\n| c | 7.2 |\n| d | 7.3 |\n"


@pytest.mark.parametrize("row,variant", CASES, ids=[f"{n}:{v}" for n, v in CASES])
def test_matrix_dump_matches_crash_oracle(built, matrix_index, row, variant):
    assert not built[row], f"{row}: could not build the dump: {built[row]}"
    folder = ROWS[row].folder
    names = [name for name, _ in dump_sets(list(folder.glob("vmcore.*")))]
    assert variant in names, f"{row}: make-dumps.sh wrote no {variant} ({names})"
    diffs: list[str] = []
    same, asked = M.compare_oracle(folder, matrix_index[row], variant, diffs)
    assert asked >= 80 and same == asked, f"{row}/{variant}: {asked - same} differ: {diffs[:10]}"


@pytest.mark.parametrize("row", WANTED)
def test_matrix_generated_questions_live(built, matrix_index, row, tmp_path):
    """Fresh questions (seeded by the kernel release) asked of live crash and of vmdex."""
    from tests.generate import __main__ as G
    from tests.generate import replay

    assert not built[row], built[row]
    folder = ROWS[row].folder
    seed = sum(M.release_of(folder).encode())
    answers = G.record(folder, seed, LIVE_QUESTIONS, tmp_path / "answers.jsonl.gz")
    rows = replay.load_answers(answers)
    for name, _ in dump_sets(list(folder.glob("vmcore.*"))):     # every variant
        diffs: list[str] = []
        per = replay.compare(rows, str(matrix_index[row]), name, diffs)
        bad = {f: v for f, v in per.items() if v[0] != v[1]}
        assert not bad, f"{row}/{name}: {bad}\n" + "\n".join(diffs[:15])


@pytest.mark.parametrize("row", WANTED)
def test_matrix_sys_is_crash(built, row, tmp_path):
    """`sys` of the dump crash's oracle was made from, ingested under the names crash was
    given, against oracle/sys.txt."""
    assert not built[row], built[row]
    diffs: list[str] = []
    assert M.compare_sys(ROWS[row].folder, tmp_path / "sys.db", diffs) == 1, diffs


@pytest.mark.parametrize("row", WANTED)
def test_matrix_smaps_is_the_kernels(built, matrix_index, row):
    """`vmdex smaps` of every process the guest printed smaps for (console.log SMAPS lines,
    read by the kernel just before the dump), line for line."""
    assert not built[row], built[row]
    folder = ROWS[row].folder
    diffs: list[str] = []
    got = M.compare_smaps(folder, matrix_index[row], diffs)
    assert got is not None, f"{row}: the guest printed no SMAPS lines (make-dumps.sh too old?)"
    same, total = got
    assert total > 1000 and same == total, f"{row}: {total - same} of {total} differ: {diffs[:5]}"
