"""`vm -M mm`: crash's !IS_KVADDR check is `mm < PAGE_OFFSET`, the dump's own direct-map base
(page_offset_base), not a fixed 4-level constant. On a 5-level (LA57) dump PAGE_OFFSET is
around 0xff1.../0xff2..., so every slab address there is below 0xffff800000000000; with
KASLR on 4-level it lies above 0xffff888000000000. Checked against crash 9.0.2 on a LA57
dump (page_offset ff3fb45880000000): ff3fb45800000000 invalid, ff3fb45880000000 accepted."""
from __future__ import annotations

import pytest

from vmdex.query.index import DumpIndex
from vmdex.query.conn import connect
from vmdex.query.words import Fatal, parse_vm
from tests.conftest import vmdex

LA57_PAGE_OFFSET = 0xFF3FB45880000000


def test_parse_vm_M_threshold_is_page_offset():
    po = lambda: LA57_PAGE_OFFSET  # noqa: E731
    assert parse_vm(["-M", f"{LA57_PAGE_OFFSET:x}", "1"], po).mm == LA57_PAGE_OFFSET
    with pytest.raises(Fatal, match="invalid mm_struct address: ff3fb45800000000"):
        parse_vm(["-M", "ff3fb45800000000", "1"], po)


def test_parse_vm_M_asks_for_page_offset_only_with_M():
    def boom():
        raise AssertionError("page_offset read without -M")
    parse_vm(["-p", "1"], boom)


def test_vm_M_below_page_offset_on_fixture(oracle_index):
    for kernel, (db, name) in oracle_index.items():
        conn = connect(str(db))
        try:
            po = DumpIndex(conn, name).page_offset
        finally:
            conn.close()
        below, at = f"{po - 0x1000:x}", f"{po:x}"
        p = vmdex("--dump", name, "vm", "-M", below, "1", db=db, merge_stderr=True)
        assert p.stdout == f"vm: invalid mm_struct address: {below}\n".encode(), kernel
        assert p.returncode != 0
        p = vmdex("--dump", name, "vm", "-M", at, "1", db=db, merge_stderr=True)
        assert p.stdout.startswith(b"PID: 1 "), (kernel, p.stdout[:200])
