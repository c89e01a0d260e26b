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
    # Recordings belong to one dump: they exist for some fixture folders, not for every one
    # (a new boot of a kernel has new pids and addresses and needs its own recording).
    for k in F.kernels():
        tsv = HERE / k / "commands.tsv"
        if not tsv.is_file():
            continue
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


@pytest.mark.parametrize("how", ["excluded", "past-eof", "corrupt"])
def test_lost_page_table_page_as_crash_reports_it(tmp_path, how):
    """The 6.1 mdf-c-d31 dump with the PTE page under wl_filemap's blob.bin mapping lost
    (excluded by the filter, its data past the end of the file, or its zlib data corrupt),
    built by tests/test_bad_input.py's patch helpers. Recorded with crash 9.0.2:
    `!echo @@@@ vmp`, `vm -p <filemap>`, `!echo @@@@ fR`, `foreach vm -R <phys_file>`,
    `!echo @@@@ END` on each damaged copy."""
    import json
    import sqlite3

    from tests import damage as D
    from tests.conftest import ingest
    from tests.test_bad_input import _lose_page, _table_path

    kernel = "linux-6.1.0-56-amd64"
    cases = json.loads((F.oracle_dir(kernel) / "cases.json").read_text())
    pid = cases["roles"]["filemap"]
    src = F.dump(kernel, "vmcore.mdf-c-d31")
    raw = src.read_bytes()
    layout = D.kdump_layout_of(raw)
    good = tmp_path / "good.db"
    ingest(good, kernel, "vmcore.mdf-c-d31", name="good")
    with sqlite3.connect(good) as con:
        pgd, page_offset = con.execute(
            "SELECT m.pgd, d.page_offset FROM tasks t JOIN mms m ON m.dump_id = t.dump_id "
            "AND m.mm = t.mm JOIN dumps d ON d.id = t.dump_id WHERE t.pid = ?", (pid,)).fetchone()
    pte = _table_path(raw, layout, (pgd - page_offset) % 2**64,
                      int(cases["blob_vma"]["start"], 16))[3]
    bad = D.patched_copy(src, tmp_path / how, _lose_page(raw, layout, pte >> 12, how))
    db = tmp_path / "bad.db"
    vmdex("ingest", "--vmlinux", str(F.vmlinux(kernel)), str(bad), db=db, check=True)
    got = b"@@@@ vmp\n" + vmdex("vm", "-p", str(pid), db=db, merge_stderr=True).stdout
    got += b"@@@@ fR\n" + vmdex("foreach", "vm", "-R", cases["phys_file"], db=db,
                                merge_stderr=True).stdout + b"@@@@ END\n"
    assert got == (HERE / "lost-pte" / f"{how}.txt").read_bytes()
