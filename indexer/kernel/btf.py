"""The kernel's BTF (`.BTF`, in memory between `__start_BTF` and `__stop_BTF`) read into
the same KernelTypes graph the DWARF path builds (indexer.kernel.types).

Format (include/uapi/linux/btf.h): a header {u16 magic 0xeB9F; u8 version 1; u8 flags;
u32 hdr_len; u32 type_off, type_len, str_off, str_len} (offsets from the header's end),
then type records {u32 name_off; u32 info (vlen 0-15, kind 24-28, kind_flag 31);
u32 size|type} each followed by its kind's data. Type id 0 is void; ids count from 1.
Every offset, count and size is checked against the section: a crafted blob gives a
KernelError, never a hang or an IndexError.

What BTF lacks (reference note §1.2): global variables (so their array lengths come from
elsewhere, indexer.kernel.source) and compile-unit scope (a wanted name with two different
complete definitions is refused).
"""
from __future__ import annotations

import struct
import sys

from vmdex.indexer.errors import KernelError

MAGIC = 0xEB9F
(INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC,
 FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64) = range(1, 20)
# bytes of kind data after the 12-byte record: fixed, and per vlen entry
_EXTRA = {INT: (4, 0), PTR: (0, 0), ARRAY: (12, 0), STRUCT: (0, 12), UNION: (0, 12),
          ENUM: (0, 8), FWD: (0, 0), TYPEDEF: (0, 0), VOLATILE: (0, 0), CONST: (0, 0),
          RESTRICT: (0, 0), FUNC: (0, 0), FUNC_PROTO: (0, 8), VAR: (4, 0), DATASEC: (0, 12),
          FLOAT: (0, 0), DECL_TAG: (4, 0), TYPE_TAG: (0, 0), ENUM64: (0, 12)}
