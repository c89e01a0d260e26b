"""Rebuild the fuzz corpus (tests/test_btf_kallsyms_fuzz.py) from a fixture dump:
`python -m tests.corpus.make DUMP`. Small, self-contained and valid slices of the dump's
real tables: btf.bin (the first BTF_TYPES types, their strings, references past them made
void) and kallsyms.bin + kallsyms.json (the first KALLSYMS_N symbols' tables, laid out as
the kernel does, with the VMCOREINFO values that describe them)."""
from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BTF_TYPES = 400
KALLSYMS_N = 600
BASE = 0xFFFFFFFF81000000


def small_btf(b) -> bytes:
    from vmdex.indexer.kernel import btf as B
    strings = bytearray(b"\0")
    remap: dict[int, int] = {0: 0}

    def name(off):
        if off not in remap:
            remap[off] = len(strings)
            strings.extend(b.strings[off:b.strings.index(b"\0", off) + 1])
        return remap[off]

    def tref(t):
        return t if t < BTF_TYPES else 0
    out = bytearray()
    for tid in range(1, BTF_TYPES):
        kind, vlen = b.kind[tid], b.vlen[tid]
        ref = b.ref[tid]
        if kind in (B.PTR, B.TYPEDEF, B.VOLATILE, B.CONST, B.RESTRICT, B.FUNC, B.VAR,
                    B.TYPE_TAG, B.DECL_TAG):
            ref = tref(ref)
        info = kind << 24 | vlen | b.kflag[tid] << 31
        out += struct.pack("<III", name(b.name_off[tid]), info, ref)
        fixed, per = B._EXTRA[kind]
        extra = bytearray(b.data[b.at[tid]:b.at[tid] + fixed + per * vlen])
        if kind == B.ARRAY:
            e, i, n = struct.unpack_from("<III", extra)
            extra = bytearray(struct.pack("<III", tref(e), tref(i), n))
        for j in range(vlen):
            o = fixed + per * j
            if kind in (B.STRUCT, B.UNION, B.FUNC_PROTO, B.DATASEC, B.ENUM, B.ENUM64):
                struct.pack_into("<I", extra, o, name(struct.unpack_from("<I", extra, o)[0])
                                 if kind not in (B.DATASEC,) else 0)
            if kind in (B.STRUCT, B.UNION, B.FUNC_PROTO):
                struct.pack_into("<I", extra, o + 4, tref(struct.unpack_from("<I", extra, o + 4)[0]))
        out += extra
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(out), len(out), len(strings))
    return hdr + bytes(out) + bytes(strings)


def small_kallsyms(src, info) -> tuple[bytes, dict]:
    """[offsets][relative_base][num_syms][names][markers][token_table][token_index] of the
    first KALLSYMS_N symbols, at BASE."""
    sym = info.symbol
    n = KALLSYMS_N
    names_va, table_va, index_va = (sym("kallsyms_names"), sym("kallsyms_token_table"),
                                    sym("kallsyms_token_index"))
    blob = src.read(names_va, table_va - names_va)
    pos = 0
    for _ in range(n):
        pos += 1 + blob[pos]
    names = blob[:pos]
    markers = b"".join(struct.pack("<I", 0) for _ in range(1))
    p, recs = 0, []
    for _ in range(n):
        recs.append(p)
        p += 1 + blob[p]
    markers = b"".join(struct.pack("<I", recs[i]) for i in range(0, n, 256))
    index = src.read(index_va, 512)
    table = src.read(table_va, max(struct.unpack_from("<256H", index)) + 64)
    offsets = src.read(sym("kallsyms_offsets"), 4 * n)
    rb = src.read(sym("kallsyms_relative_base"), 8)

    def pad(x):
        return x + bytes(-len(x) % 8)
    parts = [("kallsyms_offsets", pad(offsets)), ("kallsyms_relative_base", rb),
             ("kallsyms_num_syms", pad(struct.pack("<I", n))), ("kallsyms_names", pad(names)),
             ("kallsyms_markers", pad(markers)), ("kallsyms_token_table", pad(table)),
             ("kallsyms_token_index", index)]
    out, where = bytearray(), {}
    for k, v in parts:
        where[f"SYMBOL({k})"] = f"{BASE + len(out):x}"
        out += v
    where["SYMBOL(_stext)"] = info.get("SYMBOL(_stext)")
    return bytes(out), where


def main(dump: str) -> None:
    from vmdex.indexer.dumpfile import open_dump
    from vmdex.indexer.kernel import btf as B
    from vmdex.indexer.kernel.source import DumpSource
    from vmdex.indexer.kernel.vmcoreinfo import VmcoreInfo
    with open_dump(dump) as phys:
        info = VmcoreInfo.parse(phys.vmcoreinfo)
        src = DumpSource(phys, info)
        ks = src.kallsyms
        s, e = ks.address("__start_BTF"), ks.address("__stop_BTF")
        (HERE / "btf.bin").write_bytes(small_btf(B.Btf(src.read(s, e - s))))
        raw, vmci = small_kallsyms(src, info)
        (HERE / "kallsyms.bin").write_bytes(raw)
        (HERE / "kallsyms.json").write_text(json.dumps({"base": f"{BASE:x}", "vmcoreinfo": vmci},
                                                       indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
