"""`vmdex smaps`: the kernel's own /proc/PID/smaps and smaps_rollup, byte for byte.

The spec is what the guest kernel printed just before the dump (console.log `SMAPS` lines,
any fixture folder that has them, tests/smaps_spec.py); the dumps are real, ingested by
the real CLI.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import re

import pytest

from tests import fixturedata as F
from tests import smaps_spec as S
from tests.conftest import vmdex

# Every fixture folder whose console.log carries the kernel's SMAPS lines (any name).
BOOT2 = [k for k in F.kernels() if S.has_smaps(F.kernel_dir(k))]
pytestmark = pytest.mark.skipif(not BOOT2, reason="no fixture folder with SMAPS lines")


def expected(kernel: str) -> dict[tuple[int, str], tuple[str, str]]:
    """(pid, 'rollup'|'full') -> (comm, the text the kernel printed)."""
    return S.expected(F.kernel_dir(kernel) / "console.log")


def _variant(kernel: str) -> str:
    """The makedumpfile dump when there is one (what users have), else the first."""
    vs = F.dump_variants(kernel)
    return "vmcore.mdf-c-d31" if "vmcore.mdf-c-d31" in vs else vs[0]


@pytest.fixture(scope="module")
def smaps_index(tmp_path_factory):
    db = tmp_path_factory.mktemp("smaps") / "vmdex.db"
    names = {}
    for k in BOOT2:
        names[k] = f"{k}/{_variant(k)}"
        vmdex("ingest", "--vmlinux", str(F.vmlinux(k)), "--name", names[k],
              str(F.dump(k, _variant(k))), db=db, check=True)
    return db, names


def _cases(kind: str):
    return [pytest.param(k, pid, id=f"{k}-{pid}") for k in BOOT2
            for (pid, kd) in sorted(expected(k)) if kd == kind]


@pytest.mark.parametrize("kernel,pid", _cases("rollup"))
def test_rollup_identical(smaps_index, kernel, pid):
    db, names = smaps_index
    want = expected(kernel)[(pid, "rollup")][1]
    p = vmdex("--dump", names[kernel], "smaps", "--rollup", str(pid), db=db)
    assert p.stderr.decode() == "" and p.returncode == 0
    got = p.stdout.decode()
    assert got == want, S.diff(want, got)


@pytest.mark.parametrize("kernel,pid", _cases("full"))
def test_full_identical(smaps_index, kernel, pid):
    db, names = smaps_index
    want = expected(kernel)[(pid, "full")][1]
    p = vmdex("--dump", names[kernel], "smaps", str(pid), db=db)
    got = p.stdout.decode()
    assert got == want, S.diff(want, got)
    assert p.stderr.decode() == "" and p.returncode == 0


def _rollup_figures(text: str) -> dict[str, int]:
    """{'Rss': kB, ...} of one smaps_rollup text."""
    out = {}
    for line in text.splitlines()[1:]:
        key, _, rest = line.partition(":")
        out[key] = int(rest.split()[0])
    return out


def _want_all(kernel: str) -> dict[int, tuple]:
    """pid -> (comm, Rss, Pss, USS, Swap, SwapPss) from the kernel's own rollups."""
    out = {}
    for (pid, kind), (comm, text) in expected(kernel).items():
        if kind == "rollup":
            f = _rollup_figures(text)
            out[pid] = (comm, f["Rss"], f["Pss"], f["Private_Clean"] + f["Private_Dirty"],
                        f["Swap"], f["SwapPss"])
    return out


