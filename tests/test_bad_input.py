"""Damaged dumps, wrong vmlinuxes and bad indexes: one clear line, nothing lost.

Every damaged input is made from the real fixtures at test time. Each one is ingested, by
the installed CLI, into an index that already holds good copies of both fixture kernels;
afterwards those dumps must be exactly as they were (every row, and the answers of a few
`vm` commands). A damaged dump is either refused (exit 2, one `vmdex: ` line on stderr
naming the file and what is wrong, no traceback) or, when the damage only costs some
pages, ingested with the loss recorded (ingest_errors / page_table_faults) — or, when the
lost bytes were never needed, answering exactly like the good copy.

The sweeps call the CLI's entry point in-process (`damage.vmdex_inproc`, same code path,
no interpreter start-up per case); the plain "not a dump / wrong vmlinux / bad index"
cases run the installed `vmdex` in a subprocess, as a user would.
"""
from __future__ import annotations

import json
import os
import sqlite3
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import damage as D
from tests import fixturedata as fd

K61 = "linux-6.1.0-56-amd64"
K510 = "linux-5.10.0-32-cloud-amd64"
KERNELS = (K61, K510)
MDF = "vmcore.mdf-c-d31"
GOOD = {K61: "good-6.1", K510: "good-5.10"}
P = struct.pack


def roles(kernel: str) -> dict:
    return json.loads((fd.oracle_dir(kernel) / "cases.json").read_text())


def snapshot_commands(kernel: str) -> list[list[str]]:
    c = roles(kernel)
    r = c["roles"]
    return [["vm"], ["vm", str(r["init"])], ["vm", "-p", str(r["filemap"])],
            ["foreach", "vm"], ["vm", "-R", c["phys_anon"]], ["vm", "-p", str(r["huge"])]]


@dataclass
class Index:
    db: Path
    fingerprints: dict[str, str]
    answers: dict[str, dict[tuple, str]]
    accepted: set[str] = field(default_factory=set)
    counter: list[int] = field(default_factory=lambda: [0])

    def name(self) -> str:
        self.counter[0] += 1
        return f"bad-{self.counter[0]}"


def answers(db, name: str, kernel: str) -> dict[tuple, str]:
    out = {}
    for cmd in snapshot_commands(kernel):
        r = D.vmdex_inproc("--dump", name, *cmd, db=db)
        assert r.code in (0, 1) and "Traceback" not in r.err, (cmd, r.err)
        out[tuple(cmd)] = r.out
    return out


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Index:
    db = tmp_path_factory.mktemp("bad-input") / "vmdex.db"
    for k in KERNELS:
        r = D.vmdex("ingest", "--vmlinux", fd.vmlinux(k), "--name", GOOD[k], fd.dump(k, MDF),
                    db=db)
        assert r.code == 0, r.err
    return Index(db, {GOOD[k]: D.dump_fingerprint(db, GOOD[k]) for k in KERNELS},
                 {k: answers(db, GOOD[k], k) for k in KERNELS})


def assert_intact(ix: Index) -> None:
    """The good dumps hold exactly the rows they held before; nothing half-written."""
    for name, fp in ix.fingerprints.items():
        assert D.dump_fingerprint(ix.db, name) == fp, f"{name} changed"
    assert set(D.dump_names(ix.db)) == set(ix.fingerprints) | ix.accepted


