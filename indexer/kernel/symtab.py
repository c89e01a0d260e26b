"""vmlinux ELF symbol table, read in bulk, answering name -> address and address -> `<sym+off>`.

The address -> name side mimics gdb's minimal-symbol lookup (elfread.c / minsyms.c /
printcmd.c `build_address_symbolic`), because crash prints pointers through gdb:
  * which symbols exist: named, not FILE/SECTION, defined in an allocated section (or ABS);
    `.L*` locals in code are dropped; type = text/data/bss x global/local, or abs;
  * order: by address, then by name (strcmp), exact duplicates removed;
  * lookup: the address must lie in an allocated section; walk back from the last symbol
    at or below it, skipping abs and other-section symbols, preferring text twins, keeping
    the first zero-sized one aside, refusing a sized symbol that ends before the address;
  * zero-sized data symbols are then dropped (no annotation);
  * the result is `name` or `name+<decimal offset>`.
Heap/direct-map/user addresses are outside every section, so they get nothing.
Everything is stored as flat arrays so the index keeps it per build id (`to_arrays`).
"""
from __future__ import annotations

import io
import mmap
import struct
from bisect import bisect_right
from itertools import compress

import numpy as np

from vmdex.indexer.errors import KernelError

# minimal symbol kinds (our own numbering)
TEXT, FILE_TEXT, DATA, FILE_DATA, BSS, FILE_BSS, ABS = range(7)
KIND_NAMES = ("text", "file_text", "data", "file_data", "bss", "file_bss", "abs")

_SYM = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"),
                 ("value", "<u8"), ("size", "<u8")])
_SHDR = np.dtype([("name", "<u4"), ("type", "<u4"), ("flags", "<u8"), ("addr", "<u8"),
                  ("offset", "<u8"), ("size", "<u8"), ("link", "<u4"), ("info", "<u4"),
                  ("addralign", "<u8"), ("entsize", "<u8")])
SHF_ALLOC, SHF_EXECINSTR = 0x2, 0x4
SHT_NOBITS, SHT_SYMTAB, SHT_NOTE = 8, 2, 7
SHN_ABS = 0xFFF1
STT_SECTION, STT_FILE = 3, 4
STB_LOCAL = 0
# marks a symbol text the table cannot vouch for (indexer.kernel.pointers, query.structs)
UNSURE = "\0?"
MASK64 = (1 << 64) - 1


class ElfImage:
    """Just enough ELF64 LE section-header access over an mmap (no pyelftools: speed)."""

    def __init__(self, path):
        try:
            f = open(path, "rb")
        except OSError as e:
            raise KernelError(f"cannot open vmlinux: {path}: {e.strerror}") from None
        with f:
            try:
                self.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (ValueError, OSError):
                raise KernelError(f"not an ELF file: {path}") from None
        m = self.mm
        if len(m) < 64 or m[:4] != b"\x7fELF":
            raise KernelError(f"not an ELF file: {path}")
        if m[4] != 2 or m[5] != 1:
            raise KernelError(f"not a 64-bit little-endian ELF file: {path}")
        shoff, = struct.unpack_from("<Q", m, 0x28)
        shnum, shstrndx = struct.unpack_from("<HH", m, 0x3C)
        if shoff == 0 or shoff + shnum * 64 > len(m):
            raise KernelError(f"ELF file has no section headers: {path}")
        self.path = str(path)
        self.shdrs = np.frombuffer(m, _SHDR, shnum, shoff).copy()
        names = self.section_bytes(shstrndx)
        self.names = [_cstr(names, int(n)) for n in self.shdrs["name"]]

    def section_bytes(self, idx: int) -> bytes:
        h = self.shdrs[idx]
        if h["type"] == SHT_NOBITS:
            return b""
        return self.mm[int(h["offset"]):int(h["offset"]) + int(h["size"])]

    def index(self, name: str) -> int | None:
        try:
            return self.names.index(name)
        except ValueError:
            return None

    def section(self, name: str) -> bytes | None:
        i = self.index(name)
        return None if i is None else self.section_bytes(i)

    def close(self):
        self.mm.close()


