"""crash's `vm -p` page lines in bulk, built as one numpy byte array per stretch.

A line is the virtual address (hex, left-justified in UVADDR_PRLEN) + a fixed middle +
optionally a second hex number (the physical address right-justified in the PHYSICAL
column, or a file offset) + a fixed tail. When every line of a stretch has the same number
of virtual-address digits, and the second number either fits its column or keeps one digit
count, all lines share one layout and their digits are computed at once. The text is
identical to the printf-style path of sinks.TextSink, several times faster.
"""
from __future__ import annotations

import numpy as np

UVADDR_PRLEN = 10
# The two hex digits of every byte value, as one 16-bit word whose bytes are in text order:
# the digits of a 64-bit number are one lookup per byte, not a shift per digit.
_HEX2 = np.array([int.from_bytes(b"%02x" % b, "little") for b in range(256)], dtype="<u2")
_POWERS = np.array([16 ** k for k in range(1, 16)], dtype=np.uint64)
_SPACE = ord(" ")


def digits(v: int) -> int:
    return max(1, (v.bit_length() + 3) // 4)


def digit_cuts(first: int, n: int, page: int) -> list[int]:
    """Line indices in 1..n-1 where first + i*page gains a hex digit."""
    out = []
    d = digits(first)
    while True:
        i = -(-((1 << (4 * d)) - first) // page)
        if i >= n:
            return out
        out.append(i)
        d = digits(first + i * page)


def _hex(vals: np.ndarray, width: int) -> np.ndarray:
    """(len(vals), width) ASCII: the low `width` hex digits of each value, zero-padded."""
    big_endian = vals.astype(">u8").view(np.uint8).reshape(len(vals), 8)
    return _HEX2[big_endian].view(np.uint8)[:, 16 - width:]


def render_bytes(va: np.ndarray, dv: int, mid: bytes, second: np.ndarray | None = None,
                 width: int = 0, tail: bytes = b"") -> np.ndarray:
    """One line per element of `va` (uint64, all with dv hex digits). `second`, if given, is
    printed right-justified in `width` columns; none of its values has more digits."""
    left = max(dv, UVADDR_PRLEN)
    row = np.frombuffer(b" " * left + mid + b" " * width + tail, dtype=np.uint8)
    buf = np.empty((len(va), len(row)), dtype=np.uint8)
    buf[:] = row
    buf[:, :dv] = _hex(va, dv)
    if second is not None:
        at = left + len(mid)
        field = _hex(second, width)
        # crash's %*lx pads with spaces: blank the columns left of each value's digits.
        ndigits = np.searchsorted(_POWERS[:width - 1], second, side="right") + 1
        np.copyto(field, _SPACE, where=np.arange(width) < (width - ndigits)[:, None])
        buf[:, at:at + width] = field
    return buf.reshape(-1)


class PresentBatch:
    """Present-page lines of many runs, rendered together: `vm -p` of a big address space
    is mostly runs of a few dozen pages, too short to pay numpy's per-call cost alone.
    Runs are added in output order; whatever else is printed must flush() first."""

    MAX_LINES = 65_536
    PRINTF_LINES = 256    # below this a batch costs less formatted line by line

    def __init__(self, out, pwidth: int, page: int):
        self.write, self.write_text = out.write_bytes, out.write
        self.pw, self.page = pwidth, page
        self.vas: list[int] = []
        self.pas: list[int] = []
        self.ns: list[int] = []
        self.lines = 0
        self.dv = 0

    def add(self, va: int, n: int, pa: int) -> None:
        """Pages va.. (n of them) at pa..; the caller keeps va's digit count and pa's
        fit in the column constant within the run (see fits())."""
        dv = digits(va)
        if self.ns and dv != self.dv:
            self.flush()
        self.dv = dv
        self.vas.append(va)
        self.pas.append(pa)
        self.ns.append(n)
        self.lines += n
        if self.lines >= self.MAX_LINES:
            self.flush()

    def fits(self, va: int, n: int, pa: int) -> bool:
        last = (n - 1) * self.page
        return (n <= self.MAX_LINES and digits(va) == digits(va + last)
                and digits(pa + last) <= self.pw)

    def flush(self) -> None:
        if not self.ns:
            return
        if self.lines < self.PRINTF_LINES:
            self._printf()
            return
        ns = np.array(self.ns, dtype=np.int64)
        first = np.cumsum(ns) - ns                       # line index where each run starts
        offset = (first * self.page).astype(np.uint64)
        steps = np.arange(self.lines, dtype=np.uint64) * np.uint64(self.page)
        # va of line i = va_run - first_run*page + i*page (modulo 2**64, as uint64 wraps)
        va = np.repeat(np.array(self.vas, dtype=np.uint64) - offset, ns) + steps
        pa = np.repeat(np.array(self.pas, dtype=np.uint64) - offset, ns) + steps
        self.vas, self.pas, self.ns, self.lines = [], [], [], 0
        self.write(render_bytes(va, self.dv, b"  ", pa, self.pw, b"\n"))   # (may call flush())

    def _printf(self) -> None:
        """A few lines (a short run between two gaps): cheaper printf-style than numpy."""
        fmt, page = "%%-10x  %%%dx\n" % self.pw, self.page
        text = "".join(fmt % (va + i * page, pa + i * page)
                       for va, pa, n in zip(self.vas, self.pas, self.ns) for i in range(n))
        self.vas, self.pas, self.ns, self.lines = [], [], [], 0
        self.write_text(text)


# --- whole blocks: lines that differ only in their low digits ----------------------------
# Lines va = v0 + i*page inside one aligned 16**L block differ only in their low L digits,
# which repeat identically in every block: one template of the block's lines is copied per
# block and only the few high digits are written, a memcpy-speed loop instead of per-line
# digit work (a 64 GiB reservation is 16 M "(not mapped)" lines).
CHUNK_BYTES = 1 << 22   # text per returned chunk: memory stays flat, writes stay large


def _block_digits(dv: int, ds: int | None, page: int) -> int:
    """L: the low-digit count of a block (0: no block layout fits this stretch)."""
    for low in (6, 5, 4):
        if 16 ** low % page == 0 and 16 ** low // page >= 16 and low < dv \
                and (ds is None or low < ds):
            return low
    return 0


def _layout(pre: bytes, dv: int, vwidth: int, mid: bytes, sfield: int, tail: bytes):
    """(row template, va column, second column): pre, va left-justified in vwidth, mid,
    the second number right-justified in sfield columns, tail."""
    row = pre + b" " * max(dv, vwidth) + mid + b" " * sfield + tail
    at_s = len(pre) + max(dv, vwidth) + len(mid)
    return np.frombuffer(row, dtype=np.uint8), len(pre), at_s


def _segment(pre, v0, n, page, vwidth, mid, s0, swidth, tail):
    """Chunks (uint8 arrays, whole lines) of n lines whose numbers keep their digit counts."""
    dv = digits(v0)
    ds = None if s0 is None else digits(s0)
    sfield = 0 if s0 is None else max(ds, swidth)
    low = _block_digits(dv, ds, page)
    row, at_v, at_s = _layout(pre, dv, vwidth, mid, sfield, tail)
    if not low or n < 4 * (16 ** low // page):
        yield from _plain(row, at_v, dv, at_s, ds, sfield, v0, n, page, s0)
        return
    yield from _blocks(row, at_v, dv, at_s, ds, sfield, v0, n, page, s0, low)


def _plain(row, at_v, dv, at_s, ds, sfield, v0, n, page, s0):
    """Every line's digits computed (short stretches, small numbers)."""
    per = max(1, CHUNK_BYTES // len(row))
    steps = np.arange(min(n, per), dtype=np.uint64) * np.uint64(page)
    for a in range(0, n, per):
        k = min(per, n - a)
        buf = np.empty((k, len(row)), dtype=np.uint8)
        buf[:] = row
        buf[:, at_v:at_v + dv] = _hex(steps[:k] + np.uint64(v0 + a * page), dv)
        if s0 is not None:
            buf[:, at_s + sfield - ds:at_s + sfield] = _hex(steps[:k] + np.uint64(s0 + a * page), ds)
        yield buf.reshape(-1)


def _blocks(row, at_v, dv, at_s, ds, sfield, v0, n, page, s0, low):
    B = 16 ** low
    m = B // page                       # lines per block
    a = (v0 % B) // page                # line of v0 inside its block
    vstart = v0 - a * page              # first (virtual) line of the first block
    j = np.arange(m, dtype=np.uint64) * np.uint64(page)
    tmpl = np.empty((m, len(row)), dtype=np.uint8)
    tmpl[:] = row
    tmpl[:, at_v + dv - low:at_v + dv] = _hex(j + np.uint64(vstart % B), low)
    if s0 is not None:
        sstart = s0 - a * page          # >= 0: s0 has more than `low` digits, a*page < 16**low
        ps = sstart % B
        tmpl[:, at_s + sfield - low:at_s + sfield] = _hex((j + np.uint64(ps)) % np.uint64(B), low)
        cut = m if ps == 0 else -(-(B - ps) // page)   # line where the second's high part steps
    total = -(-(a + n) // m)
    per = min(total, max(16, CHUNK_BYTES // (m * len(row))) // 16 * 16)   # blocks per chunk
    # One buffer for every chunk: a chunk advances each block by `per` (a multiple of 16)
    # blocks, so mostly one digit column of the high part changes, and only the columns
    # that change are written: the template is copied once per answer, not per chunk.
    buf = np.empty((per, m, len(row)), dtype=np.uint8)
    buf[:] = tmpl
    k = np.arange(per, dtype=np.uint64)
    vcols = buf[:, :, at_v:at_v + dv - low]
    if s0 is not None:
        scols = buf[:, :, at_s + sfield - ds:at_s + sfield - low]
    old = None
    for b0 in range(0, total, per):
        new = [_hex(k + np.uint64(vstart // B + b0), dv - low)]
        if s0 is not None:
            sh = k + np.uint64(sstart // B + b0)   # the second's high part at each block start
            new += [_hex(sh, ds - low), _hex(sh + np.uint64(1), ds - low)]
        _set_columns(vcols, old and old[0], new[0])
        if s0 is not None:
            _set_columns(scols[:, :cut], old and old[1], new[1])
            _set_columns(scols[:, cut:], old and old[2], new[2])
        old = new
        flat = buf.reshape(-1)
        first = max(0, a - b0 * m)
        last = min(per * m, a + n - b0 * m)
        yield flat[first * len(row):last * len(row)]


def _set_columns(view: np.ndarray, old, new: np.ndarray) -> None:
    """view[block, line, c] = new[block, c] for the digit columns c where new differs
    from what the view holds (old; None: all of them)."""
    cols = range(new.shape[1]) if old is None else np.flatnonzero((old != new).any(axis=0))
    for c in cols:
        view[:, :, c] = new[:, c, None]


def chunks(va: int, n: int, page: int, mid: bytes, second: int | None = None,
           swidth: int = 0, tail: bytes = b"", *, pre: bytes = b"", vwidth: int = UVADDR_PRLEN):
    """The bytes of n lines `pre va mid second tail` for pages va, va+page, ... (second, if
    given, advancing with va, right-justified in swidth columns), as uint8 arrays of whole
    lines, without building one string per stretch. A chunk is
    valid until the next one is taken (the buffer is reused)."""
    cuts = set(digit_cuts(va, n, page))
    if second is not None:
        cuts.update(digit_cuts(second, n, page))
    bounds = [0] + sorted(cuts) + [n]
    for a, b in zip(bounds, bounds[1:]):
        yield from _segment(pre, va + a * page, b - a, page, vwidth, mid,
                            None if second is None else second + a * page, swidth, tail)