@pytest.mark.parametrize("kernel", BOOT2)
def test_all_table(smaps_index, kernel):
    """`smaps --all`: one row per process, sorted by Pss, the kernel's figures, in every
    format."""
    db, names = smaps_index
    want = _want_all(kernel)
    p = vmdex("--dump", names[kernel], "--format", "json", "smaps", "--all", db=db, check=True)
    rows = json.loads(p.stdout)
    pss = [r["pss_kb"] for r in rows]
    assert pss == sorted(pss, reverse=True)
    got = {r["pid"]: (r["comm"], r["rss_kb"], r["pss_kb"], r["uss_kb"], r["swap_kb"],
                      r["swap_pss_kb"]) for r in rows}
    for pid, w in want.items():
        assert got[pid] == w, pid
    c = vmdex("--dump", names[kernel], "--format", "csv", "smaps", "--all", db=db, check=True)
    crow = list(csv.DictReader(io.StringIO(c.stdout.decode())))
    assert [int(r["pid"]) for r in crow] == [r["pid"] for r in rows]
    t = vmdex("--dump", names[kernel], "smaps", "--all", db=db, check=True).stdout.decode()
    lines = t.splitlines()
    assert lines[0].split()[:3] == ["PID", "COMM", "RSS"]
    assert [int(x.split()[0]) for x in lines[1:]] == [r["pid"] for r in rows]


def test_sql_views_sqlite(smaps_index):
    """The documented cross-dump question is one SELECT on v_smaps_rollup; v_smaps sums to
    the same figures."""
    db, names = smaps_index
    for kernel in BOOT2:
        want = _want_all(kernel)
        p = vmdex("sql", "--format", "json",
                  "SELECT dump, release, pid, comm, rss_kb, pss_kb, uss_kb, swap_kb, "
                  "swap_pss_kb FROM v_smaps_rollup WHERE dump = "
                  f"'{names[kernel]}' ORDER BY pss_kb DESC LIMIT 10", db=db, check=True)
        rows = json.loads(p.stdout)
        assert len(rows) == min(10, len(rows)) and rows
        for r in rows:
            if r["pid"] in want:
                assert (r["comm"], r["rss_kb"], r["pss_kb"], r["uss_kb"], r["swap_kb"],
                        r["swap_pss_kb"]) == want[r["pid"]]
    top = json.loads(vmdex("sql", "--format", "json",
                           "SELECT release, dump, pid, comm, pss_kb FROM v_smaps_rollup "
                           "WHERE release LIKE '6.1.%' ORDER BY pss_kb DESC LIMIT 10",
                           db=db, check=True).stdout)
    assert len(top) == 10 and all(r["release"].startswith("6.1.") for r in top)
    per_vma = json.loads(vmdex("sql", "--format", "json",
                               "SELECT dump, pid, SUM(rss_kb) AS rss FROM v_smaps "
                               "GROUP BY dump, pid", db=db, check=True).stdout)
    for r in per_vma:
        kernel = next(k for k, n in names.items() if n == r["dump"])
        if r["pid"] in _want_all(kernel):
            assert r["rss"] == _want_all(kernel)[r["pid"]][1]


def test_sql_views_postgresql(pg_server_url):
    """The same views on PostgreSQL (SUM of BIGINT is NUMERIC there: still whole kB)."""
    from tests.pg import new_database, new_reader

    url = new_database(pg_server_url, "smaps")
    kernel = BOOT2[0]
    name = f"{kernel}/{_variant(kernel)}"
    vmdex("ingest", "--vmlinux", str(F.vmlinux(kernel)), "--name", name,
          str(F.dump(kernel, _variant(kernel))), db=url, check=True)
    rows = json.loads(vmdex("sql", "--format", "json",
                            "SELECT pid, comm, rss_kb, pss_kb, uss_kb, swap_kb, swap_pss_kb "
                            "FROM v_smaps_rollup ORDER BY pss_kb DESC LIMIT 10",
                            db=new_reader(url), check=True).stdout)
    want = _want_all(kernel)
    assert rows
    for r in rows:
        if r["pid"] in want:
            assert (r["comm"], r["rss_kb"], r["pss_kb"], r["uss_kb"], r["swap_kb"],
                    r["swap_pss_kb"]) == want[r["pid"]]
    p = vmdex("--dump", name, "smaps", "--rollup", str(max(want)), db=url, check=True)
    assert p.stdout.decode() == expected(kernel)[(max(want), "rollup")][1]


