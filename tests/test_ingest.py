"""The index holds the truth: checked row by row against what crash printed on each fixture.

These tests read the index with plain SQL (not through vmdex's query code), so a bug in the
ingest cannot be hidden by a matching bug in the renderer.
"""
from __future__ import annotations

import gzip
import re
import shutil
import sqlite3
import subprocess

import pytest

from tests import fixturedata as F
from tests.conftest import ingest, make_kernel_row_old, primary_variant, vmdex

U64 = (1 << 64) - 1
KERNELS = F.kernels()


def rows(db, sql, *params):
    with sqlite3.connect(db) as c:
        return c.execute(sql, params).fetchall()


def dump_id(db, name):
    return rows(db, "SELECT id FROM dumps WHERE name = ?", name)[0][0]


# --- tasks ---------------------------------------------------------------------------------
PS_LINE = re.compile(r"^(>?)\s*(\d+)\s+(\d+)\s+(\d+)\s+([0-9a-f]+)\s+(\S\S)\s+\S+\s+(\d+)\s+(\d+)\s+(.*)$")


@pytest.mark.parametrize("kernel", KERNELS)
def test_task_list_matches_ps(oracle_index, kernel):
    db, name = oracle_index[kernel]
    want = []
    for line in (F.oracle_dir(kernel) / "ps.txt").read_text().splitlines()[1:]:
        m = PS_LINE.match(line)
        assert m, line
        active, pid, ppid, cpu, task, st, vsz, rss, comm = m.groups()
        want.append((pid, ppid, cpu, task, st, comm, active == ">", int(vsz), int(rss)))
    got = []
    for pid, ppid, cpu, task, st, comm, mm, active, rss_pages, total_vm in rows(
            db, "SELECT t.pid, t.ppid, t.cpu, t.task, t.st, t.comm, t.mm, t.is_active, "
                "t.rss_pages, coalesce(m.total_vm, 0) FROM tasks t LEFT JOIN mms m "
                "ON m.dump_id = t.dump_id AND m.mm = t.mm WHERE t.dump_id = ? ORDER BY t.seq",
            dump_id(db, name)):
        shown = comm if mm else f"[{comm}]"   # crash brackets tasks without an mm
        got.append((str(pid), str(ppid), str(cpu), f"{task & U64:x}", st, shown, bool(active),
                    total_vm * 4, rss_pages * 4))
    assert got == want


# --- MM and VMA lines ----------------------------------------------------------------------
def vm_blocks(text: str):
    """(pid, task, mm, pgd, rss_kb, tvm_kb, [vma lines]) per task block of `vm` output."""
    out = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"PID: (\d+)\s+TASK: ([0-9a-f]+)", line)
        if not m or i + 2 >= len(lines) or not lines[i + 1].lstrip().startswith("MM"):
            continue
        mm, pgd, rss, tvm = lines[i + 2].split()
        vmas = []
        for v in lines[i + 4:]:
            f = v.split(maxsplit=4)
            if len(f) < 4 or not re.fullmatch(r"[0-9a-f]{16}", f[0]):
                break
            vmas.append((int(f[0], 16), int(f[1], 16), int(f[2], 16), int(f[3], 16),
                         f[4] if len(f) > 4 else None))
        out.append((int(m.group(1)), int(m.group(2), 16), int(mm, 16), int(pgd, 16),
                    int(rss[:-1]), int(tvm[:-1]), vmas))
    return out


@pytest.mark.parametrize("kernel", KERNELS)
def test_mm_and_vma_rows_match_vm_output(oracle_index, kernel):
    db, name = oracle_index[kernel]
    did = dump_id(db, name)
    files = ["foreach-vm.txt"] + [f for f, cmd, _ in F.oracle_commands(kernel)
                                  if re.fullmatch(r"vm( \d+)?", cmd)]
    checked = 0
    for fname in files:
        for pid, task, mm, pgd, rss_kb, tvm_kb, vmas in vm_blocks(
                (F.oracle_dir(kernel) / fname).read_text()):
            (t_mm, t_rss), = rows(db, "SELECT mm, rss_pages FROM tasks WHERE dump_id = ? AND "
                                      "task = ?", did, task - (1 << 64) if task >> 63 else task)
            if mm == 0:
                assert t_mm is None and not vmas
                continue
            assert t_mm & U64 == mm
            (m_pgd, m_tvm), = rows(db, "SELECT pgd, total_vm FROM mms WHERE dump_id = ? AND "
                                       "mm = ?", did, t_mm)
            assert (m_pgd & U64, t_rss * 4, m_tvm * 4) == (pgd, rss_kb, tvm_kb), (fname, pid)
            got = [(v & U64, s & U64, e & U64, f & U64, p or None) for v, s, e, f, p in rows(
                db, "SELECT vma, vm_start, vm_end, vm_flags, file_path FROM vmas WHERE "
                    "dump_id = ? AND mm = ? ORDER BY seq", did, t_mm)]
            assert got == vmas, (fname, pid)
            checked += 1
    assert checked >= 10


