"""Dump readers on the real fixtures, plus corrupted copies and small synthetic files."""
from __future__ import annotations

import random
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmdex.indexer.dumpfile import open_dump
from vmdex.indexer.dumpfile import codecs
from vmdex.indexer.dumpfile.flattened import FlattenedReader
from vmdex.indexer.errors import DumpError, ExcludedPage, MemoryReadError, OutOfDump
from vmdex.indexer.kernel.vmcoreinfo import VmcoreInfo
from tests import fixturedata as fd

K61 = "linux-6.1.0-56-amd64"
K510 = "linux-5.10.0-32-cloud-amd64"
START_KERNEL_MAP = 0xFFFFFFFF80000000
PAGE = 4096
ALL = [(k, v) for k in fd.kernels() for v in fd.dump_variants(k)]

EXPECTED = {  # variant -> (format, compression)
    "vmcore.elf": ("elf", "none"),
    "vmcore.kdump-zlib": ("kdump-flattened", "zlib"),
    "vmcore.mdf-c-d31": ("kdump", "zlib"),
    "vmcore.mdf-l-d31": ("kdump", "lzo"),
    # The makedumpfile that wrote -p lacked snappy: status 0, every page stored raw.
    "vmcore.mdf-p-d31": ("kdump", "none"),
    "vmcore.mdf-z-d31": ("kdump", "zstd"),
}


@pytest.fixture(scope="module")
def dumps61():
    ms = {v: open_dump(fd.dump(K61, v)) for v in fd.dump_variants(K61)}
    yield ms
    for m in ms.values():
        m.close()


def kernel_pa(info: VmcoreInfo, vaddr: int) -> int:
    """Kernel-image virtual -> physical; phys_base may be negative, so wrap mod 2**64."""
    return (vaddr - START_KERNEL_MAP + info.number("phys_base")) % (1 << 64)


