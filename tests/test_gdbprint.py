"""render_struct against crash 9.0.2's own `vm -m`/`vm -v` output, byte for byte, plus
small synthetic types for gdb rules the fixtures do not exercise."""
from __future__ import annotations

import re

import pytest

from vmdex.indexer.dumpfile import open_dump
from vmdex.indexer.kernel.types import KernelTypes, load_kernel_types
from vmdex.indexer.kernel.vmcoreinfo import VmcoreInfo
from vmdex.indexer.kernel.gdbprint import render_struct
from tests import fixturedata as fd

START_KERNEL_MAP = 0xFFFFFFFF80000000
CMD = re.compile(r"vm (?:-([xd]) )?-([mv]) (\d+)$")
CASES = [(k, f, cmd) for k in fd.kernels() for f, cmd, _ in fd.oracle_commands(k)
         if CMD.match(cmd)]


class _Kernel:
    """Types, symbols and direct-map reads for one fixture dump (test-side plumbing)."""

    def __init__(self, kernel):
        kt, st = load_kernel_types(fd.vmlinux(kernel))
        # what the index stores and the query side reads back
        self.types = KernelTypes.from_json(kt.to_json())
        self.tree = self.types.render_subset()
        self.dump = open_dump(fd.dump(kernel, "vmcore.mdf-c-d31"))
        info = VmcoreInfo.parse(self.dump.vmcoreinfo)
        self.kaslr = info.kerneloffset
        self.phys_base = info.number("phys_base")
        self.symtab = st
        pob = st.address("page_offset_base") + self.kaslr
        pa = (pob - START_KERNEL_MAP + self.phys_base) % (1 << 64)
        self.page_offset = int.from_bytes(self.dump.read(pa, 8), "little")

    def read(self, va, size):
        return self.dump.read(va - self.page_offset, size)

    def symbolize(self, addr):
        return self.symtab.symbolize(addr, self.kaslr)


_kernels: dict[str, _Kernel] = {}


def kernel_ctx(k) -> _Kernel:
    if k not in _kernels:
        _kernels[k] = _Kernel(k)
    return _kernels[k]


def _oracle_struct_text(path) -> str:
    """Drop the `PID: ...` task header line; the rest is gdb's struct output."""
    return path.read_text().split("\n", 1)[1]


@pytest.mark.parametrize("kernel,fname,cmd", CASES)
def test_matches_crash(kernel, fname, cmd):
    kc = kernel_ctx(kernel)
    m = CMD.match(cmd)
    radix = 16 if m.group(1) == "x" else 10
    plain = (fd.oracle_dir(kernel) / ("vm." + fname.split(".", 1)[1])).read_text()
    lines = plain.splitlines()
    if m.group(2) == "m":
        struct_name = "mm_struct"
        addrs = [int(lines[2].split()[0], 16)]           # the MM column
    else:
        struct_name = "vm_area_struct"
        start = next(i for i, ln in enumerate(lines) if ln.split()[:1] == ["VMA"])
        addrs = [int(ln.split()[0], 16) for ln in lines[start + 1:] if ln.strip()]
    size = kc.types.sizeof(struct_name)
    for tree in (kc.types.data, kc.tree):                # full graph and render subset
        got = "".join(render_struct(tree, struct_name, kc.read(a, size), kc.symbolize,
                                    radix, addr=a) for a in addrs)
        assert got == _oracle_struct_text(fd.oracle_dir(kernel) / fname)