def test_bad_words(smaps_index):
    db, names = smaps_index
    name = names[BOOT2[0]]
    p = vmdex("--dump", name, "smaps", db=db)
    assert p.returncode == 2 and p.stderr.decode().count("\n") == 1
    p = vmdex("--dump", name, "smaps", "99999", db=db)
    assert p.returncode == 1 and p.stderr.decode() == "smaps: invalid task or pid value: 99999\n"
    p = vmdex("--dump", name, "smaps", "--all", "1", db=db)
    assert p.returncode == 2 and "Traceback" not in p.stderr.decode()
    # a kernel thread (no mm): its smaps is empty, its smaps_rollup the kernel refuses
    kthread = json.loads(vmdex("sql", "--format", "json",
                               "SELECT t.pid FROM tasks t JOIN dumps d ON d.id = t.dump_id "
                               f"WHERE d.name = '{name}' AND t.mm IS NULL AND t.pid > 0 LIMIT 1",
                               db=db, check=True).stdout)[0]["pid"]
    p = vmdex("--dump", name, "smaps", str(kthread), db=db)
    assert (p.returncode, p.stdout, p.stderr) == (0, b"", b"")
    p = vmdex("--dump", name, "smaps", "--rollup", str(kthread), db=db)
    err = p.stderr.decode()
    assert p.returncode == 1 and p.stdout == b"" and err.count("\n") == 1 and "no mm" in err


@contextlib.contextmanager
def _kernel_of(kernel: str, dump):
    """(physical memory, Arch, Kernel) of a fixture dump read with its vmlinux: where a
    test aims its damage (a struct page's place in the file)."""
    from vmdex.indexer.arch import detect
    from vmdex.indexer.arch.memory import KernelMemory
    from vmdex.indexer.dumpfile import open_dump
    from vmdex.indexer.kernel.types import load_kernel_types
    from vmdex.indexer.kernel.vmcoreinfo import VmcoreInfo
    from vmdex.indexer.walk.kernel import Kernel

    types, symtab = load_kernel_types(F.vmlinux(kernel))
    with open_dump(dump) as phys:
        info = VmcoreInfo.parse(phys.vmcoreinfo)
        arch = detect(phys, info)
        k = Kernel(KernelMemory(phys, arch), types, symtab.address, info.kerneloffset or 0)
        arch.setup(k, info)
        yield phys, arch, k


def test_lost_struct_page(smaps_index, tmp_path):
    """The dump lacks the page of struct pages (mem_map) of a frame pid X maps: its smaps
    figures that depend on it are unknown — printed as `?`, named in one stderr line —
    never a number; `vm` of the same task is unaffected."""
    from tests import damage as D

    from vmdex.indexer.arch.pagewalk import translate

    db, names = smaps_index
    kernel = next((k for k in BOOT2 if _variant(k) != "vmcore.elf"), None)
    if kernel is None:
        pytest.skip("no fixture with SMAPS lines in kdump format")
    pid = min(p for (p, kind) in expected(kernel) if kind == "rollup" and
              expected(kernel)[(p, kind)][0] == "wl_anon")
    rows = json.loads(vmdex("sql", "--format", "json",
                            "SELECT pa_i64 FROM v_pages p JOIN tasks t ON t.dump_id = p.dump_id "
                            f"AND t.mm = p.mm_i64 WHERE t.pid = {pid} AND p.kind = 'present' "
                            f"AND p.dump = '{names[kernel]}' LIMIT 1", db=db, check=True).stdout)
    src = F.dump(kernel, _variant(kernel))
    with _kernel_of(kernel, src) as (phys, arch, k):   # where that frame's struct page lies
        types = k.types
        pfn = rows[0]["pa_i64"] >> arch.page_shift
        page = arch.struct_pages(k) + pfn * types.sizeof("page")
        target = translate(phys, arch, arch.kernel_pgd_pa, page) >> arch.page_shift
    lay = D.kdump_layout(src)
    off = lay.desc_offset(lay.desc_index(target))
    bad = D.patched_copy(src, tmp_path / "lost-mem_map", {off: bytes(8)})
    vmdex("ingest", "--vmlinux", str(F.vmlinux(kernel)), "--name", "lost", str(bad), db=db,
          check=True)
    p = vmdex("--dump", "lost", "smaps", "--rollup", str(pid), db=db)
    out, err = p.stdout.decode(), p.stderr.decode()
    assert p.returncode == 1 and err.count("\n") == 1 and "struct page" in err, err
    assert "Rss:                   ? kB" in out and "Pss:                   ? kB" in out
    assert "Swap:" in out and "SwapPss:" in out     # swap figures do not need struct pages
    good = vmdex("--dump", names[kernel], "vm", str(pid), db=db, check=True).stdout
    assert vmdex("--dump", "lost", "vm", str(pid), db=db, check=True).stdout == good
    vmdex("rm", "lost", db=db, check=True)


