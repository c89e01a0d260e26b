"""Print a kernel struct the way crash's embedded gdb does (`vm -m`, `vm -v`, `-x`, `-d`).

Input is the stored type graph (indexer.kernel.types JSON shape: {"types": [...],
"named": {...}}) and the raw bytes of the object; no DWARF, no dump, no indexer import.

gdb settings crash uses: pretty structs, unlimited repeat threshold (no `<repeats>`),
print elements 256, output radix 10 (`-d`) or 16 (`-x`, i.e. output-format 'x').
The rules reproduced (gdb valprint.c / c-valprint.c / cp-valprint.c behaviour):
  * struct: `{`, then per field `\n` + 2+2*depth spaces + `name = value` joined by `,`,
    then `\n` + 2*depth spaces + `}`; anonymous members omit `name = `; no fields:
    `{<No data fields>}`.
  * array: `{a, b, ...}`; at most 256 elements then `...`; 1-byte integer elements print
    as a C string (trailing NUL dropped, others `\000`, 256 chars max then `...`), even
    under -x; arrays of unknown/zero length print as the member's address.
  * integers: decimal (signed per type) or `0x` + minimal hex of the two's complement
    at the type's width; 1-byte integers in decimal add ` 'c'`.
  * bool: true/false (other values decimal); hex under -x.
  * enum: enumerator name; flag enums `(A | B | unknown: 0x..)`; else decimal. Names
    are kept under -x (gdb only honours an explicit /x there).
  * pointer: `0x...` (radix-independent) plus ` <sym+off>` when addr_to_symbol knows it.
"""
from __future__ import annotations

PRINT_MAX = 256


def render_struct(types, struct_name: str, raw: bytes, addr_to_symbol=None,
                  radix: int = 10, addr: int | None = None) -> str:
    """`struct <name> {...}\\n` exactly as crash prints it for `vm -m`/`vm -v`.

    types: the KernelTypes JSON (dict or text, or its render_subset); raw: the bytes;
    addr_to_symbol(int) -> str|None gives the text inside `<...>`; addr: the object's
    kernel address (only needed for flexible array members, printed as addresses)."""
    if isinstance(types, (str, bytes)):
        import json
        types = json.loads(types)
    p = _Printer(types, addr_to_symbol, radix == 16)
    tid = None
    for kw in ("struct ", "union "):
        tid = types["named"].get(kw + struct_name)
        if tid is not None:
            kind = kw.strip()
            break
    if tid is None:
        raise KeyError(f"no type struct {struct_name}")
    out: list[str] = [f"{kind} {struct_name} "]
    p.value(out, tid, raw, 0, addr or 0, 0, None)
    out.append("\n")
    return "".join(out)


def pointer_fields(types: dict, struct_name: str) -> tuple[list[tuple[int, int]], list[int]]:
    """Where render_struct would ask addr_to_symbol, found without rendering: the (offset,
    size) of every pointer it prints, and the offset of every flexible array it prints as
    an address (the object's address + offset). The same walk as _Printer's."""
    p = _Printer(types, None, False)
    tid = types["named"].get("struct " + struct_name) or types["named"].get("union " + struct_name)
    if tid is None:
        raise KeyError(f"no type struct {struct_name}")
    ptrs: list[tuple[int, int]] = []
    flex: list[int] = []

    def walk(tid, off):
        rid = p.strip(tid)
        if rid is None:
            return
        t = p.t[rid]
        k = t["k"]
        if k in ("struct", "union"):
            for m in t.get("m") or []:
                if len(m) <= 3:                  # bitfields are never pointers
                    walk(m[1], off + m[2])
        elif k == "ptr":
            ptrs.append((off, t["sz"]))
        elif k == "array":
            erid = p.strip(t["t"])
            esz = p._size(erid)
            n = t.get("len")
            if not n or not esz:
                flex.append(off)
                return
            et = p.t[erid] if erid is not None else None
            if et is not None and et["k"] == "base" and et["sz"] == 1 and et["enc"] != "b":
                return                           # a char array prints as a string
            if et is not None and et["k"] not in ("struct", "union", "array", "ptr"):
                return                           # no pointer inside
            for i in range(min(n, PRINT_MAX)):
                walk(t["t"], off + i * esz)

    walk(tid, 0)
    return ptrs, flex


