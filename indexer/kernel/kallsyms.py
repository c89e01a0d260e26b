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

import re
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from vmdex.indexer.errors import KernelError, VmdexError

if TYPE_CHECKING:
    import numpy as np

Read = Callable[[int, int], bytes]      # (virtual address, size) -> bytes

MAX_NAMES_BYTES = 64 << 20     # kallsyms_names of the largest kernels is a few MiB
MAX_SYMS = 4 << 20
MAX_EXPANDED = 256 << 20     # the names expanded (7.x: 5 MiB)
MAX_TOKEN_TABLE = 1 << 16
U64 = (1 << 64) - 1
# nm letters kallsyms emits (upper = global); anything else means a wrong decode
LETTERS = set("TtDdBbRrAaWwVvUuNnGgSsCcIi?")


@dataclass
class Kallsyms:
    names: list[str]
    letters: bytes              # nm's type letter of each name
    addrs: "np.ndarray"         # uint64 runtime addresses (KASLR applied), absolute as is
    encoding: str               # which address encoding reproduced _stext
    text: str = ""              # the names joined by NULs (what `names` was split from)

    def address(self, name: str) -> int | None:
        i = self.index().get(name)
        return None if i is None else int(self.addrs[i])

    def index(self) -> dict[str, int]:
        """{name: entry} of the entry a lookup by name takes, built once: a name's first
        global entry, else its first entry (a global beats a local of the same name)."""
        if not hasattr(self, "_idx"):
            import numpy as np

            names, n = self.names, len(self.names)
            idx = dict(zip(reversed(names), range(n - 1, -1, -1)))
            if len(idx) < n:         # names repeat: overwrite with each one's first global
                glob = np.flatnonzero(_is_global(self.letters))[::-1].tolist()
                idx.update(zip(map(names.__getitem__, glob), glob))
            self._idx = idx
        return self._idx

    def has_data_symbols(self) -> bool:
        """Built with CONFIG_KALLSYMS_ALL: objects (init_task) are listed, not only code."""
        return self.address("init_task") is not None


def _is_global(letters: bytes):
    """Which entries are global symbols (nm's upper-case letters)."""
    import numpy as np

    c = np.frombuffer(letters, np.uint8)
    return (c >= ord("A")) & (c <= ord("Z"))


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


def records(blob: bytes, n: int, big: bool) -> tuple[tuple[list[int], list[int]], int] | None:
    """((starts, lengths) of the n records' token bytes, end offset), or None when they
    run past the blob."""
    starts: list[int] = []
    lengths: list[int] = []
    add_start, add_length = starts.append, lengths.append
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
        add_start(pos)
        add_length(length)
        pos += length
    return (starts, lengths), pos


def markers_before_tokens(blob: bytes, n: int) -> list[int] | None:
    """kallsyms_markers when `blob` runs from kallsyms_names to kallsyms_token_table (the
    markers, one u32 per 256 names, end there, maybe 4 bytes before): None when the words
    there do not look like them (0 first, increasing, inside the names)."""
    m = (n + 255) // 256
    for pad in (0, 4):
        at = len(blob) - pad - 4 * m
        if at <= 0:
            return None
        mk = _u32s(blob[at:at + 4 * m], m)
        if mk[0] == 0 and all(a < b for a, b in zip(mk, mk[1:])) and mk[-1] < at:
            return mk
    return None


def records_from_markers(blob: bytes, n: int, big: bool, markers: list[int]):
    """What records() gives, walked from every marked record at once (numpy across the
    256-name chunks): None unless each chunk ends exactly where the next one's marker
    says and the markers sit right after the last name (4- or 8-byte aligned)."""
    import numpy as np

    m, size = len(markers), len(blob)
    if m != (n + 255) // 256:
        return None
    b = np.frombuffer(blob, np.uint8)
    pos = np.array(markers, np.int64)
    count = np.full(m, 256, np.int64)
    count[-1] = n - 256 * (m - 1)
    starts = np.zeros((m, 256), np.int64)
    lengths = np.zeros((m, 256), np.int64)
    for k in range(256):
        live = np.nonzero(count > k)[0]
        if not len(live):
            break
        p = pos[live]
        if int(p.max()) >= size:
            return None
        length = b[p].astype(np.int64)
        p = p + 1
        if big:
            two = (length & 0x80) != 0
            if two.any():
                if int(p[two].max()) >= size:
                    return None
                high = b[np.minimum(p, size - 1)].astype(np.int64) << 7
                length = np.where(two, (length & 0x7F) | high, length)
                p = p + two
        if not length.all() or int((p + length).max()) > size:
            return None
        starts[live, k], lengths[live, k] = p, length
        pos[live] = p + length
    end = int(pos[-1])
    if pos[:-1].tolist() != markers[1:]:
        return None
    at = size - 4 * m - (0 if _u32s(blob[size - 4 * m:], m) == markers else 4)
    if at not in ((end + 3) & ~3, (end + 7) & ~7):
        return None
    keep = np.arange(256)[None, :] < count[:, None]
    return (starts[keep].tolist(), lengths[keep].tolist()), end