# --- every variant opens and describes itself ---------------------------------------------
@pytest.mark.parametrize("kernel,variant", ALL)
def test_variant_opens(kernel, variant):
    with open_dump(fd.dump(kernel, variant)) as m:
        assert (m.format, m.compression) == EXPECTED[variant]
        assert m.page_size == PAGE
        info = VmcoreInfo.parse(m.vmcoreinfo)
        assert info.osrelease == fd.release(kernel)  # what crash printed for this dump
        assert info.pagesize == PAGE
        kinds = {(name, ntype) for name, ntype, _ in m.notes}
        assert ("CORE", 1) in kinds and ("VMCOREINFO", 0) in kinds
        prstatus = [d for name, t, d in m.notes if (name, t) == ("CORE", 1)]
        assert all(len(d) == 336 for d in prstatus) and len(prstatus) == 2  # 2 vCPUs

        # The kernel's own utsname, read through kernel-image translation, names it too.
        pa = kernel_pa(info, info.symbol("init_uts_ns"))
        assert info.osrelease.encode() + b"\0" in m.read(pa, 400)
        pgd = m.read_page(kernel_pa(info, info.symbol("swapper_pg_dir")) // PAGE)
        assert len(pgd) == PAGE and any(pgd[256 * 8:])  # kernel half of the top level is populated


def test_page_states_per_variant(dumps61):
    # pfn 0x100 is low RAM (present everywhere); pfn 0xb0 is the VGA hole.
    for m in dumps61.values():
        assert m.page_state(0x100) in ("present", "excluded")
        assert m.page_state(0xB0) == "absent"
        assert m.page_state(1 << 40) == "absent"
        with pytest.raises(OutOfDump):
            m.read_page(1 << 40)


# --- same bytes everywhere ------------------------------------------------------------------
def test_swapper_pg_dir_identical_across_variants(dumps61):
    info = VmcoreInfo.parse(dumps61["vmcore.elf"].vmcoreinfo)
    pfn = kernel_pa(info, info.symbol("swapper_pg_dir")) // PAGE
    pages = {v: m.read_page(pfn) for v, m in dumps61.items()}
    assert len(set(pages.values())) == 1, {v: zlib.crc32(p) for v, p in pages.items()}


def test_common_pages_identical_across_variants(dumps61):
    ms = list(dumps61.values())
    mdf = dumps61["vmcore.mdf-c-d31"]
    common = [p for p in range(1 << 17)
              if all(m.page_state(p) == "present" for m in ms)]
    assert len(common) > 20000
    for pfn in common[::5]:  # ~5000 pages x 6 variants
        want = mdf.read_page(pfn)
        for v, m in dumps61.items():
            assert m.read_page(pfn) == want, (v, hex(pfn))


def test_kernel_text_identical(dumps61):
    """The whole first 2 MiB of kernel text, through the kernel-image mapping."""
    info = VmcoreInfo.parse(dumps61["vmcore.elf"].vmcoreinfo)
    pa = kernel_pa(info, info.symbol("_stext"))
    texts = {v: m.read(pa, 2 << 20) for v, m in dumps61.items()}
    assert len(set(texts.values())) == 1
    assert info.kerneloffset == info.symbol("_stext") - 0xFFFFFFFF81000000


# --- excluded and absent pages ------------------------------------------------------------
def test_excluded_pages(dumps61):
    full, elf = dumps61["vmcore.kdump-zlib"], dumps61["vmcore.elf"]
    filtered = [m for v, m in dumps61.items() if v.startswith("vmcore.mdf")]
    excluded = [p for p in range(1 << 17) if filtered[0].page_state(p) == "excluded"]
    assert len(excluded) > 50000
    for pfn in random.Random(7).sample(excluded, 200):
        for m in filtered:
            assert m.page_state(pfn) == "excluded"
            with pytest.raises(ExcludedPage) as e:
                m.read_page(pfn)
            assert e.value.paddr == pfn * PAGE
            with pytest.raises(ExcludedPage) as e:
                m.read(pfn * PAGE + 0x18, 8)
            assert e.value.paddr == pfn * PAGE + 0x18
        assert full.page_state(pfn) == "present"
        assert full.read_page(pfn) == elf.read_page(pfn)


def test_read_into_excluded_page_names_first_bad_address(dumps61):
    m = dumps61["vmcore.mdf-c-d31"]
    pfn = next(p for p in range(1, 1 << 17)
               if m.page_state(p) == "present" and m.page_state(p + 1) == "excluded")
    with pytest.raises(ExcludedPage) as e:
        m.read((pfn + 1) * PAGE - 8, 16)
    assert e.value.paddr == (pfn + 1) * PAGE
    assert m.read((pfn + 1) * PAGE - 8, 8) == m.read_page(pfn)[-8:]


def test_read_across_page_boundary(dumps61):
    for v, m in dumps61.items():
        pfn = next(p for p in range(0x1000, 1 << 17)
                   if m.page_state(p) == "present" and m.page_state(p + 1) == "present")
        a, b = m.read_page(pfn), m.read_page(pfn + 1)
        assert m.read(pfn * PAGE + 4090, 12) == a[4090:] + b[:6], v
        assert m.read(pfn * PAGE, 2 * PAGE) == a + b, v
        assert m.read(pfn * PAGE + 5, 0) == b""


# --- ELF ------------------------------------------------------------------------------------
def test_elf_pt_load_coverage(dumps61):
    elf, full = dumps61["vmcore.elf"], dumps61["vmcore.kdump-zlib"]
    segs = elf.segments()
    assert [(s[0], s[1]) for s in segs] == [
        (0, 0xA0000), (0xC0000, 0x1FF40000), (0xFD000000, 0x1000000), (0xFFFC0000, 0x40000)]
    # The same pfns exist in QEMU's ELF and its kdump (which has no filter).
    for lo, hi in [(0, 0x20100), (0xFCF00, 0xFE100), (0xFFF00, 0x100000)]:
        for pfn in range(lo, hi):
            assert elf.page_state(pfn) == full.page_state(pfn), hex(pfn)
    with pytest.raises(OutOfDump) as e:  # runs off the end of the first PT_LOAD
        elf.read(0x9F000, 0x2000)
    assert e.value.paddr == 0xA0000
    assert elf.read(0xFFFFFFF0, 16) == full.read(0xFFFFFFF0, 16)  # the BIOS reset vector
    with pytest.raises(OutOfDump):
        elf.read(0x100000000, 1)


def _elf(tmp: Path, loads, phnum_xnum=False, data=b"") -> Path:
    """A minimal ELF64 core: header, section header 0 (for PN_XNUM), phdrs, then `data`."""
    notes = _note("VMCOREINFO", 0, b"OSRELEASE=test\nPAGESIZE=4096\n")
    phnum = 1 + len(loads)
    shoff, phoff = 64, 128
    data_off = phoff + 56 * phnum
    hdr = struct.pack("<4sBBBB8xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 4, 62, 1, 0,
                      phoff, shoff, 0, 64, 56, 0xFFFF if phnum_xnum else phnum, 64, 1, 0)
    sh0 = struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, phnum, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 4, 0, data_off, 0, 0, len(notes), len(notes), 4)
    pos = data_off + len(notes)
    for paddr, filesz, memsz in loads:
        ph += struct.pack("<IIQQQQQQ", 1, 0, pos, paddr, paddr, filesz, memsz, 0)
        pos += filesz
    p = tmp / "core.elf"
    p.write_bytes(hdr + sh0 + ph + notes + data)
    return p