@pytest.mark.parametrize("kernel", sorted({k for k, _, _ in CASES}))
@pytest.mark.parametrize("struct_name", ["mm_struct", "vm_area_struct"])
def test_pointer_fields_are_what_the_renderer_asks(kernel, struct_name):
    """The ingest collects `<symbol>` texts from pointer_fields() without rendering: it must
    name exactly the values the renderer looks up, on this kernel's real objects."""
    from vmdex.indexer.kernel.gdbprint import pointer_fields
    from vmdex.indexer.kernel.pointers import collect_pointer_symbols

    kc = kernel_ctx(kernel)
    size = kc.types.sizeof(struct_name)
    addrs = set()
    for f, cmd, _ in fd.oracle_commands(kernel):
        if cmd.startswith("vm ") and CMD.match(cmd):
            lines = (fd.oracle_dir(kernel) / ("vm." + f.split(".", 1)[1])).read_text().splitlines()
            if struct_name == "mm_struct":
                addrs.add(int(lines[2].split()[0], 16))
            else:
                start = next(i for i, ln in enumerate(lines) if ln.split()[:1] == ["VMA"])
                addrs |= {int(ln.split()[0], 16) for ln in lines[start + 1:] if ln.strip()}
    assert addrs
    for a in sorted(addrs):
        raw = kc.read(a, size)
        asked: set[int] = set()
        render_struct(kc.types.data, struct_name, raw, lambda v: asked.add(v), 10, addr=a)
        ptrs, flex = pointer_fields(kc.types.data, struct_name)
        found = {int.from_bytes(raw[o:o + n], "little") for o, n in ptrs} | \
            {(a + o) % (1 << 64) for o in flex}
        assert asked == found - {0}
    objects = [(struct_name, kc.read(a, size), a) for a in sorted(addrs)]
    slow: dict = {}
    for name, raw, a in objects:
        render_struct(kc.types.data, name, raw,
                      lambda v: slow.setdefault(v, kc.symbolize(v)), 10, addr=a)
    assert collect_pointer_symbols(kc.types.data, kc.symbolize, objects) == \
        {v: s for v, s in slow.items() if s}


def test_all_oracle_files_covered():
    names = {f for _, f, _ in CASES}
    assert {"vm-m.cow.txt", "vm-x-m.cow.txt", "vm-d-m.cow.txt", "vm-v.cow.txt",
            "vm-x-v.cow.txt", "vm-d-v.cow.txt", "vm-m.filemap.txt"} <= names
    assert len({k for k, _, _ in CASES}) == len(fd.kernels()) >= 2


# --- synthetic types: one node per line, ids are list indexes -------------------------
T = [
    {"k": "base", "n": "char", "sz": 1, "enc": "sc"},                  # 0
    {"k": "base", "n": "int", "sz": 4, "enc": "s"},                    # 1
    {"k": "base", "n": "_Bool", "sz": 1, "enc": "b"},                  # 2
    {"k": "array", "t": 0, "len": 8, "sz": 8},                         # 3 char[8]
    {"k": "enum", "n": "fl", "sz": 4, "s": 0,
     "e": [["F_NONE", 0], ["F_A", 1], ["F_B", 2], ["F_C", 8]]},        # 4 flag enum
    {"k": "enum", "n": "pl", "sz": 4, "s": 0,
     "e": [["P_0", 0], ["P_1", 1], ["P_3", 3]]},                       # 5 not flags
    {"k": "struct", "n": "empty", "sz": 0, "m": []},                   # 6
    {"k": "array", "t": 1, "len": None, "sz": 0},                      # 7 int[]
    {"k": "base", "n": "unsigned int", "sz": 4, "enc": "u"},           # 8
    {"k": "ptr", "sz": 8, "to": "func", "fn": 1},                      # 9
    {"k": "array", "t": 0, "len": 300, "sz": 300},                     # 10 char[300]
    {"k": "array", "t": 1, "len": 300, "sz": 1200},                    # 11 int[300]
    {"k": "union", "n": None, "sz": 4, "m": [["u", 8, 0], ["i", 1, 0]]},  # 12
    {"k": "typedef", "n": "u8", "t": 13},                              # 13 -> 14
    {"k": "base", "n": "unsigned char", "sz": 1, "enc": "uc"},         # 14
    {"k": "struct", "n": "s", "sz": 64, "m": [
        ["name", 3, 0],
        ["n", 1, 8],
        ["ok", 2, 12],
        ["c", 0, 13],
        ["fl", 4, 16],
        ["pl", 5, 20],
        ["e", 6, 24],
        [None, 12, 24],
        ["lo", 8, 28, 3, 224],       # bits 224..226 (offset 28, bit 0)
        ["hi", 1, 28, 5, 227],       # signed 5-bit field at bits 227..231
        ["fp", 9, 32],
        ["tail", 7, 40],
    ]},                                                                # 15
]
T[13]["t"] = 14
TYPES = {"types": T, "named": {"struct s": 15}}


