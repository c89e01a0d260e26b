"""crash 9.0.2's argument rules for `vm` and `foreach ... vm`, recorded on the fixture dumps
by tests/crash_rules/record.py: foreach task-state selectors (task.c task_state_string and
cmd_foreach), selector conflicts and argument errors (cmd_foreach, foreach), crash's hex
number parsing (tools.c htol/htoll/hexadecimal), `-M` on tasks without mm (memory.c
cmd_vm, vm_area_dump, is_valid_mm), task words (task.c str_to_context).

vmdex must print the same bytes, stdout and stderr interleaved, and exit non-zero exactly
when crash printed an error. Commands are split at whitespace, as crash's own tokenizer
splits them, so backslashes and single quotes reach vmdex as they reached crash."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests import fixturedata as F
from tests.conftest import vmdex

HERE = Path(__file__).resolve().parent / "crash_rules"


def cases():
    out = []
    # Recordings belong to one dump: only folders that have one are tested.
    for k in F.kernels():
        tsv = HERE / k / "commands.tsv"
        if not tsv.is_file():
            continue
        for line in tsv.read_text().splitlines()[1:]:
            fname, cmd, status = line.split("\t")[:3]
            out.append((k, fname, cmd, status))
    return out


CASES = cases()


@pytest.mark.parametrize("kernel,fname,cmd,status", CASES,
                         ids=[f"{k[6:]}:{f[:-4]}" for k, f, _, _ in CASES])
def test_crash_rules(oracle_index, kernel, fname, cmd, status):
    db, name = oracle_index[kernel]
    p = vmdex("--dump", name, *cmd.split(), db=db, merge_stderr=True)
    want = (HERE / kernel / fname).read_bytes()
    assert p.stdout.decode(errors="replace") == want.decode(errors="replace")
    if status == "error":
        assert p.returncode != 0, f"crash printed an error, vmdex exited 0: {cmd}"
    else:
        assert p.returncode == 0, f"crash printed no error, vmdex exited {p.returncode}: {cmd}"


def test_state_names_follow_crash():
    """task_state_string() on a 4.14+ kernel, for states the fixtures' tasks do not have."""
    from vmdex.indexer.walk.taskstate import (INVALID, selector_value, state_string,
                                        states_from_names, task_state)

    # task_state_array as 4.14 and later kernels have it
    MODERN = states_from_names(["R (running)", "S (sleeping)", "D (disk sleep)",
                                "T (stopped)", "t (tracing stop)", "X (dead)", "Z (zombie)",
                                "P (parked)", "I (idle)"], "6.1.0")

    cases = {
        (0, 0): "RU", (0x1, 0): "IN", (0x2001, 0): "IN", (0x2, 0): "UN", (0x402, 0): "ID",
        (0x4, 0): "ST", (0x104, 0): "ST", (0x8, 0): "TR", (0x80, 0x20): "ZO",
        (0x80, 0x10): "DE", (0x80, 0): "DE", (0x40, 0): "PA", (0x200, 0): "WA",
        (0x800, 0): "NE", (0x100, 0): "??", (0x1000, 0): "??",
    }
    for (state, exit_state), want in cases.items():
        assert state_string(MODERN, task_state(state, exit_state)) == want, hex(state)
    assert selector_value(MODERN, "SW") == INVALID
    assert selector_value(MODERN, "ID") == 0x402


@pytest.mark.parametrize("kernel", F.kernels())
def test_state_codes_match_crash_ps(oracle_index, kernel):
    """Every task's state, computed from the stored state and exit_state as crash's
    task_state_string() does, is the ST column of crash's `ps` on the same dump."""
    from vmdex.query.conn import connect
    from vmdex.query.index import DumpIndex

    want = {}
    for line in (F.oracle_dir(kernel) / "ps.txt").read_text().splitlines()[1:]:
        f = line.lstrip(">").split()
        want[int(f[3], 16)] = f[4]
    db, name = oracle_index[kernel]
    conn = connect(str(db))
    try:
        idx = DumpIndex(conn, name)
        assert idx.task_states() is not None, idx.release
        got = {t.task: idx.state_code(t) for t in idx.tasks()}
    finally:
        conn.close()
    assert got == want