def _note(name: str, ntype: int, desc: bytes) -> bytes:
    n = name.encode() + b"\0"
    pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(n), len(desc), ntype) + pad(n) + pad(desc)


def test_elf_pn_xnum_zero_fill_and_truncation(tmp_path):
    body = bytes(range(256)) * 16 + b"\xaa" * PAGE  # page 0 data, then 1 page of segment 2
    loads = [(0x1000, PAGE, 2 * PAGE),          # second page zero-filled (filesz < memsz)
             (0x10000, 3 * PAGE, 3 * PAGE)]     # only 1 of 3 pages is in the file
    for xnum in (False, True):
        with open_dump(_elf(tmp_path, loads, phnum_xnum=xnum, data=body)) as m:
            assert m.format == "elf" and VmcoreInfo.parse(m.vmcoreinfo).osrelease == "test"
            assert m.read_page(1) == body[:PAGE]
            assert m.read_page(2) == bytes(PAGE) and m.page_state(2) == "present"
            assert m.read(0x1FF0, 0x20) == body[PAGE - 16:PAGE] + bytes(16)
            assert m.read_page(0x10) == b"\xaa" * PAGE
            assert m.page_state(0x11) == "absent" and m.page_state(0) == "absent"
            with pytest.raises(OutOfDump) as e:
                m.read(0x10FF0, 0x20)
            assert e.value.paddr == 0x11000 and "truncated" in str(e.value)
            with pytest.raises(OutOfDump):
                m.read_page(3)


# --- flattened ------------------------------------------------------------------------------
def _reassemble(src: Path, dst: Path) -> int:
    """Test-only: apply every record of a flattened file, like `makedumpfile -R`."""
    n = 0
    with open(src, "rb") as f, open(dst, "wb") as out:
        f.seek(4096)
        while True:
            off, size = struct.unpack(">qq", f.read(16))
            if off == -1:
                return n
            out.seek(off)
            out.write(f.read(size))
            n += 1


def test_flattened_equals_reassembled(tmp_path):
    src = fd.dump(K61, "vmcore.kdump-zlib")
    plain = tmp_path / "vmcore.reassembled"
    nrec = _reassemble(src, plain)
    want = plain.read_bytes()
    r = FlattenedReader(str(src))
    try:
        assert r.records == nrec and not r.truncated
        assert r.size == len(want)
        assert r.pread(0, r.size) == want
        for off in random.Random(3).sample(range(len(want)), 300):
            assert r.pread(off, 5000) == want[off:off + 5000]
        assert r.pread(len(want) - 10, 100) == want[-10:]
    finally:
        r.close()
    with open_dump(src) as flat, open_dump(plain) as re:
        assert re.format == "kdump" and flat.format == "kdump-flattened"
        assert flat.vmcoreinfo == re.vmcoreinfo and flat.notes == re.notes
        present = [p for p in range(1 << 17) if re.page_state(p) == "present"]
        for pfn in random.Random(4).sample(present, 2000):
            assert flat.read_page(pfn) == re.read_page(pfn)


def _flat(path: Path, records, end=True) -> None:
    body = b"makedumpfile".ljust(16, b"\0") + struct.pack(">qq", 1, 1)
    body = body.ljust(4096, b"\0")
    for off, data in records:
        body += struct.pack(">qq", off, len(data)) + data
    if end:
        body += struct.pack(">qq", -1, 0)
    path.write_bytes(body)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.binary(min_size=1, max_size=80)),
                min_size=1, max_size=12))
def test_flattened_later_records_win(records):
    want = bytearray()
    for off, data in records:  # a sparse file: holes are zeros
        want.extend(bytes(max(0, off + len(data) - len(want))))
        want[off:off + len(data)] = data
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "f"
        _flat(p, records)
        r = FlattenedReader(str(p))
        try:
            assert r.size == len(want)
            for off in range(0, len(want), 7):
                assert r.pread(off, 37) == bytes(want[off:off + 37])
        finally:
            r.close()


def test_flattened_truncated_stream(tmp_path):
    p = tmp_path / "f"
    _flat(p, [(0, b"abcd"), (10, b"0123456789")], end=False)
    p.write_bytes(p.read_bytes()[:-4])  # cut the last record short
    r = FlattenedReader(str(p))
    assert r.truncated and r.size == 16
    assert r.pread(0, 100) == b"abcd" + bytes(6) + b"012345"
    r.close()