def test_documented_example(smaps_index):
    """docs/schema.md's smaps example runs and gives the kernel's own Pss."""
    text = (F.REPO / "docs" / "schema.md").read_text()
    sql = re.search(r"<!-- smaps-example: top_pss -->\s*```sql\n(.*?)```", text, re.S)[1]
    db, names = smaps_index
    rows = json.loads(vmdex("sql", "--format", "json", sql, db=db, check=True).stdout)
    kernel = "linux-6.1.0-56-amd64-boot2"
    if kernel not in names:
        pytest.skip("no 6.1 boot2 fixture")
    want = _want_all(kernel)
    assert len(rows) == 10
    for r in rows:
        if r["dump"] == names[kernel] and r["pid"] in want:
            assert r["pss_kb"] == want[r["pid"]][2]


def test_parallel_walk_same_rows(smaps_index):
    """The smaps rows do not depend on the number of walk workers."""
    import sqlite3

    db, names = smaps_index
    kernel = BOOT2[0]
    for workers in ("1", "2"):
        vmdex("ingest", "--workers", workers, "--vmlinux", str(F.vmlinux(kernel)), "--name",
              f"w{workers}", str(F.dump(kernel, _variant(kernel))), db=db, check=True)
    c = sqlite3.connect(db)
    rows = [c.execute("SELECT s.* FROM vma_smaps s JOIN dumps d ON d.id = s.dump_id "
                      "WHERE d.name = ? ORDER BY mm, vma_seq", (n,)).fetchall()
            for n in ("w1", "w2")]
    c.close()
    assert rows[0] and [r[1:] for r in rows[0]] == [r[1:] for r in rows[1]]
    for n in ("w1", "w2"):
        vmdex("rm", n, db=db, check=True)