# the same in u32 words, indexed by kind (-1: no such kind)
_FIXED_WORDS = [_EXTRA[k][0] // 4 if k in _EXTRA else -1 for k in range(32)]
_PER_WORDS = [_EXTRA[k][1] // 4 if k in _EXTRA else 0 for k in range(32)]
QUALIFIERS = (VOLATILE, CONST, RESTRICT, TYPE_TAG)
INT_SIGNED, INT_CHAR, INT_BOOL = 1, 2, 4
MAX_CHAIN = 64          # qualifier/typedef chains longer than this are a loop


class Btf:
    """The parsed records: kind, name, kind_flag, vlen, size|type and where the kind data
    starts, per type id (index 0 = void)."""

    def __init__(self, data: bytes):
        if len(data) < 24:
            raise KernelError("BTF is truncated (no header)")
        magic, version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != MAGIC or version != 1:
            raise KernelError(f"not BTF (magic {magic:#x}, version {version})")
        if not 24 <= hdr_len <= len(data):
            raise KernelError(f"BTF header length {hdr_len} is out of the section")
        type_off, type_len, str_off, str_len = struct.unpack_from("<4I", data, 8)
        body = len(data) - hdr_len
        if type_off + type_len > body or str_off + str_len > body:
            raise KernelError("BTF type or string section lies past the end of .BTF")
        self.data = data
        self.strings = data[hdr_len + str_off:hdr_len + str_off + str_len]
        start, end = hdr_len + type_off, hdr_len + type_off + type_len
        if type_len % 4 == 0 and sys.byteorder == "little":
            at = self._record_words(memoryview(data)[start:end].cast("I"))
        else:
            at = self._record_words_slow(data, start, end)
        import numpy as np

        words = np.frombuffer(data, "<u4", type_len // 4, start) if at else None
        idx = np.array(at, np.int64)
        info = words[idx + 1].astype(np.int64) if at else idx
        self.kind = [0] + ((info >> 24) & 0x1F).tolist()
        self.name_off = [0] + (words[idx].tolist() if at else [])
        self.kflag = [0] + (info >> 31).tolist()
        self.vlen = [0] + (info & 0xFFFF).tolist()
        self.ref = [0] + (words[idx + 2].tolist() if at else [])
        self.at = [0] + (start + 4 * idx + 12).tolist()
        self._names: dict[int, str] = {}         # decoded names, by offset

    def _record_words(self, words) -> list[int]:
        """Where each type record starts (in u32 words from the type section's start):
        only the info word is read here, the rest is gathered at once."""
        fixed, per = _FIXED_WORDS, _PER_WORDS
        at: list[int] = []
        add = at.append
        i, n = 0, len(words)
        while i < n:
            if i + 3 > n:
                raise KernelError(f"BTF type {len(at) + 1} is truncated")
            info = words[i + 1]
            kind = (info >> 24) & 0x1F
            f = fixed[kind]
            if f < 0:
                raise KernelError(f"BTF type {len(at) + 1} has unknown kind {kind}")
            add(i)
            i += 3 + f + per[kind] * (info & 0xFFFF)
        if i != n:
            raise KernelError(f"BTF type {len(at)} runs past the type section")
        return at

    @staticmethod
    def _record_words_slow(data: bytes, pos: int, end: int) -> list[int]:
        """The same for a type section that is not whole u32 words (or a big-endian
        host): record by record with struct, in bytes, as word offsets only when aligned."""
        at: list[int] = []
        base = pos
        while pos < end:
            if pos + 12 > end:
                raise KernelError(f"BTF type {len(at) + 1} is truncated")
            (info,) = struct.unpack_from("<I", data, pos + 4)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            extra = _EXTRA.get(kind)
            if extra is None:
                raise KernelError(f"BTF type {len(at) + 1} has unknown kind {kind}")
            if (pos - base) % 4:
                raise KernelError(f"BTF type {len(at) + 1} is not 4-byte aligned")
            at.append((pos - base) // 4)
            pos += 12 + extra[0] + extra[1] * vlen
        if pos != end:
            raise KernelError(f"BTF type {len(at)} runs past the type section")
        return at

    def __len__(self) -> int:
        return len(self.kind)

    def name(self, off: int) -> str | None:
        if off == 0:
            return None
        got = self._names.get(off)
        if got is not None:
            return got
        if off >= len(self.strings):
            raise KernelError(f"BTF name offset {off} is past the string section")
        end = self.strings.find(b"\0", off)
        if end < 0:
            raise KernelError(f"BTF name at {off} is not terminated")
        got = self._names[off] = self.strings[off:end].decode("latin-1")
        return got

    def type_name(self, tid: int) -> str | None:
        return self.name(self.name_off[tid])

    def check(self, tid: int) -> int:
        if not 0 <= tid < len(self.kind):
            raise KernelError(f"BTF refers to type {tid}, past the last ({len(self.kind) - 1})")
        return tid

    def words(self, tid: int, fmt: str, i: int = 0, stride: int = 0) -> tuple:
        return struct.unpack_from(fmt, self.data, self.at[tid] + i * stride)

    def members(self, tid: int) -> list[tuple[str | None, int, int]]:
        """(name, type, offset word) of a struct/union."""
        return [(self.name(n), self.check(t), o)
                for n, t, o in (self.words(tid, "<III", i, 12) for i in range(self.vlen[tid]))]

    def enumerators(self, tid: int) -> list[tuple[str | None, int]]:
        """(name, value) of an ENUM or ENUM64, signed as its kind_flag says."""
        signed = self.kflag[tid]
        out = []
        for i in range(self.vlen[tid]):
            if self.kind[tid] == ENUM64:
                n, lo, hi = self.words(tid, "<III", i, 12)
                v = lo | hi << 32
                if signed and v >> 63:
                    v -= 1 << 64
            else:
                n, v = self.words(tid, "<Ii", i, 8)
                if not signed and v < 0:
                    v += 1 << 32
            out.append((self.name(n), v))
        return out

    def skip_qualifiers(self, tid: int) -> int:
        for _ in range(MAX_CHAIN):
            if self.kind[tid] not in QUALIFIERS:
                return tid
            tid = self.check(self.ref[tid])
        raise KernelError(f"BTF qualifier chain at type {tid} does not end")

    def by_name(self) -> dict[tuple[int, str], list[int]]:
        """{(kind, name): [type ids]} of the named structs, unions, enums and typedefs."""
        import numpy as np

        kinds = np.array(self.kind, np.int64)
        offs = np.array(self.name_off, np.int64)
        tids = np.flatnonzero(np.isin(kinds, (STRUCT, UNION, ENUM, ENUM64, TYPEDEF, FWD)) &
                              (offs != 0))
        offs = offs[tids]
        # every name's end at once: the first NUL at or after its offset
        nuls = np.flatnonzero(np.frombuffer(self.strings, np.uint8) == 0)
        end_at = np.searchsorted(nuls, offs)
        bad = (offs >= len(self.strings)) | (end_at >= len(nuls))
        if bad.any():
            self.name(int(offs[np.argmax(bad)]))      # raises the one-line error
        s, out = self.strings, {}
        for tid, kind, a, b in zip(tids.tolist(), kinds[tids].tolist(), offs.tolist(),
                                   nuls[np.minimum(end_at, len(nuls) - 1)].tolist()):
            out.setdefault((kind, s[a:b].decode("latin-1")), []).append(tid)
        return out


def enum_flag_meaningful(btf: Btf) -> bool:
    """pahole 1.24+ marks signed enums with kind_flag (and emits ENUM64): then a clear
    flag means unsigned. Older pahole never sets it, so signedness is guessed from values."""
    return any(btf.kflag[t] for t, k in enumerate(btf.kind) if k in (ENUM, ENUM64))


def chars_unmarked(btf: Btf) -> bool:
    """Whether this BTF leaves char signedness out (older pahole marks no character type
    signed, not even `signed char`): then plain `char` is what the machine's C ABI says."""
    for tid, kind in enumerate(btf.kind):
        if kind == INT and btf.ref[tid] == 1 and btf.type_name(tid) == "signed char":
            return not btf.words(tid, "<I")[0] >> 24 & INT_SIGNED
    return True


class GraphBuilder:
    """BTF type ids -> nodes of the KernelTypes graph (shapes documented in
    indexer.kernel.types), built only for what the wanted items reach."""

    def __init__(self, btf: Btf, char_signed: bool):
        self.btf = btf
        self.char_signed = char_signed if chars_unmarked(btf) else None
        self.types: list[dict] = []
        self.named: dict[str, int] = {}
        self.by_btf: dict[int, int | None] = {0: None}
        self.enum_flags = enum_flag_meaningful(btf)
        self._func: int | None = None

    def add(self, node: dict) -> int:
        """A node of its own (not from a BTF type), e.g. the array type of a variable."""
        return self._new(node)

    def _new(self, node: dict) -> int:
        self.types.append(node)
        return len(self.types) - 1

    def func_id(self) -> int:
        if self._func is None:
            self._func = self.named["func"] = self._new({"k": "func"})
        return self._func

    def type_id(self, tid: int) -> int | None:
        """Graph id of BTF type `tid` (None = void); qualifiers are looked through."""
        b = self.btf
        tid = b.skip_qualifiers(b.check(tid))
        if tid in self.by_btf:
            return self.by_btf[tid]
        kind, name = b.kind[tid], b.type_name(tid)
        if kind == INT:
            node = {"k": "base", "n": name, "sz": b.ref[tid], "enc": self._int_enc(tid)}
            gid = self.by_btf[tid] = self._new(node)
            self.named.setdefault(f"base {name}", gid)
        elif kind == FLOAT:
            gid = self.by_btf[tid] = self._new({"k": "base", "n": name, "sz": b.ref[tid],
                                                "enc": "f"})
            self.named.setdefault(f"base {name}", gid)
        elif kind == PTR:
            node = {"k": "ptr", "sz": 8}
            node.update(self.describe_target(b.ref[tid]))
            gid = self.by_btf[tid] = self._new(node)
        elif kind in (FUNC_PROTO, FUNC):
            gid = self.by_btf[tid] = self.func_id()
        elif kind == TYPEDEF:
            gid = self.by_btf[tid] = self._new({"k": "typedef", "n": name, "t": None})
            self.types[gid]["t"] = self.type_id(b.ref[tid])
            self.named.setdefault(f"typedef {name}", gid)
        elif kind == ARRAY:
            elem_t, _index_t, nelems = b.words(tid, "<III")
            gid = self.by_btf[tid] = self._new({"k": "array", "t": None, "len": nelems or None,
                                                "sz": 0})
            elem = self.type_id(b.check(elem_t))
            self.types[gid]["t"] = elem
            self.types[gid]["sz"] = nelems * self.size_of(elem)
        elif kind in (STRUCT, UNION, FWD):
            gid = self._struct(tid, kind, name)
        elif kind in (ENUM, ENUM64):
            gid = self._enum(tid, name)
        else:
            raise KernelError(f"BTF type {tid} (kind {kind}) is not a data type")
        return gid

    def _int_enc(self, tid: int) -> str:
        enc = self.btf.words(tid, "<I")[0] >> 24 & 0xF
        if enc & INT_BOOL:
            return "b"
        signed = bool(enc & INT_SIGNED)
        name = self.btf.type_name(tid) or ""
        if self.btf.ref[tid] == 1 and "char" in name:
            if name == "char" and self.char_signed is not None:
                signed = self.char_signed        # not recorded: the machine's C ABI
            return "sc" if signed or name == "signed char" else "uc"
        return "s" if signed else "u"

    def describe_target(self, tid: int) -> dict:
        """What a pointer points at, without expanding it (types._Builder's rules)."""
        b = self.btf
        typedef = None            # the outermost typedef's name is kept, its target looked at
        for _ in range(MAX_CHAIN):
            tid = b.skip_qualifiers(b.check(tid))
            kind, name = b.kind[tid], b.type_name(tid)
            if kind == TYPEDEF:
                typedef = name if typedef is None else typedef
                tid = b.ref[tid]
                continue
            d = self._target(tid, kind, name)
            if typedef is not None:
                d["to"] = typedef
            return d
        raise KernelError(f"BTF pointer target chain at type {tid} does not end")

    def _target(self, tid: int, kind: int, name: str | None) -> dict:
        b = self.btf
        if tid == 0:
            return {"to": "void"}
        if kind == FUNC_PROTO:
            return {"to": "func", "fn": 1}
        if kind == INT:
            d = {"to": name}
            if b.ref[tid] == 1 and not b.words(tid, "<I")[0] >> 24 & INT_BOOL:
                d["ch"] = 1
            return d
        if kind == FLOAT:
            return {"to": name}
        if kind == PTR:
            return {"to": "ptr"}
        if kind in (STRUCT, UNION, ENUM, ENUM64, FWD):
            kw = {STRUCT: "struct", UNION: "union", FWD: "union" if b.kflag[tid]
                  else "struct"}.get(kind, "enum")
            return {"to": f"{kw} {name}" if name else kw}
        if kind == ARRAY:
            return {"to": "array"}
        return {"to": "void"}

    def _struct(self, tid: int, kind: int, name: str | None) -> int:
        b = self.btf
        kw = "union" if kind == UNION or (kind == FWD and b.kflag[tid]) else "struct"
        if kind == FWD:
            gid = self.by_btf[tid] = self._new({"k": kw, "n": name, "sz": 0, "decl": 1})
            self.named.setdefault(f"{kw} {name}", gid)
            return gid
        node = {"k": kw, "n": name, "sz": b.ref[tid]}
        gid = self.by_btf[tid] = self._new(node)
        if name is not None:
            prev = self.named.get(f"{kw} {name}")
            if prev is None or self.types[prev].get("decl"):
                self.named[f"{kw} {name}"] = gid
        members = []
        for mname, mtid, off in b.members(tid):
            mt = self.type_id(mtid)
            if b.kflag[tid]:
                bits, bitpos = off >> 24, off & 0xFFFFFF
            else:
                bits, bitpos = self._int_bits(mtid, off)
            if bits:
                members.append([mname, mt, bitpos // 8, bits, bitpos])
            else:
                members.append([mname, mt, bitpos // 8])
        node["m"] = members
        return gid

    def _int_bits(self, mtid: int, off: int) -> tuple[int, int]:
        """(bit size, bit position) of a member of a struct without kind_flag: a bitfield
        is an INT whose bits or bit offset are not its whole storage."""
        b = self.btf
        t = b.skip_qualifiers(mtid)
        for _ in range(MAX_CHAIN):
            if b.kind[t] != TYPEDEF:
                break
            t = b.skip_qualifiers(b.check(b.ref[t]))
        if b.kind[t] == INT:
            word = b.words(t, "<I")[0]
            bits, shift = word & 0xFF, word >> 16 & 0xFF
            if bits != 8 * b.ref[t] or shift:
                return bits, off + shift
        return 0, off

    def _enum(self, tid: int, name: str | None) -> int:
        b = self.btf
        vals = [[n, v] for n, v in b.enumerators(tid)]
        signed = b.kflag[tid] if self.enum_flags else 0
        if not self.enum_flags and b.kind[tid] == ENUM:
            # old pahole: the values are the s32 bits; a negative one makes the enum signed
            s32 = [v - (1 << 32) if v >= 1 << 31 else v for _, v in vals]
            if any(v < 0 for v in s32):
                signed, vals = 1, [[n, v] for (n, _), v in zip(vals, s32)]
        node = {"k": "enum", "n": name, "sz": b.ref[tid], "s": signed, "e": vals}
        gid = self.by_btf[tid] = self._new(node)
        if name is not None:
            self.named.setdefault(f"enum {name}", gid)
        return gid

    def size_of(self, gid: int | None) -> int:
        from vmdex.indexer.kernel.types import node_size
        return node_size(self.types, gid)


def _layout(btf: Btf, tid: int) -> tuple:
    return (btf.kind[tid], btf.ref[tid], tuple((n, o) for n, _, o in btf.members(tid)))


def _complete(btf: Btf, index: dict, kinds: tuple[int, ...], name: str) -> int | None:
    """The one complete definition of `name` among `kinds`; KernelError on two that
    differ (BTF has no compile-unit scope to tell them apart)."""
    found = [t for k in kinds for t in index.get((k, name), ())]
    if not found:
        return None
    if len({_layout(btf, t) if btf.kind[t] in (STRUCT, UNION) else btf.ref[t]
            for t in found}) > 1 and btf.kind[found[0]] in (STRUCT, UNION):
        raise KernelError(f"BTF has {len(found)} different definitions of {name}")
    return found[0]


def _enums_naming(btf: Btf, names: set[str]) -> list[int]:
    """The ENUM/ENUM64 type ids (ascending) with an enumerator of one of `names`, found
    without decoding every enumerator: all enumerators' name offsets are gathered at once
    and only those whose string is one of the names (same first byte and length) are
    decoded."""
    import numpy as np

    kinds = np.array(btf.kind, np.int64)
    enums = np.flatnonzero((kinds == ENUM) | (kinds == ENUM64))
    counts = np.array(btf.vlen, np.int64)[enums]
    if not len(enums) or not counts.sum():
        return []
    stride = np.where(kinds[enums] == ENUM64, 12, 8)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    at = np.repeat(np.array(btf.at, np.int64)[enums], counts) + \
        (np.arange(int(counts.sum())) - first) * np.repeat(stride, counts)
    raw = np.frombuffer(btf.data, np.uint8)
    off = raw[at].astype(np.int64) | raw[at + 1].astype(np.int64) << 8 | \
        raw[at + 2].astype(np.int64) << 16 | raw[at + 3].astype(np.int64) << 24
    longest = max(len(n) for n in names)
    strs = np.frombuffer(btf.strings + b"\0" * (longest + 1), np.uint8)
    off = np.minimum(off, len(btf.strings))
    owner = np.repeat(enums, counts)
    hit = np.zeros(len(off), bool)
    for name in names:
        b = name.encode("latin-1")
        if not b:
            continue
        maybe = (strs[off] == b[0]) & (strs[off + len(b)] == 0)
        for j in np.flatnonzero(maybe).tolist():
            o = int(off[j])
            hit[j] = hit[j] or btf.strings[o:o + len(b)] == b
    return sorted(set(owner[hit].tolist()))


def extract(btf: Btf, structs, typedefs, enums, enumerators,
            char_signed: bool) -> tuple[GraphBuilder, dict]:
    """The wanted items (name lists as indexer.kernel.types keeps them) as graph nodes:
    (the builder, with `named` pointing at each wanted struct's complete definition;
    {enumerator: value} of every enum a wanted name or enumerator is in). `char_signed`:
    the machine's C ABI, for a BTF that does not record it."""
    try:
        return _extract(btf, structs, typedefs, enums, enumerators, char_signed)
    except RecursionError:
        raise KernelError("BTF types nest too deeply") from None


def _extract(btf, structs, typedefs, enums, enumerators, char_signed):
    g = GraphBuilder(btf, char_signed)
    index = btf.by_name()
    values: dict[str, int] = {}
    for name in structs:
        tid = _complete(btf, index, (STRUCT, UNION), name)
        if tid is not None:
            gid = g.type_id(tid)
            g.named[f"{g.types[gid]['k']} {name}"] = gid
    for name in typedefs:
        tid = _complete(btf, index, (TYPEDEF,), name)
        if tid is not None:
            g.type_id(tid)
    wanted_enums = [t for name in enums
                    for t in [_complete(btf, index, (ENUM, ENUM64), name)] if t is not None]
    pending = set(enumerators)
    for tid in _enums_naming(btf, pending) if pending else ():
        names = {n for n, _ in btf.enumerators(tid)}
        if names & pending:                # each wanted name from the first enum with it
            wanted_enums.append(tid)
            pending -= names
    for tid in wanted_enums:
        gid = g.type_id(tid)
        values.update({n: v for n, v in g.types[gid]["e"]})
    return g, values