def dump_losses(db, name: str) -> int:
    """Walk errors + page-table faults recorded for one dump."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (dump_id,) = con.execute("SELECT id FROM dumps WHERE name = ?", (name,)).fetchone()
        errors = con.execute("SELECT count(*) FROM ingest_errors WHERE dump_id = ?",
                             (dump_id,)).fetchone()[0]
        faults = con.execute("SELECT count(*) FROM page_table_faults WHERE dump_id = ?",
                             (dump_id,)).fetchone()[0]
        return errors + faults
    finally:
        con.close()


def ingest_bad(ix: Index, dump, kernel: str, vmlinux=None, name: str | None = None,
               real: bool = False) -> D.Run:
    name = name or ix.name()
    run = D.vmdex if real else D.vmdex_inproc
    return run("ingest", "--vmlinux", vmlinux or fd.vmlinux(kernel), "--name", name, dump,
                   db=ix.db)


def refused(ix: Index, dump, kernel: str, *words: str, vmlinux=None, name_file=None,
            name: str | None = None, real: bool = False) -> str:
    """The ingest must fail cleanly, naming the file, and leave the index as it was."""
    r = ingest_bad(ix, dump, kernel, vmlinux, name, real)
    line = D.assert_one_line_error(r, name_file or dump)
    for w in words:
        assert w in line, line
    assert_intact(ix)
    return line


def refused_or_recorded(ix: Index, dump, kernel: str) -> str:
    """Damage that may or may not hit something the walk needs: refused with one line, or
    ingested with the loss recorded, or (nothing needed was lost) answering like the good
    copy. Returns 'refused', 'recorded' or 'clean'."""
    name = ix.name()
    r = ingest_bad(ix, dump, kernel, name=name)
    if r.code != 0:
        D.assert_one_line_error(r, dump)
        assert_intact(ix)
        return "refused"
    assert "Traceback" not in r.err and len(r.err.splitlines()) == 1, r.err
    assert r.err.startswith(f"ingested {name}:"), r.err
    ix.accepted.add(name)
    assert_intact(ix)
    got = answers(ix.db, name, kernel)
    if dump_losses(ix.db, name):
        # The loss is on record, and the dump still answers for every task.
        r = D.vmdex_inproc("--dump", name, "foreach", "vm", "-p", db=ix.db)
        assert r.code in (0, 1) and "Traceback" not in r.err, r.err
        return "recorded"
    assert got == ix.answers[kernel], "pages were lost without a record"
    return "clean"


# --- truncation ---------------------------------------------------------------------------
def kdump_cuts(path) -> list[tuple[str, int]]:
    L = D.kdump_layout(path)
    data = L.size - L.data
    return [
        ("1 byte", 1), ("inside the signature", 5), ("inside the header", 100),
        ("header minus one", 463), ("end of header", 464),
        ("inside the sub-header", L.sub_offset + 50),
        ("inside VMCOREINFO", L.vmcoreinfo[0] + L.vmcoreinfo[1] // 2),
        ("inside the notes", L.notes[0] + 10),
        ("start of the bitmaps", L.bitmap[0] + 7),
        ("between the bitmaps", L.bitmap[0] + L.bitmap[1] // 2 + 3),
        ("first descriptor", L.descs + 10),
        ("middle of the descriptors", L.descs + 24 * (L.ndesc // 2) + 5),
        ("last descriptor", L.data - 1),
        ("first page data", L.data + 100),
        ("a third of the page data", L.data + data // 3),
        ("two thirds of the page data", L.data + 2 * data // 3),
        ("last pages", L.size - 3 * 4096 - 17),
        ("last byte", L.size - 1),
    ]


def _cut_ids(cuts):
    return [c[0] for c in cuts]


@pytest.mark.parametrize("kernel", KERNELS)
def test_truncated_kdump(index, kernel, tmp_path):
    src = fd.dump(kernel, MDF)
    outcomes = {}
    for what, at in kdump_cuts(src):
        p = D.prefix_copy(src, tmp_path / f"cut-{at}", at)
        if at < D.kdump_layout(src).data - 1:  # headers, bitmaps, descriptors: always fatal
            line = refused(index, p, kernel)
            assert any(w in line for w in ("truncated", "too short", "past end of file",
                                           "missing", "empty")), (what, line)
        else:
            outcomes[what] = refused_or_recorded(index, p, kernel)
        p.unlink()
    if kernel == K61:   # the last pages hold page tables and task data of this capture
        assert outcomes["last pages"] == "recorded"
    # The kernel's own data sits early in the page data: losing it is fatal.
    assert outcomes["first page data"] == "refused"
    assert outcomes["last byte"] in ("clean", "recorded")


def test_truncated_flattened(index, tmp_path):
    src = fd.dump(K61, "vmcore.kdump-zlib")
    size = os.path.getsize(src)
    cuts = [("inside the signature", 10), ("header minus one", 4095),
            ("first record header", 4096 + 9), ("first record", 4096 + 16 + 200),
            ("kdump sub-header", 5000), ("bitmaps", 20000), ("descriptors", 280000),
            ("a quarter", size // 4), ("half", size // 2),
            ("end marker", size - 8), ("last byte", size - 1)]
    outcomes = {}
    for what, at in cuts:
        p = D.prefix_copy(src, tmp_path / f"flat-{at}", at)
        if at < size // 4:
            line = refused(index, p, K61)
            assert any(w in line for w in ("truncated", "too short", "past end of file",
                                           "missing", "no data records")), (what, line)
        else:
            outcomes[what] = refused_or_recorded(index, p, K61)
        p.unlink()
    assert outcomes["last byte"] == "clean"   # only the end marker is cut


# --- kdump headers, descriptors and page data ----------------------------------------------
def _kdump_header_cases(L: D.KdumpLayout) -> dict[str, tuple[dict, str | None]]:
    sub = L.sub_offset
    off_b = L.bitmap[0] + L.bitmap[1] // 2
    return {  # name: (patches, None = must be refused / "accept" = may go in)
        "signature": ({0: b"KDUMPX  "}, None),
        "block size 0": ({428: P("<i", 0)}, None),
        "block size negative": ({428: P("<i", -4096)}, None),
        "block size 8192": ({428: P("<i", 8192)}, None),
        "sub-header size -1": ({432: P("<i", -1)}, None),
        "sub-header size huge": ({432: P("<i", 10 ** 6)}, None),
        "no bitmap blocks": ({436: P("<I", 0)}, None),
        "one bitmap block": ({436: P("<I", 1)}, None),
        "bitmap blocks huge": ({436: P("<I", 0xFFFFFFFF)}, None),
        "max_mapnr_64 0": ({sub + 96: P("<Q", 0)}, None),
        "max_mapnr_64 huge": ({sub + 96: P("<Q", 1 << 62)}, None),
        "VMCOREINFO offset huge": ({sub + 32: P("<q", 1 << 60)}, None),
        "VMCOREINFO offset negative": ({sub + 32: P("<q", -5)}, None),
        "VMCOREINFO size huge": ({sub + 40: P("<Q", 1 << 62)}, None),
        "note size huge": ({sub + 56: P("<Q", 1 << 63)}, None),
        "header version 0 (no VMCOREINFO)": ({8: P("<i", 0)}, None),
        "RAM bitmap cleared": ({L.bitmap[0]: bytes(L.bitmap[1] // 2)}, None),
        "dumpable bitmap all set": ({off_b: b"\xff" * (L.bitmap[1] // 2)}, None),
        # Harmless damage: the fields are not needed or are re-derived.
        "header version 99": ({8: P("<i", 99)}, "accept"),
        "status all bits": ({424: P("<I", 0xFF)}, "accept"),
        "notes garbage": ({L.notes[0]: b"\xff" * 64}, "accept"),
    }


def _all_descs(raw: bytes, L: D.KdumpLayout, fn) -> dict[int, bytes]:
    out = bytearray(raw[L.descs:L.data])
    for i in range(L.ndesc):
        struct.pack_into("<qIIQ", out, 24 * i, *fn(*struct.unpack_from("<qIIQ", out, 24 * i)))
    return {L.descs: bytes(out)}


def _desc_cases(raw: bytes, L: D.KdumpLayout) -> dict[str, tuple[dict, str]]:
    flipped = bytearray(raw[L.data:])
    for i in range(0, len(flipped), 997):
        flipped[i] ^= 0x5A
    return {
        "descriptors past end of file": (_all_descs(raw, L, lambda o, s, f, pf: (
            o + L.size, s, f, pf)), "past end of file"),
        "descriptor offsets negative": (_all_descs(raw, L, lambda o, s, f, pf: (
            -o, s, f, pf)), "corrupt page descriptor"),
        "descriptor offsets 0": (_all_descs(raw, L, lambda o, s, f, pf: (
            0, s, f, pf)), "missing"),
        "descriptor sizes huge": (_all_descs(raw, L, lambda o, s, f, pf: (
            o, 0xFFFFFFFF, f, pf)), "corrupt page descriptor"),
        "descriptor sizes 0": (_all_descs(raw, L, lambda o, s, f, pf: (
            o, 0, f, pf)), "corrupt page descriptor"),
        "descriptor sizes short by one": (_all_descs(raw, L, lambda o, s, f, pf: (
            o, s - 1, f, pf)), "uncompress failed"),
        "bad compression flag": (_all_descs(raw, L, lambda o, s, f, pf: (
            o, s, f | 0x40 if f else f, pf)), "compression flags"),
        "zlib pages flagged lzo": (_all_descs(raw, L, lambda o, s, f, pf: (
            o, s, 0x2 if f else f, pf)), "uncompress failed"),
        "zlib pages flagged zstd": (_all_descs(raw, L, lambda o, s, f, pf: (
            o, s, 0x20 if f else f, pf)), "uncompress failed"),
        "compressed pages flagged raw": (_all_descs(raw, L, lambda o, s, f, pf: (
            o, s, 0, pf)), "uncompressed page"),
        "flipped bytes in page data": ({L.data: bytes(flipped)}, "uncompress failed"),
    }


@pytest.mark.parametrize("kernel", KERNELS)
def test_damaged_kdump_headers(index, kernel, tmp_path):
    src = fd.dump(kernel, MDF)
    L = D.kdump_layout(src)
    for what, (patches, expect) in _kdump_header_cases(L).items():
        p = D.patched_copy(src, tmp_path / "damaged", patches)
        if expect is None:
            refused(index, p, kernel)
        else:
            assert refused_or_recorded(index, p, kernel) == "clean", what
        p.unlink()


def test_damaged_page_descriptors_and_data(index, tmp_path):
    src = fd.dump(K61, MDF)
    raw = src.read_bytes()
    L = D.kdump_layout_of(raw)
    for what, (patches, word) in _desc_cases(raw, L).items():
        p = D.patched_copy(src, tmp_path / "damaged", patches)
        line = refused(index, p, K61, word)
        assert "physical address" in line, (what, line)   # says which page
        p.unlink()


def test_flattened_records(index, tmp_path):
    src = fd.dump(K61, "vmcore.kdump-zlib")
    cases = {"file type 2": {16: P(">q", 2)}, "record size negative": {4096 + 8: P(">q", -5)},
             "record offset negative": {4096: P(">q", -7)},
             "record size huge": {4096 + 8: P(">q", 1 << 62)},
             "record offset huge": {4096: P(">q", 1 << 62)},
             "end marker first": {4096: P(">q", -1)}}
    for what, patches in cases.items():
        p = D.patched_copy(src, tmp_path / "flat", patches)
        refused(index, p, K61)
        p.unlink()


# --- page-table pages the dump lost ------------------------------------------------------
def _table_path(raw: bytes, L: D.KdumpLayout, pgd_pa: int, va: int) -> list[int]:
    """Physical addresses of the PGD, PUD, PMD and PTE tables that translate va (4-level),
    read straight from the uncompressed test copy through the dump's own descriptors."""
    import zlib

    def page(pa):
        idx = L.desc_index(pa >> 12)
        off, size, flags, _ = L.desc(raw, idx)
        data = raw[off:off + size]
        return zlib.decompress(data) if flags & 1 else data

    path, table = [], pgd_pa
    for shift in (39, 30, 21):
        path.append(table)
        (e,) = struct.unpack_from("<Q", page(table), 8 * ((va >> shift) & 511))
        assert e & 1 and not e & 0x80, hex(e)
        table = e & 0x3FFFFFFFF000
    path.append(table)
    return path


