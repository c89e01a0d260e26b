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

# x86_64 sid; arm64 6.12 with 16 KiB pages (read from the dump alone too); one real-system
# row (the guest's own kdump after a panic, files on ext4: ELF copy, filtered ELF,
# compressed, --split set). Every row runs both ways (vmlinux, dump alone). arm64 6.1
# (4 KiB pages, refused without a vmlinux) is checked by the full matrix run (docs).
CI_ROWS = "sid-cloud,arm64-trixie-16k,bookworm-kdump-ext4"
LIVE_QUESTIONS = 300
# where the kernel's types and symbols come from: its vmlinux, or the dump alone
SOURCES = ("vmlinux", "dump")

ROWS = {r.name: r for r in M.read_rows()}
WANTED = [n for n in os.environ.get("VMDEX_MATRIX_ROWS", CI_ROWS).split(",") if n]


def _formats(row: M.Row) -> list[str]:
    opts = row.options
    fmts = shlex.split(opts[opts.index("--formats") + 1]) if "--formats" in opts else \
        ["elf", "kdump-zlib", "mdf-c-d31"]
    return [f"vmcore.{f}" for f in fmts]     # a --split set is named vmcore.kdump-split


CASES = [(n, v, src) for n in WANTED for v in _formats(ROWS[n]) for src in SOURCES]
BY_SOURCE = [(n, src) for n in WANTED for src in SOURCES]


@pytest.fixture(scope="session")
def built():
    """Build (or reuse) each wanted row's dump folder: {name: error text or ''}."""
    return {n: M.build(ROWS[n], sys.stderr) for n in WANTED}


@pytest.fixture(scope="session")
def matrix_index(built, tmp_path_factory):
    """{(row, source): SQLite index} with every dump of the row's folder ingested under its
    file name, the kernel read from the vmlinux or from the dump alone; for a kernel the
    dump alone cannot give, the one-line refusal (text) instead of an index."""
    out = {}
    for n in WANTED:
        if built[n]:
            continue
        folder = ROWS[n].folder
        db = tmp_path_factory.mktemp("matrix") / f"{n}.db"
        for name, files in dump_sets(list(folder.glob("vmcore.*"))):
            subprocess.run([M.VMDEX, "--db", str(db), "ingest", "--vmlinux",
                            str(folder / "vmlinux"), "--name", name, *map(str, files)],
                           check=True, capture_output=True)
        out[(n, "vmlinux")] = db
        btf = tmp_path_factory.mktemp("matrix") / f"{n}-btf.db"
        refusal = M.ingest_without_vmlinux(folder, btf)
        out[(n, "dump")] = refusal or btf
    return out


def _index(matrix_index, row: str, source: str):
    got = matrix_index[(row, source)]
    if isinstance(got, str):     # checked by test_matrix_without_vmlinux_refused_as_config_says
        pytest.skip(f"{row}: its kernel is refused without a vmlinux: {got}")
    return got


def test_rows_are_in_the_matrix():
    assert WANTED and all(n in ROWS for n in WANTED), (WANTED, sorted(ROWS))


def test_doc_table_keeps_rows_a_run_did_not_check():
    head = "| name | kernel |\n|---|---|\n"
    old = head + "| a | 6.1 |\n| b | 6.12 |\n| c | 7.2 |\n"
    new = head + "| b | 6.12.9 |\n| d | 7.3 |\n"
    assert M.merge_tables(old, new) == head + "| a | 6.1 |\n| b | 6.12.9 |\n| c | 7.2 |\n| d | 7.3 |\n"


@pytest.mark.parametrize("row,variant,source", CASES, ids=[f"{n}:{v}:{s}" for n, v, s in CASES])
def test_matrix_dump_matches_crash_oracle(built, matrix_index, row, variant, source):
    assert not built[row], f"{row}: could not build the dump: {built[row]}"
    folder = ROWS[row].folder
    names = [name for name, _ in dump_sets(list(folder.glob("vmcore.*")))]
    assert variant in names, f"{row}: make-dumps.sh wrote no {variant} ({names})"
    diffs: list[str] = []
    db = _index(matrix_index, row, source)
    same, asked = M.compare_oracle(folder, db, variant, diffs)
    assert asked >= 80 and same == asked, f"{row}/{variant}: {asked - same} differ: {diffs[:10]}"


@pytest.mark.parametrize("row", WANTED)
def test_matrix_without_vmlinux_refused_as_config_says(built, matrix_index, row):
    """From the dump alone: read when the kernel has BTF and kallsyms with data symbols
    (its build config says so), else refused in one line naming what it lacks."""
    assert not built[row], built[row]
    want = M.expected_refusal(ROWS[row].folder)
    assert want != "?", f"{row}: the kernel's config is not in the fixture cache"
    got = matrix_index[(row, "dump")]
    if want is None:
        assert not isinstance(got, str), f"{row}: refused though it has BTF and KALLSYMS_ALL: {got}"
    else:
        assert isinstance(got, str) and want in got and "\n" not in got, (want, got)


_ANSWERS: dict = {}


def _live_answers(row: str, tmp_path_factory):
    """Fresh questions (seeded by the kernel release) asked once of live crash per row."""
    from tests.generate import __main__ as G
    from tests.generate import replay

    if row not in _ANSWERS:
        folder = ROWS[row].folder
        seed = sum(M.release_of(folder).encode())
        path = G.record(folder, seed, LIVE_QUESTIONS,
                        tmp_path_factory.mktemp("answers") / "answers.jsonl.gz")
        _ANSWERS[row] = replay.load_answers(path)
    return _ANSWERS[row]


@pytest.mark.parametrize("row,source", BY_SOURCE, ids=[f"{n}:{s}" for n, s in BY_SOURCE])
def test_matrix_generated_questions_live(built, matrix_index, row, source, tmp_path_factory):
    """The live questions, answered by vmdex on every variant of the row."""
    from tests.generate import replay

    assert not built[row], built[row]
    db = _index(matrix_index, row, source)
    rows = _live_answers(row, tmp_path_factory)
    for name, _ in dump_sets(list(ROWS[row].folder.glob("vmcore.*"))):     # every variant
        diffs: list[str] = []
        per = replay.compare(rows, str(db), name, diffs)
        bad = {f: v for f, v in per.items() if v[0] != v[1]}
        assert not bad, f"{row}/{name}: {bad}\n" + "\n".join(diffs[:15])


@pytest.mark.parametrize("row", WANTED)
def test_matrix_sys_is_crash(built, row, tmp_path):
    """`sys` of the dump crash's oracle was made from, ingested under the names crash was
    given, against oracle/sys.txt."""
    assert not built[row], built[row]
    diffs: list[str] = []
    assert M.compare_sys(ROWS[row].folder, tmp_path / "sys.db", diffs) == 1, diffs


@pytest.mark.parametrize("row,source", BY_SOURCE, ids=[f"{n}:{s}" for n, s in BY_SOURCE])
def test_matrix_smaps_is_the_kernels(built, matrix_index, row, source):
    """`vmdex smaps` of every process the guest printed smaps for (console.log SMAPS lines,
    read by the kernel just before the dump), line for line."""
    assert not built[row], built[row]
    folder = ROWS[row].folder
    diffs: list[str] = []
    got = M.compare_smaps(folder, _index(matrix_index, row, source), diffs)
    assert got is not None, f"{row}: the guest printed no SMAPS lines (make-dumps.sh too old?)"
    same, total = got
    assert total > 1000 and same == total, f"{row}: {total - same} of {total} differ: {diffs[:5]}"
