"""The kernel's own symbol table (kallsyms) read from a dump's memory.

Facts (kernel scripts/kallsyms.c, kernel/kallsyms.c; vmdex's reference note
no-vmlinux.md §2): `kallsyms_names` holds one record per symbol, a length in tokens then
that many token bytes; each byte indexes `kallsyms_token_index[256]` (u16 offsets into
`kallsyms_token_table`, NUL-terminated strings). The first decoded character is nm's type
letter. From 6.1 a length may take two bytes (ULEB128, "big" symbols). `kallsyms_markers`
(u32, one per 256 symbols: the record offset) follows the names: it tells which length
encoding the kernel uses. Addresses come in four encodings (absolute, base-relative,
absolute-percpu, place-relative); the one that reproduces VMCOREINFO's `_stext` is the
kernel's.

VMCOREINFO names the tables from Linux 6.0; older kernels are found by a bounded scan of
the image (`scan`). Every count, size and offset is bounded by the region read: a
crafted table gives a KernelError, never a hang.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

from vmdex.indexer.errors import KernelError, VmdexError

Read = Callable[[int, int], bytes]      # (virtual address, size) -> bytes

MAX_NAMES_BYTES = 64 << 20     # kallsyms_names of the largest kernels is a few MiB
MAX_SYMS = 4 << 20
MAX_TOKEN_TABLE = 1 << 16
U64 = (1 << 64) - 1
# nm letters kallsyms emits (upper = global); anything else means a wrong decode
LETTERS = set("TtDdBbRrAaWwVvUuNnGgSsCcIi?")


@dataclass
class Kallsyms:
    names: list[str]
    letters: str
    addrs: list[int]            # runtime addresses (KASLR applied), absolute ones as is
    encoding: str               # which address encoding reproduced _stext

    def address(self, name: str) -> int | None:
        if not hasattr(self, "_idx"):
            idx: dict[str, int] = {}
            for i, n in enumerate(self.names):    # a global beats a local of the same name
                if n not in idx or (self.letters[idx[n]].islower() and self.letters[i].isupper()):
                    idx[n] = i
            self._idx = idx
        i = self._idx.get(name)
        return None if i is None else self.addrs[i]

    def has_data_symbols(self) -> bool:
        """Built with CONFIG_KALLSYMS_ALL: objects (init_task) are listed, not only code."""
        i = self.address("init_task")
        return i is not None


def _u32s(raw: bytes, n: int, signed: bool = False) -> list[int]:
    return list(struct.unpack_from(f"<{n}{'i' if signed else 'I'}", raw))


def tokens(table: bytes, index_raw: bytes) -> list[bytes]:
    """The 256 tokens; KernelError when an index points outside the table."""
    if len(index_raw) < 512:
        raise KernelError("kallsyms_token_index is truncated")
    index = struct.unpack_from("<256H", index_raw)
    out = []
    for off in index:
        end = table.find(b"\0", off)
        if off >= len(table) or end < 0:
            raise KernelError("kallsyms_token_index points past kallsyms_token_table")
        out.append(table[off:end])
    return out


def token_table_size(index_raw: bytes) -> int:
    """How many bytes of token table to read: past the largest index, one token's worth."""
    return min(max(struct.unpack_from("<256H", index_raw)) + 256, MAX_TOKEN_TABLE)


def records(blob: bytes, n: int, big: bool) -> tuple[list[tuple[int, int]], int] | None:
    """((start, length) of each of the n records' token bytes, end offset), or None when
    they run past the blob."""
    out = []
    pos, size = 0, len(blob)
    for _ in range(n):
        if pos >= size:
            return None
        length = blob[pos]
        pos += 1
        if big and length & 0x80:
            if pos >= size:
                return None
            length = (length & 0x7F) | (blob[pos] << 7)
            pos += 1
        if length == 0 or pos + length > size:
            return None
        out.append((pos, length))
        pos += length
    return out, pos


def record_offsets(recs: list[tuple[int, int]], big: bool) -> list[int]:
    """Where each record (its length bytes) starts."""
    return [p - (2 if big and n >= 0x80 else 1) for p, n in recs]


def markers_follow(blob: bytes, offs: list[int], end: int) -> bool:
    """Whether kallsyms_markers (u32 record offsets of symbols 0, 256, 512...) sit right
    after the names (4- or 8-byte aligned), agreeing with this decode."""
    want = offs[::256][:8]
    for align in (4, 8):
        at = (end + align - 1) & ~(align - 1)
        if at + 4 * len(want) > len(blob):
            continue
        if _u32s(blob[at:], len(want)) == want:
            return True
    return False