# --- bad files ------------------------------------------------------------------------------
def test_bad_files(tmp_path):
    def fails(data: bytes, *words):
        p = tmp_path / "bad"
        p.write_bytes(data)
        with pytest.raises(DumpError) as e:
            open_dump(p)
        msg = str(e.value)
        assert str(p) in msg and "\n" not in msg
        for w in words:
            assert w in msg
    fails(b"", "empty")
    fails(b"hello world, not a dump", "unknown dump format")
    fails(b"KDU", "too short")
    fails(b"\x7fELF\x02\x01", "truncated ELF header")
    fails(fd.dump(K61, "vmcore.mdf-c-d31").read_bytes()[:300], "truncated kdump header")
    good = fd.dump(K61, "vmcore.mdf-c-d31").read_bytes()
    bs, sub = struct.unpack_from("<ii", good, 428)
    fails(good[:(1 + sub) * bs + 100], "truncated kdump bitmap")
    fails(good[:bs + 50], "runs past end of file")  # VMCOREINFO / notes cut off
    fails(b"makedumpfile".ljust(16, b"\0") + bytes(100), "truncated flattened header")
    flat = b"makedumpfile".ljust(16, b"\0") + struct.pack(">qq", 1, 1)
    fails(flat.ljust(4096, b"\0") + struct.pack(">qq", -1, 0), "no data records")
    fails(flat.ljust(4096, b"\0") + struct.pack(">qq", 0, 8) + b"NOTKDUMP",
          "no KDUMP signature")
    with pytest.raises(DumpError, match="cannot open"):
        open_dump(tmp_path / "missing")


class _Kdump:
    """A writable copy of mdf-c-d31 with helpers to patch one page's descriptor."""

    def __init__(self, tmp: Path):
        self.path = tmp / "vmcore"
        shutil.copyfile(fd.dump(K61, "vmcore.mdf-c-d31"), self.path)
        hdr = self.path.read_bytes()[:464]
        bs, sub, bitmap = struct.unpack_from("<iiI", hdr, 428)
        self.data_offset = (1 + sub + bitmap) * bs
        with open_dump(self.path) as m:
            present = [p for p in range(1 << 17) if m.page_state(p) == "present"]
            self.want = {p: m.read_page(p) for p in present[:400]}
        self.present = present

    def desc_at(self, pfn: int) -> int:
        return self.data_offset + 24 * self.present.index(pfn)

    def desc(self, pfn: int):
        with open(self.path, "rb") as f:
            f.seek(self.desc_at(pfn))
            return struct.unpack("<qIIQ", f.read(24))

    def patch(self, pfn: int, offset, size, flags) -> None:
        with open(self.path, "r+b") as f:
            f.seek(self.desc_at(pfn))
            f.write(struct.pack("<qII", offset, size, flags))


def test_corrupt_descriptors(tmp_path):
    k = _Kdump(tmp_path)
    zpfns = [p for p in list(k.want)[:400] if k.desc(p)[2] == 1]
    a, b, c, d, e, f = zpfns[:6]
    off, size, _, _ = k.desc(a)
    k.patch(a, off, 5000, 1)                       # bigger than a page
    k.patch(b, 0, size, 1)                         # never written
    k.patch(c, 1 << 40, size, 1)                   # past EOF
    k.patch(d, off, size, 0x40)                    # unknown codec
    k.patch(e, off, size - 20, 1)                  # cut-off zlib stream
    k.patch(f, off, size, 0)                       # "raw" but not a page's worth
    with open_dump(k.path) as m:
        cases = [(a, MemoryReadError, "corrupt page descriptor"),
                 (b, OutOfDump, "incomplete dump"),
                 (c, OutOfDump, "past end of file"),
                 (d, MemoryReadError, "unknown page compression flags 0x40"),
                 (e, MemoryReadError, "zlib: uncompress failed"),
                 (f, MemoryReadError, "uncompressed page is")]
        for pfn, err, words in cases:
            with pytest.raises(err) as exc:
                m.read(pfn * PAGE + 16, 8)
            assert exc.value.paddr == pfn * PAGE + 16 and words in str(exc.value)
            assert not isinstance(exc.value, ExcludedPage)
        ok = [p for p in k.want if p not in (a, b, c, d, e, f)]
        assert all(m.read_page(p) == k.want[p] for p in ok)