def _raw(**kw):
    b = bytearray(64)
    b[0:8] = kw.get("name", b"ab\0\0\0\0\0\0")
    b[8:12] = kw.get("n", -2).to_bytes(4, "little", signed=True)
    b[12] = kw.get("ok", 1)
    b[13] = kw.get("c", 0x41)
    b[16:20] = kw.get("fl", 3).to_bytes(4, "little")
    b[20:24] = kw.get("pl", 2).to_bytes(4, "little")
    b[24:28] = kw.get("u", 0xFFFFFFFF).to_bytes(4, "little")
    b[28] = kw.get("bits", 0b11111_101)
    b[32:40] = kw.get("fp", 0xFFFFFFFF81000010).to_bytes(8, "little")
    return bytes(b)


def _sym(a):
    return "start_kernel+16" if a == 0xFFFFFFFF81000010 else None


def test_synthetic_decimal():
    out = render_struct(TYPES, "s", _raw(), _sym, 10, addr=0xFFFF888000001000)
    assert out == (
        "struct s {\n"
        '  name = "ab\\000\\000\\000\\000\\000",\n'
        "  n = -2,\n"
        "  ok = true,\n"
        "  c = 65 'A',\n"
        "  fl = (F_A | F_B),\n"
        "  pl = 2,\n"
        "  e = {<No data fields>},\n"
        "  {\n"
        "    u = 4294967295,\n"
        "    i = -1\n"
        "  },\n"
        "  lo = 5,\n"
        "  hi = -1,\n"
        "  fp = 0xffffffff81000010 <start_kernel+16>,\n"
        "  tail = 0xffff888000001028\n"
        "}\n")


def test_synthetic_hex():
    out = render_struct(TYPES, "s", _raw(), _sym, 16, addr=0xFFFF888000001000)
    assert "  n = 0xfffffffe,\n" in out
    assert "  ok = 0x1,\n" in out
    assert "  c = 0x41,\n" in out
    assert '  name = "ab\\000' in out                     # char arrays stay strings
    assert "  fl = (F_A | F_B),\n" in out                 # enums keep their names
    assert "  hi = 0xffffffff,\n" in out                  # bitfield at its type's width
    assert "fp = 0xffffffff81000010 <start_kernel+16>" in out


def test_synthetic_enum_and_bool_edges():
    out = render_struct(TYPES, "s", _raw(fl=0x15, pl=1, ok=2), _sym, 10)
    assert "  fl = (F_A | unknown: 0x14),\n" in out
    assert "  pl = P_1,\n" in out
    assert "  ok = 2,\n" in out
    out = render_struct(TYPES, "s", _raw(fl=0x30), _sym, 10)
    assert "  fl = (unknown: 0x30),\n" in out
    out = render_struct(TYPES, "s", _raw(fl=0), _sym, 10)
    assert "  fl = F_NONE,\n" in out


def test_synthetic_strings_and_chars():
    def name(raw8):
        out = render_struct(TYPES, "s", _raw(name=raw8), _sym, 10)
        return out.split("\n")[1]
    assert name(b"abcdefgh") == '  name = "abcdefgh",'         # no NUL: all 8 shown
    assert name(b"\0" * 8) == '  name = "\\000\\000\\000\\000\\000\\000\\000",'
    assert name(b'a"\\\n\t\x7f\xff\0') == '  name = "a\\"\\\\\\n\\t\\177\\377",'
    for c, want in ((0, "0 '\\000'"), (0x27, "39 '\\''"), (0xFF, "-1 '\\377'"),
                    (0x0A, "10 '\\n'")):
        out = render_struct(TYPES, "s", _raw(c=c), _sym, 10)
        assert f"  c = {want},\n" in out


def test_long_arrays_stop_at_256():
    types = {"types": T + [{"k": "struct", "n": "big", "sz": 1500,
                            "m": [["s", 10, 0], ["a", 11, 300]]}],
             "named": {"struct big": len(T)}}
    raw = b"x" * 299 + b"\0" + bytes(range(1, 201)) * 6
    out = render_struct(types, "big", raw, None, 10)
    assert f'  s = "{"x" * 256}"...,\n' in out
    ints = out.split("  a = {", 1)[1]
    assert ints.endswith("...}\n}\n")
    assert ints.count(", ") == 255


def test_unknown_struct():
    with pytest.raises(KeyError):
        render_struct(TYPES, "nope", b"", None, 10)