def decode(blob: bytes, n: int, toks: list[bytes]) -> tuple[list[bytes], int]:
    """Names (letter first) of the n records in `blob`, and where they end: the length
    encoding (one byte; ULEB128 from 6.1) is the one kallsyms_markers confirms."""
    if not 0 < n <= min(MAX_SYMS, len(blob) // 2):
        raise KernelError(f"kallsyms_num_syms {n} does not fit kallsyms_names")
    # ULEB128 first: on a kernel without big names it reads the same (no length byte has
    # its top bit set); a kernel before 6.1 with a 128-token name fails the markers there
    for big in (True, False):
        r = records(blob, n, big)
        if r is not None and markers_follow(blob, record_offsets(r[0], big), r[1]):
            return expand(blob, r[0], toks), r[1]
    raise KernelError("kallsyms_names does not decode (no length encoding matches "
                      "kallsyms_markers)")


def expand(blob: bytes, recs: list[tuple[int, int]], toks: list[bytes]) -> list[bytes]:
    """Each record's token bytes replaced by their tokens (one gather over all records)."""
    import numpy as np

    if not recs:
        return []
    starts = np.fromiter((p for p, _ in recs), np.int64, len(recs))
    counts = np.fromiter((n for _, n in recs), np.int64, len(recs))
    before = np.cumsum(counts) - counts               # token bytes of earlier records
    where = np.repeat(starts - before, counts) + np.arange(int(counts.sum()))
    codes = np.frombuffer(blob, np.uint8)[where]       # every token byte, in order
    table = np.frombuffer(b"".join(toks) or b"\0", np.uint8)
    tok_len = np.array([len(t) for t in toks], np.int64)
    tok_off = np.cumsum(tok_len) - tok_len
    lens = tok_len[codes]
    out_before = np.cumsum(lens) - lens
    chars = table[np.repeat(tok_off[codes] - out_before, lens) + np.arange(int(lens.sum()))]
    text = chars.tobytes()
    ends = np.cumsum(np.add.reduceat(lens, before)) if len(codes) else np.zeros(len(recs))
    ends = ends.tolist()
    return [text[a:b] for a, b in zip([0] + ends[:-1], ends)]


def addresses(n: int, stext_index: int, stext: int, offsets: bytes | None,
              offsets_va: int | None, relative_base: int | None,
              absolute: bytes | None) -> tuple[list[int], str]:
    """Runtime addresses of all n symbols, in the encoding that puts `_stext` (entry
    stext_index) at VMCOREINFO's `_stext`: absolute (u64 values), base-relative
    (relative_base + u32), absolute-percpu (x86 up to 6.14: a negative s32 is relative to
    relative_base, others absolute), place-relative (7.x: the entry's own address + s32)."""
    rules: list[tuple[str, Callable[[int, int], int]]] = []
    vals: list[int] = []
    if absolute is not None and len(absolute) >= 8 * n:
        vals = list(struct.unpack_from(f"<{n}Q", absolute))
        rules.append(("absolute", lambda i, v: v))
    elif offsets is not None and len(offsets) >= 4 * n:
        vals = _u32s(offsets, n, True)
        if relative_base is not None:
            rb = relative_base
            rules.append(("base-relative", lambda i, v: (rb + (v & 0xFFFFFFFF)) & U64))
            rules.append(("absolute-percpu", lambda i, v: v if v >= 0 else (rb - 1 - v) & U64))
        if offsets_va is not None:
            va = offsets_va
            rules.append(("place-relative", lambda i, v: (va + 4 * i + v) & U64))
    for name, rule in rules:
        if rule(stext_index, vals[stext_index]) == stext:
            return [rule(i, v) for i, v in enumerate(vals)], name
    raise KernelError("unreadable kallsyms: no address encoding puts _stext where "
                      "VMCOREINFO does")


def _finish(raw_names: list[bytes], addrs_of: Callable[[int], tuple[list[int], str]]) -> Kallsyms:
    letters, names = [], []
    for r in raw_names:
        letters.append(chr(r[0]))
        names.append(r[1:].decode("latin-1"))
    if any(c not in LETTERS for c in letters):
        raise KernelError("kallsyms_names decodes to garbage (unknown symbol type letters)")
    try:
        stext_index = names.index("_stext")
    except ValueError:
        raise KernelError("kallsyms has no _stext") from None
    addrs, enc = addrs_of(stext_index)
    return Kallsyms(names, "".join(letters), addrs, enc)


def from_vmcoreinfo(read: Read, info) -> Kallsyms | None:
    """kallsyms through the addresses VMCOREINFO gives (Linux 6.0+); None when it has
    none. KernelError when they are there but do not decode."""
    sym = info.symbol
    names_va, num_va = sym("kallsyms_names"), sym("kallsyms_num_syms")
    table_va, index_va = sym("kallsyms_token_table"), sym("kallsyms_token_index")
    if None in (names_va, num_va, table_va, index_va):
        return None
    stext = sym("_stext")
    if stext is None:
        raise KernelError("VMCOREINFO has no _stext to check kallsyms against")
    try:
        n = int.from_bytes(read(num_va, 4), "little")
        index_raw = read(index_va, 512)
        toks = tokens(read(table_va, token_table_size(index_raw)), index_raw)
        span = table_va - names_va
        if not 0 < span <= MAX_NAMES_BYTES:
            raise KernelError("kallsyms_names does not lie before kallsyms_token_table")
        raw_names, _ = decode(read(names_va, span), n, toks)
        offsets_va, rb_va, abs_va = (sym("kallsyms_offsets"), sym("kallsyms_relative_base"),
                                     sym("kallsyms_addresses"))
        offsets = read(offsets_va, 4 * n) if offsets_va is not None else None
        rb = int.from_bytes(read(rb_va, 8), "little") if rb_va is not None else None
        absolute = read(abs_va, 8 * n) if abs_va is not None else None
    except KernelError:
        raise
    except VmdexError as exc:
        raise KernelError(f"kallsyms unreadable in the dump ({exc})") from None
    return _finish(raw_names, lambda i: addresses(n, i, stext, offsets, offsets_va, rb, absolute))


def _kinds() -> dict[str, int]:
    """nm letter -> Symtab kind: A absolute, T/W text, B bss, the rest data; lower case is
    file-local (the FILE_* kind after each global one)."""
    from vmdex.indexer.kernel import symtab as S
    out = {}
    for c in LETTERS:
        up = c.upper()
        base = S.ABS if up == "A" else S.TEXT if up in "TW" else S.BSS if up == "B" else S.DATA
        out[c] = base if base == S.ABS else base + c.islower()
    return out


_PAIRS = (("__start_", "", "__stop_", ""), ("", "_start", "", "_end"),
          ("", "_start", "", "_stop"), ("", "_begin", "", "_end"), ("", "", "", "_end"),
          ("_s", "", "_e", ""))


def linker_labels(names: list[str]) -> set[str]:
    """Names that mark where a region starts or ends rather than an object (a linker
    script's `__start_X`/`__stop_X`, `X_start`/`X_end`, `X`/`X_end`, `_sX`/`_eX` pairs,
    both present): size 0 in a vmlinux's .symtab, so gdb names no pointer after them."""
    have = set(names)
    out: set[str] = set()
    for n in have:
        for pre, suf, pre2, suf2 in _PAIRS:
            if n.startswith(pre) and n.endswith(suf) and len(n) > len(pre) + len(suf):
                core = n[len(pre):len(n) - len(suf)]
                other = pre2 + core + suf2
                if other != n and other in have:
                    out.update((n, other))
    return out


def to_symtab(ks: Kallsyms, kaslr: int, moves: Callable[[int], bool]):
    """The Symtab (indexer.kernel.symtab) of these symbols, unrelocated as a vmlinux's
    (`runtime - KASLR offset` where the Arch says symbols move). kallsyms has no sizes or
    sections: a symbol is taken to reach the next higher address, and the image
    [_text, _end) is one section (crash lets gdb annotate only kernel addresses)."""
    import numpy as np

    from vmdex.indexer.kernel import symtab as S

    addrs = [(a - kaslr) & U64 if moves(a) else a for a in ks.addrs]
    table = _kinds()
    kinds = np.array([table[c] for c in ks.letters], np.uint8)
    raw = [n.encode("latin-1") for n in ks.names]
    order = sorted(range(len(addrs)), key=lambda i: (addrs[i], raw[i]))
    keep, prev = [], None                     # exact duplicates go, as from a .symtab
    for i in order:
        key = (addrs[i], kinds[i] == S.ABS, raw[i])
        if key != prev:
            keep.append(i)
        prev = key
    sel = np.array(keep, np.int64)
    addr = np.array(addrs, np.uint64)[sel]
    kind = kinds[sel]
    is_abs = kind == S.ABS
    image = np.unique(addr[~is_abs])
    nxt = np.searchsorted(image, addr, side="right")
    size = np.where(nxt < len(image), image[np.minimum(nxt, len(image) - 1)] - addr, 0)
    marks = linker_labels(ks.names)
    labels = np.fromiter((ks.names[i] in marks for i in keep), bool, len(keep))
    size = np.where(is_abs | labels, 0, size).astype(np.uint64)
    shndx = np.where(is_abs, S.SHN_ABS, 1).astype(np.uint16)
    names = [raw[i] for i in keep]
    lengths = np.fromiter((len(n) + 1 for n in names), np.uint32, len(names))
    name_off = (np.cumsum(lengths) - lengths).astype(np.uint32)
    text, end = ks.address("_text"), ks.address("_end")
    secs = [(1, (text - kaslr) & U64, (end - kaslr) & U64)] if text and end else []
    return S.Symtab(addr, size, kind, shndx, name_off, b"\0".join(names) + b"\0",
                    np.array(secs, dtype=np.uint64).reshape(-1, 3))


SCAN_BYTES = 64 << 20          # how much of the image, from _stext, the scan reads
DIGITS = b"".join(bytes([c]) + b"\0" for c in b"0123456789")


def read_image(read: Read, start: int, size: int, page: int) -> bytes:
    """`size` bytes of kernel memory from `start`, pages the dump lacks read as zeros (a
    filtered dump leaves out the image's zero pages)."""
    out = bytearray()
    va, end = start, start + size
    while va < end:
        n = min(end - va, page - (va & (page - 1)))
        try:
            out += read(va, n)
        except VmdexError:
            out += bytes(n)
        va += n
    return bytes(out)


def find_token_index(img: bytes) -> tuple[int, int] | None:
    """(token table offset, token index offset) in `img`: the table holds "0".."9" as
    one-character tokens, and right after it (8-aligned) sits the index, 256 u16 from 0,
    strictly increasing, whose entry for '0' points at them."""
    at = img.find(DIGITS)
    while at >= 0:
        start = (at + 8) & ~7
        for p in range(start, min(start + MAX_TOKEN_TABLE, len(img) - 512), 8):
            idx = struct.unpack_from("<256H", img, p)
            if idx[0] != 0 or any(b <= a for a, b in zip(idx, idx[1:])):
                continue
            table = at - idx[0x30]
            if table >= 0 and table + idx[0x39] == at + 18 and table + idx[255] < p:
                return table, p
            break
        at = img.find(DIGITS, at + 1)
    return None


def find_markers(img: bytes, table: int) -> tuple[int, int] | None:
    """(start, count) of kallsyms_markers: the u32 run just before the token table, from
    0, strictly increasing (alignment padding of zeros may sit between)."""
    end = table & ~3
    while end >= 4 and img[end - 4:end] == b"\0\0\0\0":
        end -= 4
    p, prev = end - 4, None
    while p >= 0:
        v = struct.unpack_from("<I", img, p)[0]
        if prev is not None and v >= prev:
            return None
        if v == 0:
            return p, (end - p) // 4
        prev, p = v, p - 4
    return None


def scan(read: Read, info, page: int, size: int = SCAN_BYTES) -> Kallsyms | None:
    """kallsyms of a kernel whose VMCOREINFO does not name the tables (before 6.0),
    found by their shape in the first `size` bytes of the image (layout up to 6.0:
    [offsets][relative_base][num_syms][names][markers][token_table][token_index]);
    None when not found."""
    stext = info.symbol("_stext")
    if stext is None:
        return None
    img = read_image(read, stext, size, page)
    found = find_token_index(img)
    if found is None:
        return None
    table, index = found
    mk = find_markers(img, table)
    if mk is None:
        return None
    markers, count = mk
    toks = tokens(img[table:index], img[index:index + 512])
    last = struct.unpack_from("<I", img, markers + 4 * (count - 1))[0]
    # names start 8-aligned, with num_syms (u32, in this marker count's range) 8 before
    lo = max(8, markers - MAX_NAMES_BYTES)
    for names in range((markers - last) & ~7, lo - 1, -8):
        n = struct.unpack_from("<I", img, names - 8)[0]
        if not 256 * (count - 1) < n <= 256 * count:
            continue
        blob = img[names:markers + 8 * count]
        r = records(img[names:markers], n, False)
        if r is None or not markers_follow(blob, record_offsets(r[0], False), r[1]):
            continue
        rb_at = names - 16
        rb = struct.unpack_from("<Q", img, rb_at)[0]
        off_at = (rb_at - 4 * n) & ~7
        abs_at = names - 8 - 8 * n
        offsets = img[off_at:off_at + 4 * n] if off_at >= 0 else None
        absolute = img[abs_at:abs_at + 8 * n] if abs_at >= 0 else None

        def addrs_of(i, n=n, offsets=offsets, rb=rb, off_at=off_at, absolute=absolute):
            try:
                return addresses(n, i, stext, offsets, stext + off_at, rb, None)
            except KernelError:
                return addresses(n, i, stext, None, None, None, absolute)
        return _finish(expand(blob, r[0], toks), addrs_of)
    return None
