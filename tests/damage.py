"""Making damaged dumps out of the real fixtures, at test time, in temporary folders.

Layouts are parsed here with plain `struct`, independently of indexer.dumpfile, so a test
can aim its damage at a header field, a bitmap, a page descriptor or one page's data.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PAGE = 4096
_DESC = struct.Struct("<qIIQ")

# --- copies -----------------------------------------------------------------------------


def prefix_copy(src, dst, length: int) -> Path:
    """The first `length` bytes of src as a new file (a dump cut short)."""
    with open(src, "rb") as f, open(dst, "wb") as g:
        left = length
        while left > 0:
            chunk = f.read(min(left, 1 << 22))
            if not chunk:
                break
            g.write(chunk)
            left -= len(chunk)
    return Path(dst)


def patched_copy(src, dst, patches: dict[int, bytes]) -> Path:
    """A full copy of src with bytes replaced at the given file offsets."""
    shutil.copyfile(src, dst)
    patch(dst, patches)
    return Path(dst)


def unpatch(path, old: dict[int, bytes]) -> None:
    """Undo patch(): restore in reverse order, so overlapping patches come back right."""
    for off in reversed(list(old)):
        patch(path, {off: old[off]})


def patch(path, patches: dict[int, bytes]) -> dict[int, bytes]:
    """Overwrite bytes in place; returns the old bytes (to undo with unpatch(path, old))."""
    old = {}
    with open(path, "r+b") as f:
        for off, data in patches.items():
            f.seek(off)
            old[off] = f.read(len(data))
            f.seek(off)
            f.write(data)
    return old


# --- kdump-compressed layout ----------------------------------------------------------


@dataclass
class KdumpLayout:
    size: int
    block_size: int
    version: int
    sub_offset: int          # kdump_sub_header
    vmcoreinfo: tuple[int, int]   # (offset, size)
    notes: tuple[int, int]
    bitmap: tuple[int, int]       # (offset, length)
    descs: int               # first page descriptor
    ndesc: int
    data: int                # first byte after the descriptors
    max_mapnr: int
    ram: bytes
    dumpable: bytes

    def desc_offset(self, idx: int) -> int:
        return self.descs + idx * _DESC.size

    def desc(self, raw: bytes, idx: int) -> tuple[int, int, int, int]:
        return _DESC.unpack_from(raw, self.desc_offset(idx))

    def dumpable_pfns(self):
        bm = self.dumpable
        for i, b in enumerate(bm):
            if b:
                for j in range(8):
                    if b >> j & 1:
                        yield i * 8 + j

    def desc_index(self, pfn: int) -> int:
        bm = self.dumpable
        n = sum(bin(b).count("1") for b in bm[:pfn >> 3])
        return n + bin(bm[pfn >> 3] & ((1 << (pfn & 7)) - 1)).count("1")


def kdump_layout(path) -> KdumpLayout:
    """Layout of a plain (not flattened) kdump-compressed file."""
    raw = Path(path).read_bytes()
    return kdump_layout_of(raw)


def kdump_layout_of(raw: bytes) -> KdumpLayout:
    assert raw[:8] in (b"KDUMP   ", b"DISKDUMP"), raw[:8]
    (version,) = struct.unpack_from("<i", raw, 8)
    _status, bs, sub_blocks, bitmap_blocks, max_mapnr = struct.unpack_from("<IiiII", raw, 424)
    sub = bs
    off_vmci, size_vmci, off_note, size_note = struct.unpack_from("<qQqQ", raw, sub + 32)
    if version >= 6:
        (max_mapnr,) = struct.unpack_from("<Q", raw, sub + 96)
    bm_off, bm_len = (1 + sub_blocks) * bs, bitmap_blocks * bs
    bitmaps = raw[bm_off:bm_off + bm_len]
    one = -(-(-(-max_mapnr // 8)) // bs)
    if bitmap_blocks >= 2 * one:
        ram, dumpable = bitmaps[:bm_len // 2], bitmaps[bm_len // 2:]
    else:
        ram = dumpable = bitmaps
    ndesc = sum(bin(b).count("1") for b in dumpable)
    descs = bm_off + bm_len
    return KdumpLayout(size=len(raw), block_size=bs, version=version, sub_offset=sub,
                       vmcoreinfo=(off_vmci, size_vmci), notes=(off_note, size_note),
                       bitmap=(bm_off, bm_len), descs=descs, ndesc=ndesc,
                       data=descs + ndesc * _DESC.size, max_mapnr=max_mapnr, ram=ram,
                       dumpable=dumpable)


# --- ELF cores --------------------------------------------------------------------------
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_NHDR = struct.Struct("<III")


@dataclass
class ElfLayout:
    phoff: int
    phnum: int
    loads: list[tuple[int, int, int, int]]   # (paddr, memsz, filesz, offset)
    notes: list[tuple[int, int]]             # PT_NOTE (offset, size)
    phdr_offsets: list[int]

    def file_offset(self, pa: int) -> int | None:
        for paddr, memsz, filesz, off in self.loads:
            if paddr <= pa < paddr + filesz:
                return off + pa - paddr
        return None


def elf_layout(path) -> ElfLayout:
    with open(path, "rb") as f:
        hdr = f.read(_EHDR.size)
        fields = _EHDR.unpack(hdr)
        phoff, phentsize, phnum = fields[5], fields[9], fields[10]
        f.seek(phoff)
        ph = f.read(phentsize * phnum)
    loads, notes, offs = [], [], []
    for k in range(phnum):
        p_type, _fl, off, _va, paddr, filesz, memsz, _al = _PHDR.unpack_from(ph, k * phentsize)
        offs.append(phoff + k * phentsize)
        if p_type == 1:
            loads.append((paddr, memsz, filesz, off))
        elif p_type == 4:
            notes.append((off, filesz))
    return ElfLayout(phoff, phnum, loads, notes, offs)


def note_name_offsets(blob: bytes, base: int, want: bytes) -> list[int]:
    """File offsets of the name field of every note called `want` in a note blob."""
    out, i = [], 0
    while i + 12 <= len(blob):
        namesz, descsz, ntype = _NHDR.unpack_from(blob, i)
        if namesz == 0 and descsz == 0:
            break
        name = blob[i + 12:i + 12 + namesz].rstrip(b"\0")
        if name == want:
            out.append(base + i + 12)
        i += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
    return out


def elf_core_from_pages(out, pages, notes_blob: bytes) -> Path:
    """Write an ELF64 core: one PT_NOTE, then one PT_LOAD per run of consecutive pfns.

    `pages` yields (pfn, 4096 bytes) in increasing pfn order.
    """
    pages = list(pages)
    runs: list[list] = []
    for pfn, data in pages:
        if runs and runs[-1][0] + len(runs[-1][1]) == pfn:
            runs[-1][1].append(data)
        else:
            runs.append([pfn, [data]])
    phnum = 1 + len(runs)
    phoff = _EHDR.size
    note_off = phoff + phnum * _PHDR.size
    data_off = -(-(note_off + len(notes_blob)) // PAGE) * PAGE
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)
    with open(out, "wb") as f:
        f.write(_EHDR.pack(ident, 4, 62, 1, 0, phoff, 0, 0, _EHDR.size, _PHDR.size, phnum,
                           64, 0, 0))
        f.write(_PHDR.pack(4, 0, note_off, 0, 0, len(notes_blob), len(notes_blob), 0))
        pos = data_off
        for pfn, datas in runs:
            size = len(datas) * PAGE
            f.write(_PHDR.pack(1, 7, pos, 0, pfn * PAGE, size, size, 0))
            pos += size
        f.write(notes_blob)
        f.seek(data_off)
        for _pfn, datas in runs:
            for d in datas:
                f.write(d)
    return Path(out)


def make_note(name: bytes, ntype: int, desc: bytes) -> bytes:
    name0 = name + b"\0"
    pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
    return _NHDR.pack(len(name0), len(desc), ntype) + pad(name0) + pad(desc)


# --- the index --------------------------------------------------------------------------
_TABLES = ("tasks", "mms", "vmas", "page_runs", "page_table_faults", "swap_devices",
           "ingest_errors")


def dump_fingerprint(db, name: str) -> str:
    """A hash of every row the index holds for dump `name` (its dumps row included)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        h = hashlib.sha256()
        row = con.execute("SELECT * FROM dumps WHERE name = ?", (name,)).fetchone()
        assert row is not None, f"dump {name} missing from {db}"
        h.update(repr(row).encode())
        dump_id = row[0]
        for t in _TABLES:
            for r in con.execute(f"SELECT * FROM {t} WHERE dump_id = ? ORDER BY rowid",
                                 (dump_id,)):
                h.update(repr(r).encode())
        return h.hexdigest()
    finally:
        con.close()