def _cstr(blob: bytes, off: int) -> str:
    end = blob.index(b"\0", off)
    return blob[off:end].decode("utf-8", "replace")


def build_id(vmlinux_path) -> str | None:
    """Hex GNU build id from `.note.gnu.build-id` (or any note section carrying one)."""
    elf = ElfImage(vmlinux_path)
    try:
        order = sorted(range(len(elf.names)),
                       key=lambda i: elf.names[i] != ".note.gnu.build-id")
        for i in order:
            if elf.shdrs[i]["type"] != SHT_NOTE:
                continue
            bid = _note_build_id(elf.section_bytes(i))
            if bid:
                return bid
        return None
    finally:
        elf.close()


def _note_build_id(data: bytes) -> str | None:
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
        name = data[pos + 12:pos + 12 + namesz]
        dpos = pos + 12 + ((namesz + 3) & ~3)
        if ntype == 3 and name.rstrip(b"\0") == b"GNU":
            return data[dpos:dpos + descsz].hex()
        pos = dpos + ((descsz + 3) & ~3)
    return None


class Symtab:
    """gdb-style minimal symbols of one vmlinux (unrelocated addresses)."""

    def __init__(self, addr, size, kind, shndx, name_off, names: bytes, sections):
        self.addr = addr            # uint64, sorted (address, then name bytes)
        self.size = size            # uint64
        self.kind = kind            # uint8, TEXT..ABS
        self.shndx = shndx          # uint16, ELF section index (SHN_ABS for abs)
        self.name_off = name_off    # uint32 offsets into `names` (NUL-terminated)
        self.names = names
        self.sections = sections    # int64/uint64 array (n, 3): index, start, end (sorted)
        self._by_name = None
        # kallsyms-made tables (no ELF sizes): for each symbol, the offset from which a
        # pointer may lie in the alignment padding before the next symbol rather than in
        # the object (None: sizes are the vmlinux's, exact)
        self.certain: np.ndarray | None = None
        self._secs = [tuple(int(x) for x in row) for row in sections]
        self._sec_starts = [s[1] for s in self._secs]

    # ---- construction -------------------------------------------------------------
    @classmethod
    def from_vmlinux(cls, path) -> "Symtab":
        elf = ElfImage(path)
        try:
            return cls._from_elf(elf)
        finally:
            elf.close()

    @classmethod
    def _from_elf(cls, elf: ElfImage) -> "Symtab":
        si = elf.index(".symtab")
        if si is None or elf.shdrs[si]["type"] != SHT_SYMTAB:
            raise KernelError(f"no symbol table: {elf.path}")
        sh = elf.shdrs
        syms = np.frombuffer(elf.section_bytes(si), _SYM)
        strtab = elf.section_bytes(int(sh[si]["link"]))

        flags = sh["flags"]
        alloc = (flags & SHF_ALLOC) != 0
        code = (flags & SHF_EXECINSTR) != 0
        nobits = sh["type"] == SHT_NOBITS
        typ = syms["info"] & 0xF
        local = (syms["info"] >> 4) == STB_LOCAL
        shndx = syms["shndx"]
        is_abs = shndx == SHN_ABS
        nsec = len(sh)
        in_sec = (shndx > 0) & (shndx < nsec)
        sidx = np.where(in_sec, shndx, 0)
        keep = (syms["name"] != 0) & (typ != STT_SECTION) & (typ != STT_FILE)
        keep &= is_abs | (in_sec & alloc[sidx])
        # the first name byte decides nothing except `.L` labels in code
        kind = np.full(len(syms), ABS, np.uint8)
        c = in_sec & code[sidx]
        d = in_sec & ~code[sidx] & ~nobits[sidx]
        b = in_sec & ~code[sidx] & nobits[sidx]
        kind[c] = np.where(local[c], FILE_TEXT, TEXT)
        kind[d] = np.where(local[d], FILE_DATA, DATA)
        kind[b] = np.where(local[b], FILE_BSS, BSS)
        idx = np.nonzero(keep)[0]
        sb = np.frombuffer(strtab, np.uint8)
        first2 = sb[syms["name"][idx]].astype(np.uint16) << 8
        first2 |= sb[np.minimum(syms["name"][idx] + 1, len(sb) - 1)]
        dotl = (first2 == (ord(".") << 8 | ord("L"))) & c[idx] & local[idx]
        idx = idx[~dotl]

        # names -> one compact blob; sort by (address, name) as gdb does
        offs = syms["name"][idx]
        ends = _name_ends(strtab, offs)
        raw = [strtab[o:e] for o, e in zip(offs.tolist(), ends.tolist())]
        addrs = syms["value"][idx]
        order = np.argsort(addrs, kind="stable")
        order = _sort_ties_by_name(addrs, order, raw)
        # drop exact duplicates (same address, section and name)
        out, prev = [], None
        for i in order.tolist():
            key = (int(addrs[i]), int(shndx[idx[i]]), raw[i])
            if key != prev:
                out.append(i)
            prev = key
        sel = np.array(out, dtype=np.int64)
        blob = io.BytesIO()
        name_off = np.empty(len(sel), np.uint32)
        pos = 0
        for j, i in enumerate(sel.tolist()):
            name_off[j] = pos
            blob.write(raw[i])
            blob.write(b"\0")
            pos += len(raw[i]) + 1
        secs = [(i, int(sh[i]["addr"]), int(sh[i]["addr"]) + int(sh[i]["size"]))
                for i in range(1, nsec) if alloc[i] and sh[i]["size"] > 0]
        secs.sort(key=lambda t: t[1])
        return cls(addrs[sel].astype(np.uint64), syms["size"][idx][sel].astype(np.uint64),
                   kind[idx][sel].astype(np.uint8), shndx[idx][sel].astype(np.uint16),
                   name_off, blob.getvalue(),
                   np.array(secs, dtype=np.uint64).reshape(-1, 3))

    # ---- serialisation -----------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"addr": self.addr, "size": self.size, "kind": self.kind,
               "shndx": self.shndx, "name_off": self.name_off,
               "names": np.frombuffer(self.names, np.uint8), "sections": self.sections}
        if self.certain is not None:
            out["certain"] = self.certain
        return out

    @classmethod
    def from_arrays(cls, a) -> "Symtab":
        out = cls(a["addr"], a["size"], a["kind"], a["shndx"], a["name_off"],
                  np.asarray(a["names"], np.uint8).tobytes(),
                  np.asarray(a["sections"], np.uint64).reshape(-1, 3))
        if "certain" in a:
            out.certain = np.asarray(a["certain"], np.uint64)
        return out

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **self.to_arrays())
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Symtab":
        with np.load(io.BytesIO(data)) as z:
            return cls.from_arrays({k: z[k] for k in z.files})

    # ---- lookups -----------------------------------------------------------------
    def __len__(self):
        return len(self.addr)

    def name(self, i: int) -> str:
        o = int(self.name_off[i])
        return self.names[o:self.names.index(b"\0", o)].decode("utf-8", "replace")

    def address(self, name: str) -> int | None:
        """Unrelocated address; a global beats a file-local of the same name."""
        if self._by_name is None:
            self._build_name_index()
        return self._by_name.get(name)

    def _build_name_index(self):
        # decoding the blob whole equals decoding each name ("\0" never ends a UTF-8
        # sequence); dicts built in reverse keep the first of equal names, and the globals
        # go in last so they overwrite the file-locals
        names = self.names.decode("utf-8", "replace").split("\0")[:-1]
        local = np.isin(self.kind, (FILE_TEXT, FILE_DATA, FILE_BSS))
        addrs = self.addr.tolist()
        by_name = {}
        for sel in (local.tolist(), (~local).tolist()):
            by_name.update(zip(reversed(list(compress(names, sel))),
                               reversed(list(compress(addrs, sel)))))
        self._by_name = by_name

    def _section_of(self, a: int):
        i = bisect_right(self._sec_starts, a) - 1
        while i >= 0:  # few dozen sections; overlaps are rare, so walk back
            idx, start, end = self._secs[i]
            if start <= a < end:
                return idx
            i -= 1
        return None

    def _prev_in_section(self, i: int, sec: int) -> int:
        """The nearest symbol index below i that lies in section `sec` (-1 if none):
        symbols of other sections can sit in between by the thousand (7.x links per-CPU
        variables into the image), so the walk jumps instead of stepping."""
        cache = self.__dict__.setdefault("_by_section", {})
        idxs = cache.get(sec)
        if idxs is None:
            idxs = cache[sec] = np.flatnonzero(self.shndx == sec)
        j = int(np.searchsorted(idxs, i, side="left")) - 1
        return int(idxs[j]) if j >= 0 else -1

    def lookup(self, addr: int, offset: int = 0) -> tuple[str, int] | None:
        """(name, offset) gdb would print for pointer value `addr`, or None."""
        a = (addr - offset) & MASK64
        sec = self._section_of(a)
        if sec is None:
            return None
        A, S, K, X = self.addr, self.size, self.kind, self.shndx
        hi = int(np.searchsorted(A, np.uint64(a), side="right")) - 1
        if hi < 0:
            return None
        best_zero = -1
        while hi >= 0:
            k = int(K[hi])
            if k == ABS:
                hi -= 1
                continue
            if int(X[hi]) != sec:
                hi = self._prev_in_section(hi, sec)   # what stepping back one by one finds
                continue
            if (hi > 0 and k != TEXT and int(K[hi - 1]) == TEXT and S[hi] == S[hi - 1]
                    and A[hi] == A[hi - 1] and X[hi] == X[hi - 1]):
                hi -= 1
                continue
            if int(S[hi]) == 0:
                if best_zero == -1:
                    best_zero = hi
                hi -= 1
                continue
            if (hi > 0 and a >= int(A[hi]) + int(S[hi])
                    and a < int(A[hi - 1]) + int(S[hi - 1])):
                hi -= 1
                continue
            break
        if best_zero != -1 and (hi < 0 or int(S[hi]) == 0):
            hi = best_zero
        if hi >= 0 and int(S[hi]) != 0 and a >= int(A[hi]) + int(S[hi]):
            if best_zero == -1:
                return None
            hi = best_zero
        if hi < 0:
            return None
        # build_address_symbolic: zero-sized non-text symbols are not used
        if int(S[hi]) == 0 and int(K[hi]) not in (TEXT, FILE_TEXT):
            return None
        off = a - int(A[hi])
        if self.certain is not None and off and off >= int(self.certain[hi]):
            return UNSURE + self.name(hi), off
        return self.name(hi), off

    def symbolize(self, addr: int, offset: int = 0) -> str | None:
        """What gdb prints inside `<...>` after a pointer value, or None; UNSURE first when
        only the vmlinux's symbol sizes could tell (a kallsyms-made table)."""
        r = self.lookup(addr, offset)
        if r is None:
            return None
        name, off = r
        return name if off == 0 else f"{name}+{off}"


def _name_ends(strtab: bytes, offs: np.ndarray) -> np.ndarray:
    """End offset (NUL position) of each name, vectorised over the string table."""
    sb = np.frombuffer(strtab, np.uint8)
    nul = np.flatnonzero(sb == 0)
    return nul[np.searchsorted(nul, offs, side="left")]


def _sort_ties_by_name(addrs, order, raw):
    """Within runs of equal address, order by name bytes (gdb sorts with strcmp)."""
    sa = addrs[order]
    if len(sa) < 2:
        return order
    same = np.flatnonzero(sa[1:] == sa[:-1])
    if not len(same):
        return order
    order = order.copy()
    starts = same[np.r_[True, np.diff(same) > 1]]
    ends = same[np.r_[np.diff(same) > 1, True]] + 2
    for s, e in zip(starts.tolist(), ends.tolist()):
        grp = order[s:e].tolist()
        grp.sort(key=lambda i: raw[i])
        order[s:e] = grp
    return order
