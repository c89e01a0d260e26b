"""A small, fast, read-only DWARF 2-5 reader for the few CUs vmdex needs.

Why not pyelftools' DIE iterator: it builds an object per DIE and per attribute, which is
~50x too slow for kernel CUs. Here a CU is copied once into `bytes`, abbreviations are
pre-compiled, and only top-level DIEs are indexed (children are skipped through
DW_AT_sibling when the producer emitted it). Types are then expanded on demand by offset.
Relocations are never applied: vmlinux is ET_EXEC, offsets in it are already final.
"""
from __future__ import annotations

import struct
from bisect import bisect_right

import numpy as np

from vmdex.indexer.errors import KernelError

# tags
TAG_array, TAG_enum, TAG_member, TAG_pointer = 0x01, 0x04, 0x0D, 0x0F
TAG_cu, TAG_struct, TAG_subroutine, TAG_typedef, TAG_union = 0x11, 0x13, 0x15, 0x16, 0x17
TAG_subrange, TAG_base, TAG_const, TAG_enumerator = 0x21, 0x24, 0x26, 0x28
TAG_subprogram, TAG_variable, TAG_volatile, TAG_restrict = 0x2E, 0x34, 0x35, 0x37
TAG_unspecified, TAG_atomic = 0x3B, 0x47
# attributes
AT_sibling, AT_name, AT_byte_size, AT_bit_offset, AT_bit_size = 0x01, 0x03, 0x0B, 0x0C, 0x0D
AT_low_pc, AT_const_value, AT_upper_bound, AT_count = 0x11, 0x1C, 0x2F, 0x37
AT_lower_bound = 0x22
AT_data_member_location, AT_declaration, AT_encoding = 0x38, 0x3C, 0x3E
AT_specification, AT_type, AT_data_bit_offset, AT_str_offsets_base = 0x47, 0x49, 0x6B, 0x72

# forms -> fixed size (None = variable; "A" address size; "O" offset size)
_FIXED = {0x01: "A", 0x05: 2, 0x06: 4, 0x07: 8, 0x0B: 1, 0x0C: 1, 0x0E: "O", 0x10: "R",
          0x11: 1, 0x12: 2, 0x13: 4, 0x14: 8, 0x17: "O", 0x19: 0, 0x1C: 4, 0x1D: "O",
          0x1E: 16, 0x1F: "O", 0x20: 8, 0x21: 0, 0x24: 8, 0x25: 1, 0x26: 2, 0x27: 3,
          0x28: 4, 0x29: 1, 0x2A: 2, 0x2B: 3, 0x2C: 4, 0x1F20: "O", 0x1F21: "O"}
_REF_FORMS = {0x11, 0x12, 0x13, 0x14, 0x15}
SHF_COMPRESSED = 0x800


def uleb(data, pos):
    b = data[pos]
    if b < 0x80:
        return b, pos + 1
    result, shift = b & 0x7F, 7
    while True:
        pos += 1
        b = data[pos]
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos + 1
        shift += 7


def sleb(data, pos):
    result, shift = 0, 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            if b & 0x40:
                result -= 1 << shift
            return result, pos


class Abbrev:
    __slots__ = ("tag", "children", "attrs", "fixed")

    def __init__(self, tag, children, attrs):
        self.tag, self.children, self.attrs = tag, children, attrs
        self.fixed = None  # total size when every form is fixed (set per CU)