def test_hugetlb_in_a_shared_page_table_is_shared(smaps_index, tmp_path):
    """smaps_hugetlb_range counts a hugetlb page as shared when hugetlb_pmd_shared() says
    its page table is shared (page_count of the table page > 1 on 6.1; ptdesc's
    pt_share_count where the kernel has it). A copy of a real dump whose PMD table under
    wl_huge's hugetlb VMA has one more reference: the same figures move from
    Private_Hugetlb to Shared_Hugetlb, and nothing else changes."""
    import struct
    import zlib

    from tests import damage as D
    from vmdex.indexer.arch.pagewalk import translate

    db, names = smaps_index
    kernel = next((k for k in BOOT2 if _variant(k) != "vmcore.elf"), None)
    if kernel is None:
        pytest.skip("no fixture with SMAPS lines in kdump format")
    exp = expected(kernel)
    pid = next(p for (p, kind), (comm, _) in exp.items() if comm == "wl_huge")
    full = exp[(pid, "full")][1]
    start = next(int(line.split("-")[0], 16) for line in full.splitlines()
                 if "anon_hugepage" in line)
    pgd = json.loads(vmdex("sql", "--format", "json",
                           "SELECT m.pgd FROM mms m JOIN tasks t ON t.dump_id = m.dump_id "
                           "AND t.mm = m.mm JOIN dumps d ON d.id = m.dump_id WHERE "
                           f"t.pid = {pid} AND d.name = '{names[kernel]}'", db=db,
                           check=True).stdout)[0]["pgd"] & (2 ** 64 - 1)
    src = F.dump(kernel, _variant(kernel))
    with _kernel_of(kernel, src) as (phys, arch, k):
        types = k.types
        table = arch.user_root(pgd)      # down to the table that holds the huge leaf
        for depth, shift in enumerate(arch.shifts):
            e = arch.entries_of(phys.read(table + 8 * ((start >> shift) % arch.entries), 8))
            huge, down = arch.classify(e, len(arch.shifts) - depth)
            if huge[0]:
                break
            table = int(arch.table_pa(e)[0])
        assert huge[0], "wl_huge's hugetlb page is not a huge leaf"
        page = arch.struct_pages(k) + (table >> arch.page_shift) * types.sizeof("page")
        refcount = translate(phys, arch, arch.kernel_pgd_pa, page) + \
            types.offsetof("page", "_refcount")
    raw = src.read_bytes()
    lay = D.kdump_layout_of(raw)
    idx = lay.desc_index(refcount >> 12)
    off, size, flags, pf = lay.desc(raw, idx)
    data = bytearray(zlib.decompress(raw[off:off + size]) if flags & 1 else raw[off:off + size])
    at = refcount & 0xFFF
    assert struct.unpack_from("<i", data, at)[0] == 1      # a table page nothing shares
    struct.pack_into("<i", data, at, 2)
    bad = D.patched_copy(src, tmp_path / "shared-table", {
        lay.desc_offset(idx): struct.pack("<qIIQ", lay.size, 4096, 0, pf),
        lay.size: bytes(data)})
    vmdex("ingest", "--vmlinux", str(F.vmlinux(kernel)), "--name", "shared-table", str(bad),
          db=db, check=True)
    for kind, args in (("full", []), ("rollup", ["--rollup"])):
        # the hugetlb VMA's lines (and the rollup's): the same size, now shared
        want, n = re.subn(r"Shared_Hugetlb: +0 kB\nPrivate_Hugetlb: +([1-9]\d*) kB",
                          lambda m: f"Shared_Hugetlb:{m[1]:>9} kB\nPrivate_Hugetlb:{0:>8} kB",
                          exp[(pid, kind)][1])
        assert n == 1, kind
        p = vmdex("--dump", "shared-table", "smaps", *args, str(pid), db=db)
        assert p.returncode == 0 and p.stdout.decode() == want, S.diff(want, p.stdout.decode())
    vmdex("rm", "shared-table", db=db, check=True)


def test_console_line_cut_by_a_kernel_message_is_rejoined():
    """A kernel warning written into the middle of an SMAPS line (seen on trixie-rt under
    TCG: "irq 4: nobody cared") does not lose the line: its two halves are joined."""
    lines = ["SMAPS 180 wl_manyvma full: Shared_Clean:          0 kB",
             "SMAPS 180 wl_man[   18.756952] CPU: 1 UID: 0 PID: 150 Comm: irq/4-ttyS0",
             "[   18.757214] Hardware name: QEMU Standard PC",
             "[   18.767819] Disabling IRQ #4",
             "yvma full: Shared_Dirty:          0 kB",
             "SMAPS 180 wl_manyvma full: Private_Clean:         0 kB"]
    assert S._rejoined(lines) == [lines[0], "SMAPS 180 wl_manyvma full: Shared_Dirty:"
                                  "          0 kB", lines[5]]