class _Printer:
    def __init__(self, types, sym, hexmode):
        self.t = types["types"]
        self.sym = sym
        self.hex = hexmode
        self._flag = {}

    def strip(self, tid):
        t = self.t
        while tid is not None and t[tid]["k"] == "typedef":
            tid = t[tid]["t"]
        return tid

    # one value of type `tid` found at raw[off:], at recursion depth `depth`
    def value(self, out, tid, raw, off, base, depth, bits):
        rid = self.strip(tid)
        if rid is None:
            out.append("void")
            return
        t = self.t[rid]
        k = t["k"]
        if k in ("struct", "union"):
            self.struct(out, t, raw, off, base, depth)
        elif k == "array":
            self.array(out, t, raw, off, base, depth)
        elif k == "ptr":
            self.pointer(out, _uint(raw, off, t["sz"]))
        elif k == "base":
            self.scalar(out, t, self.read_int(raw, off, t["sz"], t["enc"] in ("s", "sc"), bits))
        elif k == "enum":
            self.enum(out, rid, t, self.read_int(raw, off, t["sz"], bool(t.get("s")), bits))
        elif k == "func":
            out.append("{<text variable, no debug info>}")
        else:
            out.append("?")

    @staticmethod
    def read_int(raw, off, size, signed, bits):
        if bits is None:
            v = _uint(raw, off, size)
            width = size * 8
        else:                                    # (bit_size, bit_pos from `off` * 8)
            bsize, bpos = bits
            nbytes = (bpos + bsize + 7) // 8
            v = (int.from_bytes(raw[off:off + nbytes], "little") >> bpos) & ((1 << bsize) - 1)
            width = bsize
        if signed and v >> (width - 1) & 1:
            v -= 1 << width
        return v

    def struct(self, out, t, raw, off, base, depth):
        members = t.get("m") or []
        if not members:
            out.append("{<No data fields>}")
            return
        out.append("{")
        pad = " " * (2 + 2 * depth)
        first = True
        for m in members:
            if not first:
                out.append(",")
            first = False
            out.append("\n")
            out.append(pad)
            if m[0]:
                out.append(m[0])
                out.append(" = ")
            if len(m) > 3:                       # bitfield: bits relative to its byte
                bitpos = m[4]
                moff = off + bitpos // 8
                self.value(out, m[1], raw, moff, base, depth + 1, (m[3], bitpos % 8))
            else:
                self.value(out, m[1], raw, off + m[2], base, depth + 1, None)
        out.append("\n")
        out.append(" " * (2 * depth))
        out.append("}")

    def array(self, out, t, raw, off, base, depth):
        n = t.get("len")
        eid = t["t"]
        erid = self.strip(eid)
        esz = self._size(erid)
        et = self.t[erid] if erid is not None else None
        is_char = et is not None and et["k"] == "base" and et["sz"] == 1 and et["enc"] != "b"
        if not n or not esz:
            # unknown or zero length: gdb prints it like a pointer to its first element, a
            # char one with the string there (the ingest kept those bytes past the struct)
            self.pointer(out, (base + off) & 0xFFFFFFFFFFFFFFFF)
            if is_char and len(raw) > off:
                tail = raw[off:]
                z = tail.find(b"\0")
                out.append(" ")
                out.append(_c_string(tail[:z + 1] if z >= 0 else tail))
            return
        if is_char:
            out.append(_c_string(raw[off:off + n]))
            return
        out.append("{")
        count = min(n, PRINT_MAX)
        for i in range(count):
            if i:
                out.append(", ")
            self.value(out, eid, raw, off + i * esz, base, depth + 1, None)
        if count < n:
            out.append("...")
        out.append("}")

    def _size(self, rid):
        if rid is None:
            return 1
        return self.t[rid].get("sz") or 0

    def pointer(self, out, v):
        out.append(f"0x{v:x}")
        if v and self.sym is not None:
            s = self.sym(v)
            if s:
                out.append(f" <{s}>")

    def scalar(self, out, t, v):
        enc, size = t["enc"], t["sz"]
        if self.hex:
            out.append(f"0x{v & ((1 << (8 * size)) - 1):x}")
            return
        if enc == "b":
            out.append("false" if v == 0 else "true" if v == 1 else str(v))
            return
        out.append(str(v))
        if size == 1 and enc != "f":
            out.append(" ")
            out.append(_c_char(v & 0xFF))

    def enum(self, out, rid, t, v):
        for name, val in t["e"]:
            if val == v:
                out.append(name)
                return
        if self._is_flag_enum(rid, t):
            parts, rest = [], v
            for name, val in t["e"]:
                if val and rest & val:
                    parts.append(name)
                    rest &= ~val
            if rest:
                parts.append(f"unknown: 0x{rest:x}")
            out.append(f"({' | '.join(parts)})" if parts else "0")
            return
        out.append(str(v))

    def _is_flag_enum(self, rid, t):
        # gdb (dwarf2 reader): every enumerator >= 0 with at most one bit set
        r = self._flag.get(rid)
        if r is None:
            vals = [v for _, v in t["e"]]
            r = bool(vals) and all(v is not None and v >= 0 and bin(v).count("1") <= 1
                                   for v in vals)
            self._flag[rid] = r
        return r


def _uint(raw, off, size):
    return int.from_bytes(raw[off:off + size], "little")


_ESC = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}


def _escape(b: int, quote: str) -> str:
    if b in _ESC:
        return _ESC[b]
    if 0x20 <= b < 0x7F:                         # printable ASCII (high bytes: escaped)
        c = chr(b)
        return "\\" + c if c == quote or c == "\\" else c
    return f"\\{b:03o}"


def _c_char(b: int) -> str:
    return "'" + _escape(b, "'") + "'"


def _c_string(data: bytes) -> str:
    """gdb's printstr for a char array: drop one trailing NUL, 256 chars max, `...`."""
    n = len(data)
    if n and data[-1] == 0:
        n -= 1
    if n == 0:
        return '""'
    shown = data[:min(n, PRINT_MAX)]
    s = '"' + "".join(_escape(b, '"') for b in shown) + '"'
    if n > PRINT_MAX:
        s += "..."
    return s