class DwarfFile:
    """Sections of one vmlinux plus CU lookup by address (.debug_aranges)."""

    def __init__(self, elf):
        self.elf = elf
        self.mm = elf.mm
        info = elf.index(".debug_info")
        if info is None or elf.shdrs[info]["size"] == 0:
            raise KernelError(f"no debug info: {elf.path}")
        if elf.shdrs[info]["flags"] & SHF_COMPRESSED:
            raise KernelError(f"compressed debug info is not supported: {elf.path}")
        for name in (".debug_info", ".debug_abbrev", ".debug_str", ".debug_line_str",
                     ".debug_aranges", ".debug_str_offsets"):
            i = elf.index(name)
            h = elf.shdrs[i] if i is not None else None
            setattr(self, name[7:] + "_range",
                    (int(h["offset"]), int(h["size"])) if h is not None else (0, 0))
        self._abbrevs = {}
        self._aranges = None
        self._cus = {}
        self._cu_list = None

    # ---- address -> CU ------------------------------------------------------------
    def _load_aranges(self):
        off, size = self.aranges_range
        mm = self.mm
        starts, ends, cus = [], [], []
        pos, end = off, off + size
        while pos + 12 <= end:
            length, = struct.unpack_from("<I", mm, pos)
            hdr = 4
            if length == 0xFFFFFFFF:
                length, = struct.unpack_from("<Q", mm, pos + 4)
                hdr = 12
            unit_end = pos + hdr + length
            p = pos + hdr + 2
            if hdr == 4:
                cu, = struct.unpack_from("<I", mm, p)
                p += 4
            else:
                cu, = struct.unpack_from("<Q", mm, p)
                p += 8
            asz, ssz = mm[p], mm[p + 1]
            p += 2
            tup = 2 * asz
            p = pos + ((p - pos + tup - 1) // tup) * tup
            if asz == 8 and ssz == 0 and unit_end > p:
                n = (unit_end - p) // 16
                arr = np.frombuffer(mm, "<u8", 2 * n, p).reshape(n, 2)
                arr = arr[arr[:, 1] != 0]
                starts.append(arr[:, 0])
                ends.append(arr[:, 0] + arr[:, 1])
                cus.append(np.full(len(arr), cu, np.uint64))
            pos = unit_end
        if starts:
            s = np.concatenate(starts)
            o = np.argsort(s, kind="stable")
            self._aranges = (s[o], np.concatenate(ends)[o], np.concatenate(cus)[o])
        else:
            self._aranges = (np.zeros(0, np.uint64),) * 3

    def cu_offset_for_address(self, addr: int) -> int | None:
        if self._aranges is None:
            self._load_aranges()
        s, e, c = self._aranges
        i = int(np.searchsorted(s, np.uint64(addr), side="right")) - 1
        if i >= 0 and addr < int(e[i]):
            return int(c[i])
        return None

    def all_cu_offsets(self):
        """CU offsets in .debug_info order (header walk; cheap, no DIE parsing)."""
        off, size = self.info_range
        pos, out = 0, []
        while pos + 11 <= size:
            length, = struct.unpack_from("<I", self.mm, off + pos)
            hdr = 4
            if length == 0xFFFFFFFF:
                length, = struct.unpack_from("<Q", self.mm, off + pos + 4)
                hdr = 12
            out.append(pos)
            pos += hdr + length
        return out

    # ---- strings / abbrevs --------------------------------------------------------
    def cstr(self, section_range, off):
        base, size = section_range
        if off >= size:
            return None
        a = base + off
        e = self.mm.find(b"\0", a, base + size)
        return self.mm[a:e].decode("utf-8", "replace")

    def abbrevs(self, off):
        tab = self._abbrevs.get(off)
        if tab is not None:
            return tab
        base, size = self.abbrev_range
        data = self.mm
        pos = base + off
        tab = {}
        while True:
            code, pos = uleb(data, pos)
            if code == 0:
                break
            tag, pos = uleb(data, pos)
            children = data[pos] != 0
            pos += 1
            attrs = []
            while True:
                at, pos = uleb(data, pos)
                form, pos = uleb(data, pos)
                if at == 0 and form == 0:
                    break
                ic = None
                if form == 0x21:
                    ic, pos = sleb(data, pos)
                attrs.append((at, form, ic))
            tab[code] = Abbrev(tag, children, tuple(attrs))
        self._abbrevs[off] = tab
        return tab

    def cu(self, offset) -> "CompUnit":
        cu = self._cus.get(offset)
        if cu is None:
            cu = self._cus[offset] = CompUnit(self, offset)
        return cu


class CompUnit:
    """One compile unit, its bytes copied out so DIE access is plain indexing."""

    def __init__(self, dw: DwarfFile, offset: int):
        self.dw, self.offset = dw, offset
        base, size = dw.info_range
        mm = dw.mm
        length, = struct.unpack_from("<I", mm, base + offset)
        p = offset + 4
        self.offsize = 4
        if length == 0xFFFFFFFF:
            length, = struct.unpack_from("<Q", mm, base + offset + 4)
            p, self.offsize = offset + 12, 8
        self.end = p + length
        self.version, = struct.unpack_from("<H", mm, base + p)
        p += 2
        fmt = "<I" if self.offsize == 4 else "<Q"
        if self.version >= 5:
            unit_type, self.addr_size = mm[base + p], mm[base + p + 1]
            p += 2
            abbrev_off, = struct.unpack_from(fmt, mm, base + p)
            p += self.offsize
            if unit_type in (2, 6):      # type units: signature + type offset
                p += 8 + self.offsize
            elif unit_type in (4, 5):    # skeleton/split: dwo id
                p += 8
        else:
            abbrev_off, = struct.unpack_from(fmt, mm, base + p)
            p += self.offsize
            self.addr_size = mm[base + p]
            p += 1
        self.first_die = p
        # the CU's bytes, indexed with absolute .debug_info offsets minus self.offset
        self.data = mm[base + offset:base + self.end]
        self.abbrevs = dw.abbrevs(abbrev_off)
        self.str_offsets_base = None
        self._sizes = {}
        for form, kind in _FIXED.items():
            if kind == "A":
                kind = self.addr_size
            elif kind == "O":
                kind = self.offsize
            elif kind == "R":
                kind = self.addr_size if self.version == 2 else self.offsize
            self._sizes[form] = kind
        for ab in self.abbrevs.values():
            total = 0
            for _, form, _ in ab.attrs:
                s = self._sizes.get(form)
                if s is None:
                    total = None
                    break
                total += s
            ab.fixed = total
        tag, attrs, _, _ = self.die(self.first_die, (AT_name, AT_str_offsets_base))
        self.name = attrs.get(AT_name)
        self.str_offsets_base = attrs.get(AT_str_offsets_base)
        self._top = None

    # ---- attribute decoding ---------------------------------------------------------
    def _value(self, form, pos, ic):
        """(value, new position) of one attribute, `pos` relative to self.data."""
        d = self.data
        if form == 0x13:                         # ref4 (CU relative)
            return int.from_bytes(d[pos:pos + 4], "little") + self.offset, pos + 4
        if form == 0x0E:                         # strp
            o = int.from_bytes(d[pos:pos + self.offsize], "little")
            return self.dw.cstr(self.dw.str_range, o), pos + self.offsize
        if form == 0x0B:
            return d[pos], pos + 1
        if form == 0x05:
            return int.from_bytes(d[pos:pos + 2], "little"), pos + 2
        if form == 0x06:
            return int.from_bytes(d[pos:pos + 4], "little"), pos + 4
        if form == 0x07:
            return int.from_bytes(d[pos:pos + 8], "little"), pos + 8
        if form == 0x19:
            return True, pos
        if form == 0x0C:
            return d[pos] != 0, pos + 1
        if form == 0x0F:
            return uleb(d, pos)
        if form == 0x0D:
            return sleb(d, pos)
        if form == 0x21:
            return ic, pos
        if form == 0x08:
            e = d.index(b"\0", pos)
            return d[pos:e].decode("utf-8", "replace"), e + 1
        if form == 0x1F:                         # line_strp
            o = int.from_bytes(d[pos:pos + self.offsize], "little")
            return self.dw.cstr(self.dw.line_str_range, o), pos + self.offsize
        if form in _REF_FORMS:
            if form == 0x15:
                v, pos = uleb(d, pos)
            else:
                n = self._sizes[form]
                v, pos = int.from_bytes(d[pos:pos + n], "little"), pos + n
            return v + self.offset, pos
        if form == 0x10:                         # ref_addr: .debug_info absolute
            n = self._sizes[form]
            return ("ref_addr", int.from_bytes(d[pos:pos + n], "little")), pos + n
        if form in (0x01,):
            n = self.addr_size
            return int.from_bytes(d[pos:pos + n], "little"), pos + n
        if form in (0x18, 0x09):                 # exprloc / block
            n, pos = uleb(d, pos)
            return bytes(d[pos:pos + n]), pos + n
        if form == 0x0A:
            n = d[pos]
            return bytes(d[pos + 1:pos + 1 + n]), pos + 1 + n
        if form == 0x03:
            n = int.from_bytes(d[pos:pos + 2], "little")
            return bytes(d[pos + 2:pos + 2 + n]), pos + 2 + n
        if form == 0x04:
            n = int.from_bytes(d[pos:pos + 4], "little")
            return bytes(d[pos + 4:pos + 4 + n]), pos + 4 + n
        if form in (0x1A, 0x25, 0x26, 0x27, 0x28, 0x1F02):  # strx
            if form in (0x1A, 0x1F02):
                idx, pos = uleb(d, pos)
            else:
                n = self._sizes[form]
                idx, pos = int.from_bytes(d[pos:pos + n], "little"), pos + n
            return self._strx(idx), pos
        if form == 0x16:                         # indirect
            real, pos = uleb(d, pos)
            return self._value(real, pos, None)
        if form in (0x1B, 0x22, 0x23, 0x1F01):   # addrx/loclistx/rnglistx: not needed
            return uleb(d, pos)
        n = self._sizes.get(form)
        if n is None:
            raise KernelError(f"unsupported DWARF form 0x{form:x} in {self.dw.elf.path}")
        return None, pos + n

    def _strx(self, idx):
        base, size = self.dw.str_offsets_range
        sob = self.str_offsets_base if self.str_offsets_base is not None else 8
        o = base + sob + idx * self.offsize
        off = int.from_bytes(self.dw.mm[o:o + self.offsize], "little")
        return self.dw.cstr(self.dw.str_range, off)

    def _skip(self, form, pos):
        n = self._sizes.get(form)
        if n is not None:
            return pos + n
        d = self.data
        if form in (0x0F, 0x0D, 0x15, 0x1A, 0x1B, 0x22, 0x23, 0x1F01, 0x1F02):
            while d[pos] & 0x80:
                pos += 1
            return pos + 1
        if form in (0x18, 0x09):
            n, pos = uleb(d, pos)
            return pos + n
        if form == 0x08:
            return d.index(b"\0", pos) + 1
        return self._value(form, pos, None)[1]

    def die(self, off, want):
        """(tag, {attr: value for attr in want}, has_children, offset after the DIE).

        `off` is an absolute .debug_info offset; tag 0 means a null entry."""
        d = self.data
        pos = off - self.offset
        code, pos = uleb(d, pos)
        if code == 0:
            return 0, {}, False, pos + self.offset
        ab = self.abbrevs[code]
        out = {}
        for at, form, ic in ab.attrs:
            if at in want:
                out[at], pos = self._value(form, pos, ic)
            else:
                pos = self._skip(form, pos)
        return ab.tag, out, ab.children, pos + self.offset

    def skip_die(self, off):
        """Offset of the next sibling of the DIE at `off` (skips its subtree)."""
        d = self.data
        pos = off - self.offset
        code, pos = uleb(d, pos)
        if code == 0:
            return pos + self.offset
        ab = self.abbrevs[code]
        if ab.fixed is not None and not ab.children:
            return pos + ab.fixed + self.offset
        sib = None
        for at, form, ic in ab.attrs:
            if at == AT_sibling and form in _REF_FORMS:
                sib, pos = self._value(form, pos, ic)
            else:
                pos = self._skip(form, pos)
        if not ab.children:
            return pos + self.offset
        if sib is not None:
            return sib
        nxt = pos + self.offset
        while True:                              # walk children up to the null entry
            if d[nxt - self.offset] == 0:
                return nxt + 1
            nxt = self.skip_die(nxt)

    def children(self, off, want):
        """Yield (offset, tag, attrs, has_children) of the direct children of DIE `off`."""
        tag, _, has_children, pos = self.die(off, ())
        if not has_children:
            return
        while True:
            tag, attrs, ch, nxt = self.die(pos, want)
            if tag == 0:
                return
            yield pos, tag, attrs, ch
            pos = self.skip_die(pos) if ch else nxt

    def top_level(self):
        """{(tag, name): [offsets]} for named top-level DIEs of interest (built once)."""
        if self._top is None:
            top = {}
            keep = (TAG_struct, TAG_union, TAG_enum, TAG_typedef, TAG_variable, TAG_base)
            anon_enums = []
            want = (AT_name, AT_specification)
            for off, tag, attrs, _ in self.children(self.first_die, want):
                if tag in keep:
                    name = attrs.get(AT_name)
                    if name is not None:
                        top.setdefault((tag, name), []).append(off)
                    elif tag == TAG_enum:
                        anon_enums.append(off)
                    elif tag == TAG_variable and AT_specification in attrs:
                        top.setdefault(("spec", attrs[AT_specification]), []).append(off)
            top[("anon_enums", None)] = anon_enums
            self._top = top
        return self._top

    def contains(self, off):
        return self.offset <= off < self.end


def find_cu_for(dw: DwarfFile, off: int) -> CompUnit:
    """CU holding absolute .debug_info offset `off` (for DW_FORM_ref_addr)."""
    if dw._cu_list is None:
        dw._cu_list = dw.all_cu_offsets()
    i = bisect_right(dw._cu_list, off) - 1
    return dw.cu(dw._cu_list[i])