# --- every page of every task --------------------------------------------------------------
def oracle_pages(kernel):
    """{task addr: {va: ('P', pa) | ('S', dev, offset)}} from foreach vm -p."""
    pages: dict[int, dict] = {}
    cur = None
    with gzip.open(F.oracle_dir(kernel) / "foreach-vm-p.txt.gz", "rt") as fh:
        for line in fh:
            if line.startswith("PID:"):
                cur = pages.setdefault(int(line.split("TASK: ")[1].split()[0], 16), {})
                continue
            parts = line.split()
            if len(parts) == 2 and re.fullmatch(r"[0-9a-f]+", parts[0]) and \
                    re.fullmatch(r"[0-9a-f]+", parts[1]) and len(parts[0]) < 16:
                cur[int(parts[0], 16)] = ("P", int(parts[1], 16))
            elif len(parts) >= 5 and parts[1] == "SWAP:":
                cur[int(parts[0], 16)] = ("S", parts[2], int(parts[4]))
    return pages


def index_pages(db, name):
    did = dump_id(db, name)
    dev = dict(rows(db, "SELECT type, path FROM swap_devices WHERE dump_id = ?", did))
    by_mm: dict[int, dict] = {}
    for mm, va, n, kind, pa, st, so in rows(
            db, "SELECT mm, va, npages, kind, pa, swap_type, swap_offset FROM page_runs "
                "WHERE dump_id = ?", did):
        d = by_mm.setdefault(mm & U64, {})
        for i in range(n):
            d[(va & U64) + 4096 * i] = ("P", (pa & U64) + 4096 * i) if kind == 0 else \
                ("S", dev.get(st, "(unknown swap location)"), so + i)
    return by_mm


@pytest.mark.parametrize("kernel", KERNELS)
def test_every_page_of_foreach_vm_p_is_indexed(oracle_index, kernel):
    db, name = oracle_index[kernel]
    want = oracle_pages(kernel)
    got_by_mm = index_pages(db, name)
    task_mm = {t & U64: (m or 0) & U64 for t, m in rows(
        db, "SELECT task, mm FROM tasks WHERE dump_id = ?", dump_id(db, name))}
    total = 0
    for task, pages in want.items():
        got = got_by_mm.get(task_mm[task], {})
        assert got == pages, f"task {task:x}: index and crash disagree"
        total += len(pages)
    assert total > 10000
    # Nothing in the index that crash does not show: every mm's entries were compared.
    shown_mms = {task_mm[t] for t in want if task_mm[t]}
    assert shown_mms == {mm for mm, d in got_by_mm.items() if d}


# --- every dump format ---------------------------------------------------------------------
def content(db, name):
    did = dump_id(db, name)
    return [rows(db, f"SELECT {cols} FROM {table} WHERE dump_id = ? ORDER BY {order}", did)
            for table, cols, order in (
                ("tasks", "seq, task, pid, tgid, cpu, comm, st, mm, rss_pages", "seq"),
                ("mms", "mm, pgd, total_vm, map_count, raw", "mm"),
                ("vmas", "mm, seq, vma, vm_start, vm_end, vm_flags, vm_pgoff, file_path, raw",
                 "mm, seq"),
                ("page_runs", "mm, vma_seq, va, npages, level, kind, pa, swap_type, swap_offset",
                 "mm, va"),
                ("swap_devices", "type, path", "type"))]


VARIANTS = [(k, v) for k in KERNELS for v in F.dump_variants(k) if v != primary_variant(k)]


@pytest.mark.parametrize("kernel,variant", VARIANTS, ids=[f"{k[6:]}:{v}" for k, v in VARIANTS])
def test_every_dump_format_gives_the_same_index(oracle_index, kernel, variant):
    """ELF, flattened kdump, and makedumpfile's zlib/lzo/snappy/zstd hold the same memory."""
    db, primary = oracle_index[kernel]
    name = ingest(db, kernel, variant)
    (errors,), = rows(db, "SELECT error_count FROM dumps WHERE name = ?", name)
    assert errors == 0
    assert content(db, name) == content(db, primary)