def dump_names(db) -> list[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [r[0] for r in con.execute("SELECT name FROM dumps ORDER BY name")]
    finally:
        con.close()


def sparse_copy(src, dst) -> Path:
    """A real, independent copy (no hard link), so truncating or patching it is safe."""
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o644)
    return Path(dst)


# --- running the CLI ----------------------------------------------------------------------
VMDEX = str(Path(sys.executable).parent / "vmdex")


@dataclass
class Run:
    args: list[str]
    code: int
    out: str
    err: str


def vmdex(*args, db=None, timeout: float = 120) -> Run:
    """The installed CLI as a user runs it; a hang fails the test via TimeoutExpired."""
    cmd = [VMDEX] + (["--db", str(db)] if db else []) + [str(a) for a in args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       errors="replace")
    return Run(cmd, p.returncode, p.stdout, p.stderr)


def vmdex_inproc(*args, db=None, timeout: float = 120) -> Run:
    """The same CLI entry point (`query.main.main`) called in this process: no interpreter
    start-up per call, for the many-cases sweeps. stdout/stderr are captured; a hang is
    cut by SIGALRM (and then shows up as an internal error, failing the test)."""
    import io
    import signal

    from vmdex.query.main import main

    argv = ["vmdex"] + (["--db", str(db)] if db else []) + [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv, sys.stdout, sys.stderr

    def _alarm(*_):
        raise TimeoutError(f"vmdex {' '.join(argv[1:])} still running after {timeout}s")

    prev = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(timeout))
    code = 0
    try:
        sys.argv, sys.stdout, sys.stderr = argv, out, err
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, prev)
        sys.argv, sys.stdout, sys.stderr = saved
    return Run(argv, code, out.getvalue(), err.getvalue())


def assert_one_line_error(r: Run, *names: str, code: int = 2) -> str:
    """A clean refusal: the exit code, one `vmdex: ` line on stderr naming the file(s)."""
    assert "Traceback" not in r.err and "Traceback" not in r.out, r.err
    lines = r.err.splitlines()
    assert r.code == code, (r.args, r.code, r.err)
    assert len(lines) == 1, (r.args, r.err)
    assert lines[0].startswith("vmdex: "), lines
    assert "internal error" not in lines[0], lines
    for n in names:
        assert str(n) in lines[0], (n, lines[0])
    return lines[0]