def marker_offsets(recs: tuple[list[int], list[int]], big: bool) -> list[int]:
    """Where records 0, 256, 512 ... (the first 8 kallsyms_markers) start, length bytes
    included."""
    starts, lengths = recs
    return [p - (2 if big and n >= 0x80 else 1) for p, n in zip(starts[::256][:8],
                                                             lengths[::256][:8])]


def markers_follow(blob: bytes, want: list[int], end: int) -> bool:
    """Whether kallsyms_markers (u32 record offsets of symbols 0, 256, 512...) sit right
    after the names (4- or 8-byte aligned), agreeing with this decode."""
    for align in (4, 8):
        at = (end + align - 1) & ~(align - 1)
        if at + 4 * len(want) > len(blob):
            continue
        if _u32s(blob[at:], len(want)) == want:
            return True
    return False


def decode(blob: bytes, n: int, toks: list[bytes]) -> tuple[bytes, int]:
    """Names (letter first) of the n records in `blob`, NUL-separated, and where they end:
    the length encoding (one byte; ULEB128 from 6.1) is the one kallsyms_markers confirms."""
    if not 0 < n <= min(MAX_SYMS, len(blob) // 2):
        raise KernelError(f"kallsyms_num_syms {n} does not fit kallsyms_names")
    # ULEB128 first: on a kernel without big names it reads the same (no length byte has
    # its top bit set); a kernel before 6.1 with a 128-token name fails the markers there
    markers = markers_before_tokens(blob, n)
    for big in (True, False) if markers else ():
        r = records_from_markers(blob, n, big, markers)
        if r is not None:
            return expand(blob, r[0], toks), r[1]
    for big in (True, False):
        r = records(blob, n, big)
        if r is not None and markers_follow(blob, marker_offsets(r[0], big), r[1]):
            return expand(blob, r[0], toks), r[1]
    raise KernelError("kallsyms_names does not decode (no length encoding matches "
                      "kallsyms_markers)")


def expand(blob: bytes, recs: tuple[list[int], list[int]], toks: list[bytes]) -> bytes:
    """The records' token bytes replaced by their tokens (one gather over all records),
    each record followed by a NUL but the last (tokens hold no NUL). The length bytes
    between records become the NUL (code 256), or nothing (code 257: the first record's,
    and a ULEB128 length's second byte)."""
    import numpy as np

    starts = np.asarray(recs[0], np.int64)
    counts = np.asarray(recs[1], np.int64)
    if not len(starts):
        return b""
    end = int(starts[-1] + counts[-1])
    codes = np.frombuffer(blob, np.uint8, end).astype(np.int16)
    first = np.zeros(len(starts), np.int64)        # where each record's length bytes start
    first[1:] = starts[:-1] + counts[:-1]
    codes[first] = 256
    codes[starts - 1] = np.where(starts - 1 > first, 257, 256)   # a two-byte length
    codes[first[0]:starts[0]] = 257
    # int32 throughout (names are a few MiB): half the memory traffic of int64
    table = np.frombuffer(b"".join(toks) + b"\0", np.uint8)
    tok_len = np.array([len(t) for t in toks] + [1, 0], np.int32)
    tok_off = np.zeros(258, np.int32)
    tok_off[:257] = np.cumsum(tok_len[:257]) - tok_len[:257]
    lens = tok_len[codes]
    if int(lens.sum(dtype=np.int64)) > MAX_EXPANDED:   # crafted tokens: bounded, and int32
        raise KernelError("kallsyms_names expands past any kernel's symbol names")
    out_before = np.cumsum(lens, dtype=np.int32)
    out_before -= lens
    base = tok_off[codes]                  # each output byte's table index, less its place
    base -= out_before
    at = np.repeat(base, lens)
    at += np.arange(len(at), dtype=np.int32)
    return table[at].tobytes()


def addresses(n: int, stext_index: int, stext: int, offsets: bytes | None,
              offsets_va: int | None, relative_base: int | None,
              absolute: bytes | None) -> tuple["np.ndarray", str]:
    """Runtime addresses of all n symbols, in the encoding that puts `_stext` (entry
    stext_index) at VMCOREINFO's `_stext`: absolute (u64 values), base-relative
    (relative_base + u32), absolute-percpu (x86 up to 6.14: a negative s32 is relative to
    relative_base, others absolute), place-relative (7.x: the entry's own address + s32).
    Each rule maps (indices, values) arrays to uint64 addresses (wrapping as the kernel's
    unsigned long arithmetic does)."""
    import numpy as np

    u64 = np.uint64
    rules: list[tuple[str, Callable]] = []
    vals = np.zeros(0, np.int64)
    if absolute is not None and len(absolute) >= 8 * n:
        vals = np.frombuffer(absolute, "<u8", n)
        rules.append(("absolute", lambda i, v: v.astype(u64)))
    elif offsets is not None and len(offsets) >= 4 * n:
        vals = np.frombuffer(offsets, "<i4", n).astype(np.int64)
        if relative_base is not None:
            rb = u64(relative_base & U64)
            rules.append(("base-relative",
                          lambda i, v: rb + (v & 0xFFFFFFFF).astype(u64)))
            rules.append(("absolute-percpu",
                          lambda i, v: np.where(v >= 0, v.astype(u64),
                                                rb - u64(1) + (-v).astype(u64))))
        if offsets_va is not None:
            va = u64(offsets_va & U64)
            rules.append(("place-relative",
                          lambda i, v: va + u64(4) * i.astype(u64) + v.astype(u64)))
    at = np.array([stext_index])
    with np.errstate(over="ignore"):
        for name, rule in rules:
            if int(rule(at, vals[at])[0]) == stext:
                return rule(np.arange(n), vals).astype(u64), name
    raise KernelError("unreadable kallsyms: no address encoding puts _stext where "
                      "VMCOREINFO does")


def _finish(joined: bytes, n: int, addrs_of: Callable[[int], tuple["np.ndarray", str]]) -> Kallsyms:
    """The n names of `joined` (NUL-separated, letter first) with their addresses."""
    import numpy as np

    chars = np.frombuffer(joined, np.uint8)
    first = np.flatnonzero(chars == 0) + 1          # where each name but the first starts
    first = np.r_[0, first]
    ends = np.r_[first[1:] - 1, len(joined)]
    # a token that expands to nothing (or a NUL in one) leaves an empty name
    if len(first) != n or (ends == first).any():
        raise KernelError("kallsyms_names decodes to garbage (an empty name)")
    letters = chars[first].tobytes()
    if not set(letters.decode("latin-1")) <= LETTERS:
        raise KernelError("kallsyms_names decodes to garbage (unknown symbol type letters)")
    keep = np.ones(len(chars), bool)
    keep[first] = False
    text = chars[keep].tobytes().decode("latin-1")
    names = text.split("\0")
    try:
        stext_index = names.index("_stext")
    except ValueError:
        raise KernelError("kallsyms has no _stext") from None
    addrs, enc = addrs_of(stext_index)
    return Kallsyms(names, letters, addrs, enc, text)


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
        joined, _ = decode(read(names_va, span), n, toks)
        offsets_va, rb_va, abs_va = (sym("kallsyms_offsets"), sym("kallsyms_relative_base"),
                                     sym("kallsyms_addresses"))
        offsets = read(offsets_va, 4 * n) if offsets_va is not None else None
        rb = int.from_bytes(read(rb_va, 8), "little") if rb_va is not None else None
        absolute = read(abs_va, 8 * n) if abs_va is not None else None
    except KernelError:
        raise
    except VmdexError as exc:
        raise KernelError(f"kallsyms unreadable in the dump ({exc})") from None
    return _finish(joined, n,
                   lambda i: addresses(n, i, stext, offsets, offsets_va, rb, absolute))


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


_LABEL_ENDS = re.compile("|".join(re.escape(s2) + "\0" for *_, s2 in _PAIRS if s2))
_LABEL_STARTS = re.compile("|".join("\0" + re.escape(p2) for _, _, p2, _ in _PAIRS if p2))


def linker_labels(text: str, have) -> set[str]:
    """Names that mark where a region starts or ends rather than an object (a linker
    script's `__start_X`/`__stop_X`, `X_start`/`X_end`, `X`/`X_end`, `_sX`/`_eX` pairs,
    both present): size 0 in a vmlinux's .symtab, so gdb names no pointer after them.
    `text` holds the names joined by NULs, `have` answers whether a name exists."""
    # the closing forms (the rarer ones), found as substrings of the joined names, then
    # each one's opening partner
    text = "\0" + text + "\0"
    candidates = set()
    for m in _LABEL_ENDS.finditer(text):
        end = m.end() - 1
        candidates.add(text[text.rfind("\0", 0, end) + 1:end])
    for m in _LABEL_STARTS.finditer(text):
        start = m.start() + 1
        candidates.add(text[start:text.index("\0", start)])
    out: set[str] = set()
    for pre, suf, pre2, suf2 in _PAIRS:
        least = len(pre2) + len(suf2)
        for n in candidates:
            if len(n) > least and n.startswith(pre2) and n.endswith(suf2):
                other = pre + n[len(pre2):len(n) - len(suf2)] + suf
                if other != n and other in have:
                    out.update((n, other))
    return out


def _by_address_then_name(addr, names: list[str]):
    """The order that sorts symbols by address, then name (stable; latin-1 names compare
    as their bytes do): numpy sorts the addresses; names are compared only among the few
    symbols that share one."""
    import numpy as np

    order = np.argsort(addr, kind="stable")
    a = addr[order]
    tie = np.nonzero(a[1:] == a[:-1])[0]
    if not len(tie):
        return order
    out = order.tolist()
    i, ties = 0, tie.tolist()
    while i < len(ties):                       # each run of equal addresses
        j = i
        while j + 1 < len(ties) and ties[j + 1] == ties[j] + 1:
            j += 1
        lo, hi = ties[i], ties[j] + 2
        out[lo:hi] = sorted(out[lo:hi], key=names.__getitem__)
        i = j + 1
    return np.array(out, np.int64)


class _NameIndex:
    """A Symtab's name index taken from kallsyms' own (a global beats a local of the same
    name, then the lowest address), answering unrelocated addresses: not built again."""

    def __init__(self, index: dict[str, int], unrelocated):
        self.index, self.unrelocated = index, unrelocated

    def get(self, name: str) -> int | None:
        i = self.index.get(name)
        return None if i is None else int(self.unrelocated[i])


def to_symtab(ks: Kallsyms, kaslr: int, moves):
    """The Symtab (indexer.kernel.symtab) of these symbols, unrelocated as a vmlinux's
    (`runtime - KASLR offset` where the Arch says symbols move: `moves` maps an array of
    addresses to a mask). kallsyms has no sizes or sections: a symbol is taken to reach
    the next higher address, and the image [_text, _end) is one section (crash lets gdb
    annotate only kernel addresses)."""
    import numpy as np

    from vmdex.indexer.kernel import symtab as S

    names = ks.names
    n = len(names)
    runtime = np.asarray(ks.addrs, np.uint64)
    unrelocated = np.where(moves(runtime), runtime - np.uint64(kaslr & U64), runtime)
    lut = np.zeros(256, np.uint8)
    for c, k in _kinds().items():
        lut[ord(c)] = k
    kind = lut[np.frombuffer(ks.letters, np.uint8)]
    order = _by_address_then_name(unrelocated, names)
    addr, kind = unrelocated[order], kind[order]
    is_abs = kind == S.ABS
    # exact duplicates go, as from a .symtab: the same address, absoluteness and name
    same = np.zeros(n, bool)
    same[1:] = (addr[1:] == addr[:-1]) & (is_abs[1:] == is_abs[:-1])
    for i in np.nonzero(same)[0].tolist():
        same[i] = names[order[i]] == names[order[i - 1]]
    keep = ~same
    order, addr, kind, is_abs = order[keep], addr[keep], kind[keep], is_abs[keep]
    image = addr[~is_abs]                      # sorted: its distinct values
    image = image[np.r_[True, image[1:] != image[:-1]]] if len(image) else image
    nxt = np.searchsorted(image, addr, side="right")
    size = np.where(nxt < len(image), image[np.minimum(nxt, len(image) - 1)] - addr, 0)
    index = ks.index()
    label = np.zeros(n, bool)                  # in kallsyms' order: every entry of a mark
    marks = linker_labels(ks.text or "\0".join(names), index)
    label[[i for i, name in enumerate(names) if name in marks] if marks else []] = True
    size = np.where(is_abs | label[order], 0, size).astype(np.uint64)
    # Before a page-aligned symbol (__page_aligned_data/bss) the linker leaves up to a page
    # of padding: a pointer into the last (alignment - 1) bytes of such a gap may lie past
    # the object, where gdb (knowing the ELF size) names nothing; only the vmlinux could
    # tell, so it is said, not guessed. Smaller alignments leave a few bytes, taken as the
    # object's (a pointer into them is not expected).
    nxt_addr = image[np.minimum(nxt, max(len(image) - 1, 0))] if len(image) else addr
    align = nxt_addr & (~nxt_addr + np.uint64(1))
    pad = np.where(align >= np.uint64(PAGE_ALIGNED), align - np.uint64(1), np.uint64(0))
    sure = np.where(size > pad, size - pad, np.uint64(1))
    shndx = np.where(is_abs, S.SHN_ABS, 1).astype(np.uint16)
    kept = [names[i] for i in order.tolist()]
    lengths = np.fromiter(map(len, kept), np.uint32, len(kept)) + np.uint32(1)
    name_off = (np.cumsum(lengths) - lengths).astype(np.uint32)
    text, end = ks.address("_text"), ks.address("_end")
    secs = [(1, (text - kaslr) & U64, (end - kaslr) & U64)] if text and end else []
    out = S.Symtab(addr, size, kind, shndx, name_off,
                   ("\0".join(kept) + "\0").encode("latin-1"),
                   np.array(secs, dtype=np.uint64).reshape(-1, 3))
    out.certain = np.where(size > 0, sure, np.uint64(0)).astype(np.uint64)
    out._by_name = _NameIndex(index, unrelocated)
    return out


SCAN_BYTES = 64 << 20          # how much of the image, from _stext, the scan reads
WINDOW_BYTES = 24 << 20        # how far below the kernel's data it looks first
PAGE_ALIGNED = 4096            # an alignment this large is a page-aligned object's
MAX_TOKEN_CANDIDATES = 256     # "0".."9" runs looked at as a token table (a kernel has few)
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
    for _ in range(MAX_TOKEN_CANDIDATES):   # a crafted image full of digit runs: bounded
        if at < 0:
            break
        start = (at + 8) & ~7
        for p in range(start, min(start + MAX_TOKEN_TABLE, len(img) - 512), 8):
            if img[p:p + 2] != b"\0\0" or img[p + 2:p + 4] == b"\0\0":
                continue                  # index[0] is 0, index[1] is not
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
    found by their shape (layout up to 6.0: [offsets][relative_base][num_syms][names]
    [markers][token_table][token_index]); None when not found in the first `size` bytes
    of the image. The tables are read-only data linked just before the kernel's data, so
    the few MiB below the lowest data symbol VMCOREINFO names are tried first."""
    stext = info.symbol("_stext")
    if stext is None:
        return None
    above = [v for k, v in info.symbols().items() if stext < v < stext + size]
    if above:                 # downward, 2 MiB more at a time, up to 24 MiB
        hi = lo = min(above) & ~(page - 1)
        img = b""
        while lo > stext and hi - lo < WINDOW_BYTES:
            more = min(2 << 20, lo - stext)
            img = read_image(read, lo - more, more, page) + img
            lo -= more
            got = _scan_image(img, lo, stext)
            if got is not None:
                return got
    return _scan_image(read_image(read, stext, size, page), stext, stext)


def _scan_image(img: bytes, base: int, stext: int) -> Kallsyms | None:
    """The tables in `img` (kernel memory from address `base`), or None."""
    found = find_token_index(img)
    if found is None:
        return None
    table, index = found
    mk = find_markers(img, table)
    if mk is None:
        return None
    markers, count = mk
    toks = tokens(img[table:index], img[index:index + 512])
    marks = _u32s(img[markers:markers + 4 * count], count)
    last = marks[-1]
    # names start 8-aligned, with num_syms (u32, in this marker count's range) 8 before
    lo = max(8, markers - MAX_NAMES_BYTES)
    for names in range((markers - last) & ~7, lo - 1, -8):
        n = struct.unpack_from("<I", img, names - 8)[0]
        if not 256 * (count - 1) < n <= 256 * count:
            continue
        blob = img[names:markers + 8 * count]
        r = records_from_markers(img[names:markers + 4 * count], n, False, marks) or \
            records(img[names:markers], n, False)
        if r is None or not markers_follow(blob, marker_offsets(r[0], False), r[1]):
            continue
        rb_at = names - 16
        rb = struct.unpack_from("<Q", img, rb_at)[0]
        off_at = (rb_at - 4 * n) & ~7
        abs_at = names - 8 - 8 * n
        offsets = img[off_at:off_at + 4 * n] if off_at >= 0 else None
        absolute = img[abs_at:abs_at + 8 * n] if abs_at >= 0 else None

        def addrs_of(i, n=n, offsets=offsets, rb=rb, off_at=off_at, absolute=absolute):
            try:
                return addresses(n, i, stext, offsets, base + off_at, rb, None)
            except KernelError:
                return addresses(n, i, stext, None, None, None, absolute)
        return _finish(expand(blob, r[0], toks), n, addrs_of)
    return None