# --- the kernel cache ----------------------------------------------------------------------
def test_second_dump_of_a_kernel_reads_no_dwarf(tmp_path):
    """Layouts are cached by build id: a vmlinux stripped of DWARF still ingests a second dump."""
    kernel = KERNELS[-1]
    objcopy = shutil.which("objcopy")
    assert objcopy, "binutils (objcopy) is needed for this test"
    db = tmp_path / "i.db"
    ingest(db, kernel, primary_variant(kernel), name="first")
    stripped = tmp_path / "vmlinux.nodwarf"
    subprocess.run([objcopy, "--strip-debug", str(F.vmlinux(kernel)), str(stripped)], check=True)
    p = vmdex("ingest", "--vmlinux", str(stripped), "--name", "second",
              str(F.dump(kernel, primary_variant(kernel))), db=db)
    assert p.returncode == 0, p.stderr
    assert content(db, "second") == content(db, "first")
    # Without the cache the same stripped file is refused with a clear one-line message.
    p = vmdex("ingest", "--vmlinux", str(stripped), str(F.dump(kernel, primary_variant(kernel))),
              db=tmp_path / "fresh.db")
    assert p.returncode != 0
    err = p.stderr.decode()
    assert err.count("\n") == 1 and "Traceback" not in err and "debug info" in err, err


NEW_INDEX_PROBE = """
import os, sys
import vmdex.indexer.ingest as ingest
from vmdex.query.main import main
walk, db = ingest.walk_dump, sys.argv[1]
def watched(*a, **k):
    print("at the walk:", "sqlalchemy" in sys.modules, os.path.exists(db), file=sys.stderr)
    return walk(*a, **k)
ingest.walk_dump = watched
sys.argv[1:2] = ["--db", db]
main()
"""


@pytest.mark.parametrize("existing", [False, True])
def test_new_index_is_made_after_the_walk_starts(tmp_path, existing):
    """A new SQLite index holds nothing to read before the walk: SQLAlchemy's import and the
    file wait until the walk is under way (the workers are not delayed by them); an index
    that exists is opened first (its kernel row may spare the vmlinux). Either way the
    same dump is stored, with every index the schema declares."""
    import sys

    kernel = KERNELS[-1]
    db = tmp_path / "i.db"
    ref = db if existing else tmp_path / "ref.db"
    ingest(ref, kernel, primary_variant(kernel), name="first")
    p = subprocess.run([sys.executable, "-c", NEW_INDEX_PROBE, str(db), "ingest", "--vmlinux",
                        str(F.vmlinux(kernel)), "--name", "probe",
                        str(F.dump(kernel, primary_variant(kernel)))],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    seen = f"at the walk: {existing} {existing}"
    assert seen in p.stderr.splitlines(), p.stderr
    assert content(db, "probe") == content(ref, "first")
    # the first dump's page_runs indexes are built after its runs (store): all are there
    from vmdex.indexer.schema import metadata
    declared = sorted(ix.name for t in metadata.tables.values() for ix in t.indexes)
    assert sorted(r[0] for r in rows(db, "SELECT name FROM sqlite_master WHERE type = "
                                         "'index' AND sql IS NOT NULL")) == declared


def test_kernel_cached_by_an_older_vmdex_is_read_again(tmp_path):
    """A kernels row cached before vmdex asked DWARF for more (here: without the smaps
    structs and the digest of what was asked) is read again from the vmlinux given with the
    next dump of that kernel, so that dump gets every figure; vm answers are unchanged."""
    import json

    kernel = "linux-6.1.0-56-amd64"
    variants = [v for v in F.dump_variants(kernel) if v != primary_variant(kernel)]
    db = tmp_path / "old.db"
    first = ingest(db, kernel, primary_variant(kernel))
    make_kernel_row_old(db)
    second = ingest(db, kernel, variants[0])
    con = sqlite3.connect(db)
    assert "wanted" in json.loads(con.execute("SELECT types_json FROM kernels").fetchone()[0])
    errors = [r[0] for r in con.execute(
        "SELECT message FROM ingest_errors e JOIN dumps d ON d.id = e.dump_id WHERE d.name = ?",
        (second,))]
    con.close()
    assert not [e for e in errors if e.startswith("smaps")], errors
    p = vmdex("--dump", second, "smaps", "--rollup", "1", db=db)
    assert p.returncode == 0 and b"Pss:" in p.stdout, p.stderr
    assert vmdex("--dump", second, "vm", "1", db=db, check=True).stdout == \
        vmdex("--dump", first, "vm", "1", db=db, check=True).stdout
