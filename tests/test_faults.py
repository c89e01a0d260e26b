"""Corrupted kernel structures and killed ingests: bounded, recorded, nothing lost.

Kernel structures are corrupted in copies of real dumps: an ELF core is uncompressed, so a
kernel object is patched at the file offset of its physical address. 6.1 has an ELF
fixture (maple-tree VMAs); for 5.10 (VMA list) an ELF core is built at test time from the
kdump fixture's pages. Every corruption must leave the ingest finishing quickly, with the
damage recorded for the task(s) it touches, and every other task answering byte for byte
as on the undamaged dump.

The kill tests SIGKILL `vmdex ingest` at many points, including while its one write
transaction is in flight, and check that the index opens, holds no trace of the killed
dump (or all of it, when the kill came after the commit), and that every earlier dump
answers exactly as before.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import struct
import subprocess
import time

import pytest

from tests import damage as D
from tests import fixturedata as fd

K61 = "linux-6.1.0-56-amd64"
K510 = "linux-5.10.0-32-cloud-amd64"
START_KERNEL_MAP = 0xFFFFFFFF80000000
U64 = (1 << 64) - 1


def roles(kernel: str) -> dict:
    return json.loads((fd.oracle_dir(kernel) / "cases.json").read_text())


class Kmem:
    """Kernel memory of an ELF dump file, by kernel virtual address, for reading and
    patching; layouts and symbols come from the index's kernel cache, the translation
    constants from the dump's row (as the ingest found them)."""

    def __init__(self, path, db, name: str):
        from vmdex.indexer.kernel.symtab import Symtab
        from vmdex.indexer.kernel.types import KernelTypes

        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        row = con.execute(
            "SELECT d.page_offset, d.phys_base, d.kaslr_offset, k.types_json, k.symtab "
            "FROM dumps d JOIN kernels k ON k.id = d.kernel_id WHERE d.name = ?",
            (name,)).fetchone()
        con.close()
        self.page_offset, self.phys_base, self.kaslr = row[0] & U64, row[1], row[2] & U64
        self.types = KernelTypes.from_json(row[3])
        self.symtab = Symtab.from_bytes(bytes(row[4]))
        self.path = path
        self.layout = D.elf_layout(path)
        self.undo: list[dict[int, bytes]] = []

    def off(self, struct_: str, member: str) -> int:
        o = self.types.offsetof(struct_, member)
        assert o is not None, (struct_, member)
        return o

    def sym(self, name: str) -> int:
        return self.symtab.address(name) + self.kaslr

    def pa(self, va: int) -> int:
        if va >= START_KERNEL_MAP:
            return (va - START_KERNEL_MAP + self.phys_base) & U64
        return va - self.page_offset

    def file_offset(self, pa: int) -> int:
        o = self.layout.file_offset(pa)
        assert o is not None, hex(pa)
        return o

    def read_pa(self, pa: int, n: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(self.file_offset(pa))
            return f.read(n)

    def u64(self, va: int) -> int:
        return struct.unpack("<Q", self.read_pa(self.pa(va), 8))[0]

    def u64_pa(self, pa: int) -> int:
        return struct.unpack("<Q", self.read_pa(pa, 8))[0]

    def poke(self, va: int, value: int) -> None:
        self.poke_pa(self.pa(va), value)

    def poke_pa(self, pa: int, value: int) -> None:
        self.undo.append(D.patch(self.path, {self.file_offset(pa): struct.pack("<Q", value)}))

    def restore(self) -> None:
        while self.undo:
            D.unpatch(self.path, self.undo.pop())


def task_blocks(out: str) -> dict[str, str]:
    """`foreach vm -p` output split per task, keyed by its header line."""
    blocks = {}
    for b in out.split("\nPID: "):
        b = b if b.startswith("PID: ") else "PID: " + b
        blocks[b.split("\n", 1)[0]] = b
    return blocks


def task_rows(db, name: str) -> list[tuple[int, int]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute("SELECT t.pid, t.mm FROM tasks t JOIN dumps d ON d.id = t.dump_id "
                       "WHERE d.name = ?", (name,)).fetchall()
    con.close()
    return [(p, (m or 0) & U64) for p, m in rows]


def errors_of(db, name: str) -> tuple[list[str], list[tuple]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    (did,) = con.execute("SELECT id FROM dumps WHERE name = ?", (name,)).fetchone()
    errs = [r[0] for r in con.execute("SELECT message FROM ingest_errors WHERE dump_id = ?",
                                      (did,))]
    faults = con.execute("SELECT mm, va_start, va_end, level, pa, reason FROM "
                         "page_table_faults WHERE dump_id = ?", (did,)).fetchall()
    con.close()
    return errs, faults


class Corrupter:
    """One index, one good ingest of the ELF copy, then corrupt / ingest / compare / undo."""

    def __init__(self, kernel: str, elf, db):
        self.kernel, self.elf, self.db = kernel, elf, db
        self.n = 0
        r = D.vmdex_inproc("ingest", "--vmlinux", fd.vmlinux(kernel), "--name", "good", elf,
                           db=db)
        assert r.code == 0 and "0 walk errors" in r.err, r.err
        self.good = D.vmdex_inproc("--dump", "good", "foreach", "vm", "-p", db=db).out
        self.tasks = task_rows(db, "good")
        self.mem = Kmem(elf, db, "good")

    def mm_of(self, pid: int) -> int:
        return next(m for p, m in self.tasks if p == pid)

    def ingest_damaged(self, damaged_mms: set[int], must_mention: str | None,
                       timeout: float = 60) -> tuple[str, list[str], list[tuple]]:
        """Ingest the patched copy; the damage is on record, bounded in time, and every
        task whose mm was not touched answers as on the good dump. Undoes the patches."""
        self.n += 1
        name = f"damaged-{self.n}"
        try:
            t0 = time.monotonic()
            r = D.vmdex_inproc("ingest", "--vmlinux", fd.vmlinux(self.kernel), "--name", name,
                               self.elf, db=self.db, timeout=timeout)
            took = time.monotonic() - t0
        finally:
            self.mem.restore()
        assert r.code == 0, r.err
        assert len(r.err.splitlines()) == 1 and "Traceback" not in r.err
        assert took < 30, f"ingest of a corrupted dump took {took:.0f}s"
        errs, faults = errors_of(self.db, name)
        record = errs + [f[5] for f in faults]
        if must_mention is not None:   # None: damage that looks like valid data
            assert any(must_mention in e for e in record), record
        out = D.vmdex_inproc("--dump", name, "foreach", "vm", "-p", db=self.db)
        assert "Traceback" not in out.err and out.code in (0, 1), out.err
        good, got = task_blocks(self.good), task_blocks(out.out)
        damaged_pids = {p for p, m in self.tasks if m in damaged_mms}
        same = 0
        for head, block in good.items():
            pid = int(head.split()[1])
            if pid in damaged_pids:
                continue
            assert got.get(head) == block, head
            same += 1
        assert same >= len(good) - len(damaged_pids) and same > 20
        return name, errs, faults


@pytest.fixture(scope="module")
def elf61(tmp_path_factory):
    p = tmp_path_factory.mktemp("elf61") / "vmcore.elf"
    D.sparse_copy(fd.dump(K61, "vmcore.elf"), p)
    return p


@pytest.fixture(scope="module")
def elf510(tmp_path_factory):
    """An ELF core of the 5.10 fixture's memory (the pages its kdump holds)."""
    from vmdex.indexer.dumpfile import open_dump

    src = fd.dump(K510, "vmcore.mdf-c-d31")
    L = D.kdump_layout(src)
    with open(src, "rb") as f:
        f.seek(L.notes[0])
        notes = f.read(L.notes[1])
    out = tmp_path_factory.mktemp("elf510") / "vmcore.elf"
    with open_dump(src) as m:
        D.elf_core_from_pages(out, ((pfn, m.read_page(pfn)) for pfn in L.dumpable_pfns()),
                              notes)
    return out


@pytest.fixture(scope="module")
def c61(elf61, tmp_path_factory):
    return Corrupter(K61, elf61, tmp_path_factory.mktemp("c61") / "vmdex.db")


@pytest.fixture(scope="module")
def c510(elf510, tmp_path_factory):
    return Corrupter(K510, elf510, tmp_path_factory.mktemp("c510") / "vmdex.db")


def test_built_elf_answers_like_the_kdump(c510, tmp_path):
    r = D.vmdex_inproc("ingest", "--vmlinux", fd.vmlinux(K510), "--name", "kdump",
                       fd.dump(K510, "vmcore.mdf-c-d31"), db=c510.db)
    assert r.code == 0
    assert D.vmdex_inproc("--dump", "kdump", "foreach", "vm", "-p", db=c510.db).out == c510.good


# --- VMA list (5.10) ------------------------------------------------------------------------
def _vma_list(c: Corrupter, mm: int) -> list[int]:
    m = c.mem
    out, v = [], m.u64(mm + m.off("mm_struct", "mmap"))
    while v and len(out) < 10000:
        out.append(v)
        v = m.u64(v + m.off("vm_area_struct", "vm_next"))
    return out


@pytest.mark.parametrize("where", ["itself", "an earlier VMA", "unmapped address",
                                   "user address"])
def test_vma_list_damage(c510, where):
    pid = roles(K510)["roles"]["manyvma"]
    mm = c510.mm_of(pid)
    vmas = _vma_list(c510, mm)
    assert len(vmas) > 300
    victim = vmas[100]
    target = {"itself": victim, "an earlier VMA": vmas[20],
              "unmapped address": 0xFFFFFE0000000000 + 0x123000,
              "user address": 0x7F0000001000}[where]
    c510.mem.poke(victim + c510.mem.off("vm_area_struct", "vm_next"), target)
    name, errs, _ = c510.ingest_damaged({mm}, f"mm {mm:x}")
    if where in ("itself", "an earlier VMA"):
        assert any("loops" in e for e in errs), errs


def test_task_mm_pointing_at_garbage(c510):
    """task->mm of one process points into unmapped space: that task's mm is an error,
    every other task is whole."""
    m = c510.mem
    pid = roles(K510)["roles"]["cow"]
    con = sqlite3.connect(f"file:{c510.db}?mode=ro", uri=True)
    task = con.execute("SELECT task FROM tasks t JOIN dumps d ON d.id = t.dump_id WHERE "
                       "d.name = 'good' AND pid = ?", (pid,)).fetchone()[0] & U64
    con.close()
    mm = c510.mm_of(pid)
    m.poke(task + m.off("task_struct", "mm"), 0xFFFFFE0000000000)
    c510.ingest_damaged({mm, 0xFFFFFE0000000000}, "mm fffffe0000000000")


# --- maple tree (6.1) -------------------------------------------------------------------------
def _maple_root(c: Corrupter, mm: int) -> tuple[int, int, int, int]:
    """(enode, node address, node type, slot offset) of the mm's maple root node."""
    m = c.mem
    enode = m.u64(mm + m.off("mm_struct", "mm_mt") + m.off("maple_tree", "ma_root"))
    assert enode & 3 == 2, hex(enode)
    typ = (enode >> 3) & 0xF
    slot = m.off("maple_arange_64", "slot") if typ == 3 else m.off("maple_range_64", "slot")
    return enode, enode & ~0xFF, typ, slot


@pytest.mark.parametrize("where", ["its own node", "its parent's first slot",
                                   "garbage", "a node of another mm"])
def test_maple_node_damage(c61, where):
    pid = roles(K61)["roles"]["manyvma"]
    mm = c61.mm_of(pid)
    enode, node, typ, slot = _maple_root(c61, mm)
    assert typ in (2, 3)          # ~380 VMAs: an internal root
    child = c61.mem.u64(node + slot)  # first child enode
    other = _maple_root(c61, c61.mm_of(roles(K61)["roles"]["filemap"]))[0]
    if where == "its own node":
        c61.mem.poke(node + slot + 8, enode)              # slot 1 -> the root itself
    elif where == "its parent's first slot":
        cnode = child & ~0xFF
        ctyp = (child >> 3) & 0xF
        cslot = c61.mem.off("maple_arange_64", "slot") if ctyp == 3 else \
            c61.mem.off("maple_range_64", "slot")
        if ctyp in (2, 3):
            c61.mem.poke(cnode + cslot, child)            # an internal child -> itself
        else:
            c61.mem.poke(node + slot + 8, child)          # two slots -> the same leaf
    elif where == "garbage":
        c61.mem.poke(node + slot, 0xFFFFFE0000000000 | (2 << 3) | 2)
    else:
        c61.mem.poke(node + slot, other)
    _, errs, _ = c61.ingest_damaged({mm}, {"garbage": f"mm {mm:x}",
                                           "a node of another mm": "belongs to mm"}.get(
                                               where, "maple"))
    if where in ("its own node", "its parent's first slot"):
        assert any("reached twice" in e for e in errs), errs


def test_maple_node_with_garbage_pivots(c61):
    """A node's pivots and metadata overwritten with junk: still bounded, still recorded."""
    pid = roles(K61)["roles"]["manyvma"]
    mm = c61.mm_of(pid)
    _enode, node, typ, _slot = _maple_root(c61, mm)
    piv = c61.mem.off("maple_arange_64" if typ == 3 else "maple_range_64", "pivot")
    for i in range(9):
        c61.mem.poke(node + piv + 8 * i, (0x0123456789ABCDEF * (i + 3)) & U64)
    c61.ingest_damaged({mm}, None)


# --- page tables (6.1) ------------------------------------------------------------------------
def _tables(c: Corrupter, pid: int, va: int) -> list[int]:
    """(pgd, pud, pmd, pte) table physical addresses translating va."""
    con = sqlite3.connect(f"file:{c.db}?mode=ro", uri=True)
    pgd = con.execute("SELECT m.pgd FROM mms m JOIN dumps d ON d.id = m.dump_id WHERE "
                      "d.name = 'good' AND m.mm = ?",
                      (c.mm_of(pid) - (1 << 64),)).fetchone()[0] & U64
    con.close()
    path, table = [], c.mem.pa(pgd)
    for shift in (39, 30, 21):
        path.append(table)
        e = c.mem.u64_pa(table + 8 * ((va >> shift) & 511))
        assert e & 1 and not e & 0x80, hex(e)
        table = e & 0x3FFFFFFFF000
    return path + [table]


def test_page_table_entry_past_ram(c61):
    """A PUD entry pointing past the end of RAM: a fault for that 1 GiB, and `vm -p`
    stops there with crash's ELF read error; other tasks are whole."""
    c = roles(K61)
    pid = c["roles"]["anon"]
    va = int(c["phys_anon_uvaddr"], 16)
    pgd, pud, pmd, pte = _tables(c61, pid, va)
    entry = pud + 8 * ((va >> 30) & 511)
    bogus = 0x3FFFFFFFF000
    c61.mem.poke_pa(entry, bogus | (c61.mem.u64_pa(entry) & 0xFFF))
    mm = c61.mm_of(pid)
    name, _errs, faults = c61.ingest_damaged({mm}, "not in dump")
    assert [(f[3], f[4]) for f in faults] == [(2, bogus)]
    r = D.vmdex_inproc("--dump", name, "vm", "-p", str(pid), db=c61.db)
    assert r.code == 1
    assert r.out.endswith(f'vm: read error: physical address: {bogus:x}  type: "pmd page"\n')
    assert r.out.count("\n") > 10


def test_page_table_pointing_back_up(c61):
    """A PMD entry pointing at the PGD page: a loop in the tables, cut and recorded."""
    c = roles(K61)
    pid = c["roles"]["anon"]
    va = int(c["phys_anon_uvaddr"], 16)
    pgd, pud, pmd, pte = _tables(c61, pid, va)
    entry = pmd + 8 * ((va >> 21) & 511)
    c61.mem.poke_pa(entry, pgd | 0x67)
    c61.ingest_damaged({c61.mm_of(pid)}, "points back")


def _walk_rows(elf, workers: int) -> tuple[list, list, list]:
    """(runs, faults, errors) of an in-process walk of the dump with `workers` processes."""
    from vmdex.indexer.dumpfile import open_dump
    from vmdex.indexer.ingest import walk_dump
    from vmdex.indexer.kernel.symtab import build_id
    from vmdex.indexer.kernel.types import load_kernel_types
    from vmdex.indexer.kernel.vmcoreinfo import VmcoreInfo
    from vmdex.indexer.walk.parallel import DropMm

    vml = fd.vmlinux(K61)
    types, symtab = load_kernel_types(vml)
    with open_dump(elf) as phys:
        img = walk_dump(phys, VmcoreInfo.parse(phys.vmcoreinfo), types, symtab.address, vml,
                        build_id(vml), "x", workers=workers)
        rows: dict[int, list] = {}
        for item in img.page_runs():
            if isinstance(item, DropMm):
                rows.pop(item.mm, None)
                continue
            if not isinstance(item, tuple):   # smaps sums (indexer.walk.smaps.SmapsPart)
                continue
            mm, r = item
            rows.setdefault(mm, []).extend(zip(r.vma_index.tolist(), r.va.tolist(),
                                               r.npages.tolist(), r.kind.tolist(),
                                               r.pa.tolist(), r.pte.tolist()))
    faults = sorted((a, f.va_start, f.va_end, f.level, f.pa, f.reason) for a, f in img.faults)
    return sorted((a, *t) for a, ts in rows.items() for t in ts), faults, sorted(img.errors)


@pytest.mark.parametrize("damage", ["none", "cross-linked", "points back", "past ram"])
def test_walk_does_not_depend_on_workers(c61, damage, monkeypatch):
    """Runs, faults and errors are the same whether one process walks or several, in
    pieces of one VMA each, with good tables and with a PMD entry cross-linked to another
    PTE table of the same mm (which only the whole mm's walk can count), pointing back up,
    or past RAM."""
    from vmdex.indexer.walk import parallel

    c = roles(K61)
    pid = c["roles"]["anon"]
    va = int(c["phys_anon_uvaddr"], 16)
    pgd, pud, pmd, pte = _tables(c61, pid, va)
    entry = pmd + 8 * ((va >> 21) & 511)
    if damage == "cross-linked":   # other present PMD entries get this PTE page too
        others = [pmd + 8 * i for i in range(512)
                  if c61.mem.u64_pa(pmd + 8 * i) & 1 and pmd + 8 * i != entry]
        assert others
        for e in others[:5]:
            c61.mem.poke_pa(e, pte | 0x67)
    elif damage == "points back":
        c61.mem.poke_pa(entry, pgd | 0x67)
    elif damage == "past ram":
        c61.mem.poke_pa(entry, 0x3FFFFFFFF000 | 0x67)
    try:
        serial = _walk_rows(c61.elf, 1)
        monkeypatch.setattr(parallel, "PIECE_PAGES", 1)           # one VMA a piece
        monkeypatch.setattr(parallel, "MIN_PARALLEL_PAGES", 0)
        assert _walk_rows(c61.elf, 2) == serial
        assert _walk_rows(c61.elf, 3) == serial
    finally:
        c61.mem.restore()
    assert serial[0]
    assert bool(serial[1]) == (damage != "none" and (damage != "cross-linked" or
                                                     len(others) >= 4)), serial[1]


def test_page_tables_full_of_junk(c61):
    """Every entry of a PMD table present and pointing at kernel text pages: bounded."""
    c = roles(K61)
    pid = c["roles"]["anon"]
    va = int(c["phys_anon_uvaddr"], 16)
    pgd, pud, pmd, pte = _tables(c61, pid, va)
    text = c61.mem.pa(c61.mem.sym("_stext"))
    for i in range(512):
        c61.mem.poke_pa(pmd + 8 * i, (text + 4096 * i) | 0x67)
    # Junk that looks like valid tables is not detectable; it must only stay bounded.
    c61.ingest_damaged({c61.mm_of(pid)}, None, timeout=60)


# --- the task list (6.1) --------------------------------------------------------------------
def _pid_xarray_root(c: Corrupter) -> tuple[int, int, int]:
    m = c.mem
    head = m.sym("init_pid_ns") + m.off("pid_namespace", "idr") + m.off("idr", "idr_rt") \
        + m.off("xarray", "xa_head")
    root = m.u64(head)
    assert root & 3 == 2
    return head, root, (root & ~3) + m.off("xa_node", "slots")


@pytest.mark.parametrize("where", ["the root", "garbage"])
def test_pid_xarray_damage(c61, where):
    """An empty slot of the pid xarray's root pointing back at the root (a cycle) or at
    garbage: recorded; every task is still found."""
    head, root, slots = _pid_xarray_root(c61)
    free = next(i for i in range(63, 0, -1) if c61.mem.u64(slots + 8 * i) == 0)
    # garbage: a node pointer into an unused hole of the x86-64 kernel map (not mapped)
    c61.mem.poke(slots + 8 * free, root if where == "the root" else 0xFFFFFF8000001002)
    c61.ingest_damaged(set(), "pid xarray")


# --- paths ------------------------------------------------------------------------------------
def test_dentry_cycle(c61):
    """blob.bin's parent dentry made a child of blob.bin: the path walk is bounded."""
    m = c61.mem
    vma = int(roles(K61)["blob_vma"]["vma"], 16)
    f = m.u64(vma + m.off("vm_area_struct", "vm_file"))
    dentry = m.u64(f + m.off("file", "f_path") + m.off("path", "dentry"))
    parent = m.u64(dentry + m.off("dentry", "d_parent"))
    m.poke(parent + m.off("dentry", "d_parent"), dentry)
    n = c61.n + 1
    name = f"damaged-{n}"
    c61.n = n
    t0 = time.monotonic()
    try:
        r = D.vmdex_inproc("ingest", "--vmlinux", fd.vmlinux(K61), "--name", name, c61.elf,
                           db=c61.db)
    finally:
        m.restore()
    assert r.code == 0 and time.monotonic() - t0 < 30, r.err
    out = D.vmdex_inproc("--dump", name, "foreach", "vm", db=c61.db)
    assert out.code == 0
    assert max(len(line) for line in out.out.splitlines()) < 1700


# --- kill -9 ----------------------------------------------------------------------------------
def _integrity(db) -> str:
    con = sqlite3.connect(db)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def _checkpoint(db) -> None:
    con = sqlite3.connect(db)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()


@pytest.fixture(scope="module")
def kill_index(tmp_path_factory):
    db = tmp_path_factory.mktemp("kill") / "vmdex.db"
    names = {}
    for k, name in ((K61, "six"), (K510, "five")):
        r = D.vmdex("ingest", "--vmlinux", fd.vmlinux(k), "--name", name,
                    fd.dump(k, "vmcore.mdf-c-d31"), db=db)
        assert r.code == 0, r.err
        names[name] = k
    snap = {n: (D.dump_fingerprint(db, n),
                D.vmdex_inproc("--dump", n, "foreach", "vm", "-p", db=db).out) for n in names}
    return db, snap


def _start_ingest(db, name: str) -> subprocess.Popen:
    return subprocess.Popen([D.VMDEX, "--db", str(db), "ingest", "--vmlinux",
                             str(fd.vmlinux(K61)), "--name", name,
                             str(fd.dump(K61, "vmcore.elf"))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _left_running(victim: str) -> list[int]:
    """Processes still running an ingest of `victim` (its walk's workers carry the killed
    process's command line)."""
    left = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    words = f.read().split(b"\0")
            except OSError:
                continue
            if any(victim.encode() in w for w in words) and b"ingest" in b" ".join(words):
                left.append(int(entry))
    return left


def _after_kill(db, snap, victim: str, proc: subprocess.Popen) -> str:
    proc.wait(timeout=60)
    proc.stderr.close()
    # the killed ingest's workers notice within a second or two and exit
    deadline = time.monotonic() + 15
    while _left_running(victim) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _left_running(victim), f"workers left running: {_left_running(victim)}"
    assert _integrity(db) == "ok"
    for n, (fp, out) in snap.items():
        assert D.dump_fingerprint(db, n) == fp, n
    names = set(D.dump_names(db))
    assert set(snap) <= names and all(x in snap or x.startswith("victim") for x in names)
    if victim not in names:
        return "absent"
    # Killed after its commit: then it is complete, and answers like the kdump copy.
    r = D.vmdex_inproc("--dump", victim, "foreach", "vm", "-p", db=db)
    assert r.out == snap["six"][1]
    return "complete"


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.1])
def test_kill_at_a_time(kill_index, delay):
    db, snap = kill_index
    victim = f"victim-t{int(delay * 1000)}"
    p = _start_ingest(db, victim)
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    _after_kill(db, snap, victim, p)
    r = D.vmdex("--dump", "six", "vm", db=db)      # a fresh process opens the index
    assert r.code == 0 and r.out == D.vmdex_inproc("--dump", "six", "vm", db=db).out


def _size(path: str) -> int:
    """File size, 0 when absent: SQLite removes the WAL when its last connection closes,
    which can happen between an exists() and a getsize()."""
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("grown", [1, 256 << 10, 2 << 20, 4 << 20])
def test_kill_inside_the_write_transaction(kill_index, grown):
    """Kill when the write-ahead log has grown by `grown` bytes: the ingest is inside its
    one transaction, writing rows. Nothing of it may survive."""
    db, snap = kill_index
    _checkpoint(db)
    wal = f"{db}-wal"
    base = _size(wal)
    victim = f"victim-w{grown}"
    p = _start_ingest(db, victim)
    deadline = time.monotonic() + 60
    killed_in_flight = False
    while p.poll() is None and time.monotonic() < deadline:
        if _size(wal) >= base + grown:
            p.send_signal(signal.SIGKILL)
            killed_in_flight = True
            break
        time.sleep(0.0005)
    else:
        p.kill()
    # The log mostly grows when SQLite spills or commits, so the kill lands either inside
    # the transaction (absent) or just after its commit (complete): both are whole.
    _after_kill(db, snap, victim, p)
    assert killed_in_flight or p.returncode == 0


_KILLER = '''
import os, signal, sys
import vmdex.indexer.store as store
calls = [0]
real = store._bulk
def bulk(*args, **kw):
    real(*args, **kw)
    calls[0] += 1
    if calls[0] == {nth}:
        os.kill(os.getpid(), signal.SIGKILL)   # rows written, transaction not committed
store._bulk = bulk
sys.argv = {argv!r}
from vmdex.query.main import main
main()
'''


@pytest.mark.parametrize("nth", [1, 3, 6, 12])
def test_kill_after_some_rows_are_written(kill_index, nth):
    """Deterministic: the ingest kills itself with SIGKILL right after its nth bulk
    insert, inside the one write transaction. The dump must be absent afterwards."""
    import sys

    db, snap = kill_index
    victim = f"victim-b{nth}"
    argv = ["vmdex", "--db", str(db), "ingest", "--vmlinux", str(fd.vmlinux(K61)), "--name",
            victim, str(fd.dump(K61, "vmcore.elf"))]
    p = subprocess.Popen([sys.executable, "-c", _KILLER.format(nth=nth, argv=argv)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    p.wait(timeout=120)
    if p.returncode == 0 and nth > 1:   # the store made fewer bulk inserts than nth
        assert _after_kill(db, snap, victim, p) == "complete"
        return
    assert p.returncode == -signal.SIGKILL, p.stderr.read()
    assert _after_kill(db, snap, victim, p) == "absent"


def test_kill_while_creating_the_index(tmp_path):
    """Killed while the schema is created: the index still opens and takes an ingest."""
    for delay in (0.25, 0.55):
        db = tmp_path / f"fresh-{delay}.db"
        p = _start_ingest(db, "victim")
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        p.stderr.close()
        if db.exists():
            assert _integrity(db) == "ok"
        r = D.vmdex("ingest", "--vmlinux", fd.vmlinux(K510), "--name", "after",
                    fd.dump(K510, "vmcore.mdf-c-d31"), db=db)
        assert r.code == 0, r.err
        assert "after" in D.dump_names(db)