def test_truncated_kdump_file(tmp_path):
    k = _Kdump(tmp_path)
    data = k.path.read_bytes()
    # Zero pages share one early copy, so pick a page whose data really is cut off.
    late = next(p for p in reversed(k.present) if k.desc(p)[0] > len(data) // 2)
    k.path.write_bytes(data[:len(data) // 2])
    with open_dump(k.path) as m:
        first = list(k.want)[0]
        assert m.read_page(first) == k.want[first]
        with pytest.raises(OutOfDump, match="truncated dump"):
            m.read_page(late)


# --- codecs ---------------------------------------------------------------------------------
def test_codecs_round_trip():
    import cramjam
    import lzokay
    import zstandard

    page = (b"vmdex page " * 400)[:PAGE]
    packed = {codecs.ZLIB: zlib.compress(page),
              codecs.LZO: bytes(lzokay.compress(page)),
              codecs.SNAPPY: bytes(cramjam.snappy.compress_raw(page)),
              codecs.ZSTD: zstandard.ZstdCompressor().compress(page)}
    for flag, data in packed.items():
        assert codecs.decompress(flag, data, PAGE) == page
        with pytest.raises(DumpError, match="uncompress failed"):
            codecs.decompress(flag, data, PAGE // 2)
    assert codecs.decompress(0, page, PAGE) == page
    with pytest.raises(DumpError, match="unknown page compression"):
        codecs.decompress(codecs.ZLIB | codecs.ZSTD, packed[codecs.ZLIB], PAGE)
    assert [codecs.name(f) for f in (0, 1, 2, 4, 0x20, 0x9)] == \
        ["none", "zlib", "lzo", "snappy", "zstd", "zlib"]


# --- VMCOREINFO -----------------------------------------------------------------------------
def test_vmcoreinfo_from_real_notes():
    for kernel in fd.kernels():
        variant = fd.dump_variants(kernel)[-1]
        with open_dump(fd.dump(kernel, variant)) as m:
            text = m.vmcoreinfo
        info = VmcoreInfo.parse(text)
        raw = info.get("NUMBER(phys_base)")
        assert info.number("phys_base") == int(raw) and info.build_id
        assert info.symbol("swapper_pg_dir") == int(info.get("SYMBOL(swapper_pg_dir)"), 16)
        assert info.symbol("swapper_pg_dir") == info.symbol("init_top_pgt") > START_KERNEL_MAP
        assert info.number("pgtable_l5_enabled") in (0, 1)
        assert info.size("list_head") == 16 and info.offset("list_head.prev") == 8
        assert info.length("mem_section") > 0
        assert info.kerneloffset == int(info.get("KERNELOFFSET"), 16) > 0
        assert info.symbol("no_such_symbol") is None and info.number("nope") is None
    info510 = VmcoreInfo.parse(open_dump(fd.dump(K510, "vmcore.mdf-c-d31")).vmcoreinfo)
    assert info510.number("phys_base") == -486539264  # negative on this capture
    assert info510.number("PAGE_BUDDY_MAPCOUNT_VALUE") == -129


def test_vmcoreinfo_parsing_rules():
    info = VmcoreInfo.parse(
        "OSRELEASE=6.1.0\n"
        " PAGESIZE=8192\n"             # not at line start: ignored
        "PAGESIZE=4096\n"
        "PAGESIZE=16384\n"             # first occurrence wins
        "SYMBOL(x)=ffffffff81000000\n"
        "NUMBER(phys_base)=-96468992\n"
        "NUMBER(y)=17\n"
        "OFFSET(task_struct.mm)=2336\n"
        "garbage line\n"
        "SIZE(page)=64\n"
        "LENGTH(a.b)=3\n\0\0")
    assert info.osrelease == "6.1.0" and info.pagesize == 4096
    assert info.symbol("x") == 0xFFFFFFFF81000000
    assert info.number("phys_base") == -96468992 and info.number("y") == 17
    assert info.offset("task_struct.mm") == 2336 and info.size("page") == 64
    assert info.length("a.b") == 3
    assert info.build_id is None and info.kerneloffset == 0
    assert info.get("garbage line") is None and "SIZE(page)" in info


# --- cache and lifecycle ------------------------------------------------------------------
def test_page_cache_is_bounded(dumps61):
    m = dumps61["vmcore.kdump-zlib"]
    for pfn in range(0x1000, 0x1000 + m.cache_pages + 500):
        m.read_page(pfn)
    assert len(m._cache) == m.cache_pages
    assert m.read_page(0x1000) == dumps61["vmcore.elf"].read_page(0x1000)