def _mm_of(db, name: str, pid: int) -> tuple[int, int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        mm, pgd, page_offset = con.execute(
            "SELECT t.mm, m.pgd, d.page_offset FROM tasks t JOIN dumps d ON d.id = t.dump_id "
            "JOIN mms m ON m.dump_id = t.dump_id AND m.mm = t.mm "
            "WHERE d.name = ? AND t.pid = ?", (name, pid)).fetchone()
        return mm & (2 ** 64 - 1), (pgd - page_offset) & (2 ** 64 - 1)
    finally:
        con.close()


def _lose_page(raw: bytes, L: D.KdumpLayout, pfn: int, how: str) -> dict[int, bytes]:
    """Patches that make the dump lose one page: 'excluded' (makedumpfile left it out: its
    dumpable bit cleared and its descriptor removed) or 'past-eof' (its descriptor points
    past the end of the file, as in a truncated dump)."""
    idx = L.desc_index(pfn)
    if how == "corrupt":   # bytes flipped inside its compressed data
        off, size, flags, pf = L.desc(raw, idx)
        assert flags & 1 and size > 16
        mid = off + size // 2
        return {mid: bytes(b ^ 0xA5 for b in raw[mid:mid + 4])}
    if how == "past-eof":
        off, size, flags, pf = L.desc(raw, idx)
        return {L.desc_offset(idx): struct.pack("<qIIQ", L.size + 4096, size, flags, pf)}
    assert len(L.ram) == len(L.dumpable) and L.ram is not L.dumpable
    bm = L.bitmap[0] + L.bitmap[1] // 2 + (pfn >> 3)
    descs = raw[L.desc_offset(idx + 1):L.data]
    return {bm: bytes([L.dumpable[pfn >> 3] & ~(1 << (pfn & 7)) & 0xFF]),
            L.desc_offset(idx): descs + bytes(24)}


@pytest.mark.parametrize("how", ["excluded", "past-eof", "corrupt"])
def test_lost_page_table_page_is_recorded(index, tmp_path, how):
    """A PTE page the dump lost or holds corrupt: the ingest succeeds and records the
    fault for that mm only; `vm -p` of that task stops at the first page under it,
    silently when the page was excluded (crash on a compressed dump), with crash's read
    error when the data is missing or corrupt; every other task answers as before."""
    kernel = K61
    src = fd.dump(kernel, MDF)
    raw = src.read_bytes()
    L = D.kdump_layout_of(raw)
    c = roles(kernel)
    pid = c["roles"]["filemap"]
    _mm, pgd_pa = _mm_of(index.db, GOOD[kernel], pid)
    va = int(c["blob_vma"]["start"], 16)
    pte_table = _table_path(raw, L, pgd_pa, va)[3]
    p = D.patched_copy(src, tmp_path / "lost-pte", _lose_page(raw, L, pte_table >> 12, how))
    name = index.name()
    r = ingest_bad(index, p, kernel, name=name)
    assert r.code == 0, r.err
    index.accepted.add(name)
    assert_intact(index)
    con = sqlite3.connect(f"file:{index.db}?mode=ro", uri=True)
    rows = con.execute("SELECT f.mm, f.va_start, f.va_end, f.level, f.pa, f.reason FROM "
                       "page_table_faults f JOIN dumps d ON d.id = f.dump_id WHERE d.name = ?",
                       (name,)).fetchall()
    con.close()
    assert len(rows) == 1, rows
    fmm, start, end, level, pa, reason = rows[0]
    assert pa == pte_table and level == 1 and start <= va < end, rows
    assert {"excluded": "page excluded", "past-eof": "past end of file",
            "corrupt": "uncompress failed"}[how] in reason
    # Every other task answers exactly as on the good dump.
    good = index.answers[kernel]
    got = answers(index.db, name, kernel)
    for cmd, out in got.items():
        if cmd != ("vm", "-p", str(pid)):
            assert out == good[cmd], cmd
    # vm -p of the damaged task: everything up to the first page under the lost table.
    full = good[("vm", "-p", str(pid))]
    part = got[("vm", "-p", str(pid))]
    message = f'vm: read error: physical address: {pte_table:x}  type: "page table"\n'
    if how == "excluded":
        message = ""
    elif how == "corrupt":   # crash names zlib's return code first (Z_DATA_ERROR)
        message = "vm: compressed kdump: uncompress failed: -3\n" + message
    assert part.endswith(message)
    part = part[:len(part) - len(message)]
    assert full.startswith(part) and len(part) < len(full)
    first_missing = full[len(part):].splitlines()[0]
    assert int(first_missing.split()[0], 16) == max(start, int(c["blob_vma"]["start"], 16)) \
        or int(first_missing.split()[0], 16) >= start
    # The exit status says the command did not complete.
    r = D.vmdex_inproc("--dump", name, "vm", "-p", str(pid), db=index.db)
    assert r.code == 1 and r.out == got[("vm", "-p", str(pid))]
    # foreach goes on with the next task (crash's RESUME_FOREACH).
    r = D.vmdex_inproc("--dump", name, "foreach", "vm", "-p", db=index.db)
    g = D.vmdex_inproc("--dump", GOOD[kernel], "foreach", "vm", "-p", db=index.db)
    assert r.code == 1 and g.code == 0
    after_good = g.out[g.out.index(full) + len(full):]
    after_bad = r.out[r.out.index(part + message) + len(part + message):]
    assert after_bad == after_good
    # -R walks every page too: the damaged task's match (under the lost table) is gone,
    # in its place crash's message (or nothing); every other task's match is as before.
    g = D.vmdex_inproc("--dump", GOOD[kernel], "foreach", "vm", "-R", c["phys_file"],
                       db=index.db)
    r = D.vmdex_inproc("--dump", name, "foreach", "vm", "-R", c["phys_file"], db=index.db)
    head = f"PID: {pid} "
    assert g.out.startswith(head) and g.out.count("PID: ") > 1
    block = g.out[:g.out.index("\n\n") + 2]
    assert r.out == message + g.out[len(block):]
    assert r.code == 1


# --- ELF cores --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def elf_copy(tmp_path_factory):
    """One private copy of the 553 MB ELF per module, patched in place and restored."""
    p = tmp_path_factory.mktemp("elf") / "vmcore.elf"
    D.sparse_copy(fd.dump(K61, "vmcore.elf"), p)
    return p


def _elf_header_cases(path) -> dict[str, tuple[dict, str | None]]:
    L = D.elf_layout(path)
    size = os.path.getsize(path)
    phdrs = [(o, *struct.unpack_from("<IIQQQQQQ", _read(path, o, 56))) for o in L.phdr_offsets]
    ph = max((h for h in phdrs if h[1] == 1), key=lambda h: h[7])[0]  # the big RAM PT_LOAD
    note_ph = next(h[0] for h in phdrs if h[1] == 4)
    nb = _read(path, L.notes[0][0], L.notes[0][1])
    no_vmci = {o: b"XMCOREINFO" for o in D.note_name_offsets(nb, L.notes[0][0], b"VMCOREINFO")}
    return {
        "32-bit class": ({4: b"\x01"}, "64-bit"),
        "big endian": ({5: b"\x02"}, "little-endian"),
        "not a core": ({16: P("<H", 2)}, "not a core dump"),
        "program headers past end": ({32: P("<Q", 1 << 62)}, "program headers"),
        "program headers at the very end": ({32: P("<Q", size - 10)}, "program headers"),
        "no program headers": ({56: P("<H", 0)}, "PT_LOAD"),
        "e_phnum PN_XNUM without sections": ({56: P("<H", 0xFFFF)}, None),
        "e_phentsize 0": ({54: P("<H", 0)}, "e_phentsize"),
        "RAM segment offset huge": ({ph + 8: P("<Q", 1 << 62)}, "past end of file"),
        "RAM segment moved to 2^64-4096": ({ph + 24: P("<Q", 2 ** 64 - 4096)}, "cannot read"),
        "RAM segment file size 0": ({ph + 32: P("<Q", 0)}, "damaged"),
        "PT_NOTE offset huge": ({note_ph + 8: P("<Q", 1 << 62)}, "PT_NOTE"),
        "PT_NOTE size huge": ({note_ph + 32: P("<Q", 1 << 62)}, "PT_NOTE"),
        "notes garbage": ({L.notes[0][0]: b"\xff" * 200}, "VMCOREINFO"),
        "no VMCOREINFO note": (no_vmci, "no VMCOREINFO"),
        # Harmless: sizes past the data are zero-filled or unused.
        "RAM segment memsz huge": ({ph + 40: P("<Q", 1 << 40)}, "accept"),
    }


def _read(path, off: int, n: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(n)


def test_damaged_elf_headers(index, elf_copy):
    for what, (patches, word) in _elf_header_cases(elf_copy).items():
        old = D.patch(elf_copy, patches)
        try:
            if word == "accept":
                assert refused_or_recorded(index, elf_copy, K61) == "clean", what
            else:
                refused(index, elf_copy, K61, *([word] if word else []))
        finally:
            D.unpatch(elf_copy, old)


def test_truncated_elf(index, elf_copy):
    """Cut the copy shorter and shorter (os.truncate: no 553 MB copy per cut)."""
    size = os.path.getsize(elf_copy)
    L = D.elf_layout(elf_copy)
    ram = max(L.loads, key=lambda s: s[1])
    rom = max(L.loads, key=lambda s: s[3])           # the last segment in the file
    cuts = [("last byte", size - 1, "ok"),
            ("inside the last segment", rom[3] + 10, "ok"),
            ("end of RAM", ram[3] + ram[2] - 4096 * 7 - 5, "any"),
            ("half of RAM", ram[3] + ram[2] // 2, "refuse"),
            ("start of RAM", ram[3] + 5000, "refuse"),
            ("inside the notes", L.notes[0][0] + 100, "refuse"),
            ("inside the program headers", L.phoff + 20, "refuse"),
            ("inside the ELF header", 40, "refuse"),
            ("3 bytes", 3, "refuse"),
            ("empty", 0, "refuse")]
    for what, at, expect in sorted(cuts, key=lambda c: -c[1]):
        os.truncate(elf_copy, at)
        if expect == "refuse":
            refused(index, elf_copy, K61)
        elif expect == "ok":
            # Only segments the kernel never mapped as RAM (BIOS, video) lose bytes.
            assert refused_or_recorded(index, elf_copy, K61) == "clean", what
        else:
            refused_or_recorded(index, elf_copy, K61)


# --- not dumps, wrong vmlinuxes ---------------------------------------------------------
def test_not_a_dump(index, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("this is not a crash dump\n" * 20)
    refused(index, text, K61, "unknown dump format", real=True)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    refused(index, empty, K61, "empty", real=True)
    # a directory is a /var/crash tree (tests/test_locate.py), whose dumps --name cannot name
    refused(index, tmp_path, K61, "is a directory", "--name applies to a single dump",
            real=True)
    refused(index, tmp_path / "missing", K61, "No such file", real=True)
    refused(index, fd.vmlinux(K61), K61, "not a core dump", real=True)  # an ELF, not a core
    refused(index, "/bin/ls", K61, "not a core dump", real=True)


def test_wrong_vmlinux(index, tmp_path):
    for k, other in ((K61, K510), (K510, K61)):
        line = refused(index, fd.dump(k, MDF), k, "wrong vmlinux", vmlinux=fd.vmlinux(other),
                       name_file=fd.vmlinux(other), real=True)
        assert "build id" in line
    refused(index, fd.dump(K61, MDF), K61, vmlinux="/bin/ls", name_file="/bin/ls", real=True)
    text = tmp_path / "vmlinux.txt"
    text.write_text("not an ELF\n")
    refused(index, fd.dump(K61, MDF), K61, "not an ELF", vmlinux=text, name_file=text)
    refused(index, fd.dump(K61, MDF), K61, vmlinux=tmp_path / "nope", name_file="nope")
    cut = D.prefix_copy(fd.vmlinux(K61), tmp_path / "vmlinux.cut", 3000)
    refused(index, fd.dump(K61, MDF), K61, vmlinux=cut, name_file=cut)


def test_damaged_vmlinux(tmp_path):
    """Bytes of the vmlinux's DWARF or symbol table overwritten, in a fresh index (so no
    cached layouts): refused with one line naming the vmlinux, or (the damage missed
    everything the walk needs) ingested cleanly."""
    import random

    from vmdex.indexer.kernel.symtab import ElfImage

    src = fd.vmlinux(K510)
    elf = ElfImage(src)
    secs = {n: (int(elf.shdrs[i]["offset"]), int(elf.shdrs[i]["size"]))
            for i, n in enumerate(elf.names) if n in (".debug_aranges", ".symtab", ".strtab",
                                                      ".debug_abbrev", ".debug_info")}
    elf.close()
    copy = D.sparse_copy(src, tmp_path / "vmlinux")
    rng = random.Random(5)
    outcomes = set()
    for i, name in enumerate([".debug_aranges", ".debug_aranges", ".symtab", ".strtab",
                              ".debug_abbrev", ".debug_info"]):
        off, size = secs[name]
        patches = {off + rng.randrange(min(size, 200000)): bytes(rng.randrange(256)
                                                                 for _ in range(8))
                   for _ in range(50)}
        old = D.patch(copy, patches)
        try:
            r = D.vmdex_inproc("ingest", "--vmlinux", copy, "--name", "x",
                               fd.dump(K510, MDF), db=tmp_path / f"fresh{i}.db")
        finally:
            D.unpatch(copy, old)
        if r.code == 0:
            outcomes.add("ingested")
            continue
        line = D.assert_one_line_error(r, copy)
        assert "dump is damaged" not in line, line   # the vmlinux is to blame, not the dump
        outcomes.add("refused")
    assert "refused" in outcomes


def test_vmlinux_without_debug_info(tmp_path, stripped_vmlinux):
    """A fresh index has no cached layouts: a vmlinux without DWARF is refused, and the
    index it would have started is not made (it is created once the walk is under way)."""
    db = tmp_path / "fresh.db"
    r = D.vmdex("ingest", "--vmlinux", stripped_vmlinux, fd.dump(K61, MDF), db=db)
    line = D.assert_one_line_error(r, stripped_vmlinux)
    assert "no debug info" in line
    assert not db.exists()
    r = D.vmdex("vm", db=db)
    assert r.code == 2 and "no index at" in r.err, r.err


def test_vmlinux_without_debug_info_uses_cached_layouts(index, stripped_vmlinux):
    """The same kernel's layouts are already in the index (keyed by build id): the
    stripped vmlinux is enough, and the answers are the same."""
    name = index.name()
    r = ingest_bad(index, fd.dump(K61, MDF), K61, vmlinux=stripped_vmlinux, name=name)
    assert r.code == 0, r.err
    index.accepted.add(name)
    assert answers(index.db, name, K61) == index.answers[K61]
    assert_intact(index)


def test_kdump_without_vmcoreinfo(index, tmp_path):
    src = fd.dump(K510, MDF)
    raw = src.read_bytes()
    L = D.kdump_layout_of(raw)
    patches = {L.sub_offset + 40: P("<Q", 0)}
    nb = raw[L.notes[0]:L.notes[0] + L.notes[1]]
    for o in D.note_name_offsets(nb, L.notes[0], b"VMCOREINFO"):
        patches[o] = b"XMCOREINFO"
    p = D.patched_copy(src, tmp_path / "no-vmcoreinfo", patches)
    refused(index, p, K510, "no VMCOREINFO")


def test_failed_reingest_keeps_the_old_copy(index, tmp_path):
    """Re-ingesting a name with a damaged dump fails and leaves the stored copy alone."""
    src = fd.dump(K61, MDF)
    p = D.prefix_copy(src, tmp_path / "half", os.path.getsize(src) // 2)
    refused(index, p, K61, name=GOOD[K61])
    assert answers(index.db, GOOD[K61], K61) == index.answers[K61]


# --- bad indexes ------------------------------------------------------------------------
def test_bad_index(tmp_path):
    dump = fd.dump(K61, MDF)
    r = D.vmdex("ingest", "--vmlinux", fd.vmlinux(K61), dump, db=tmp_path / "no" / "x.db")
    D.assert_one_line_error(r, tmp_path / "no" / "x.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"definitely not sqlite " * 100)
    before = junk.read_bytes()
    r = D.vmdex("ingest", "--vmlinux", fd.vmlinux(K61), dump, db=junk)
    D.assert_one_line_error(r, junk)
    r = D.vmdex("vm", db=junk)
    D.assert_one_line_error(r, junk)
    assert junk.read_bytes() == before
    r = D.vmdex("vm", db=tmp_path / "absent.db")
    D.assert_one_line_error(r, tmp_path / "absent.db")


def test_damaged_index_file(tmp_path):
    """An index whose pages were overwritten: every command fails with one line (exit 2),
    never a driver traceback or an 'internal error'."""
    db = tmp_path / "damaged.db"
    r = D.vmdex("ingest", "--vmlinux", fd.vmlinux(K510), "--name", "x", fd.dump(K510, MDF),
                db=db)
    assert r.code == 0, r.err
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    size = os.path.getsize(db)
    with open(db, "r+b") as f:
        for off in range(8192, size, 4096 * 7):
            f.seek(off)
            f.write(bytes((i * 37 + off) & 0xFF for i in range(3000)))
    for args in (["--dump", "x", "vm", "-p", "1"], ["--dump", "x", "foreach", "vm", "-p"],
                 ["dumps"], ["ingest", "--vmlinux", fd.vmlinux(K510), "--name", "y",
                             fd.dump(K510, MDF)]):
        r = D.vmdex(*args, db=db)
        if r.code == 0:       # the pages this command reads happened to survive
            continue
        line = D.assert_one_line_error(r)
        assert "malformed" in line or "not a database" in line or "index" in line, line


def test_answers_unchanged_at_the_end(index):
    """After every damaged ingest above, the good dumps answer byte for byte as before."""
    assert_intact(index)
    for k in KERNELS:
        assert answers(index.db, GOOD[k], k) == index.answers[k]
