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


def render(va: np.ndarray, dv: int, mid: bytes, second: np.ndarray | None = None,
           width: int = 0, tail: bytes = b"") -> str:
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
    return buf.tobytes().decode("utf-8", "surrogateescape")


def lines(va: int, n: int, mid: bytes, second: int | None = None, second_width: int = 0,
          tail: bytes = b"", *, page: int) -> str:
    """n lines for pages va, va+page, ...; the second number (if any) starts at `second`.
    `mid` and `tail` are UTF-8 (surrogateescape) bytes, as the returned text decodes."""
    cuts = set(digit_cuts(va, n, page))
    if second is not None:
        cuts.update(digit_cuts(second, n, page))
    bounds = [0] + sorted(cuts) + [n]
    steps = np.arange(n, dtype=np.uint64) * np.uint64(page)
    out = []
    for a, b in zip(bounds, bounds[1:]):
        v0 = va + a * page
        vals = steps[:b - a] + np.uint64(v0)
        if second is None:
            out.append(render(vals, digits(v0), mid, tail=tail))
        else:
            s0 = second + a * page
            out.append(render(vals, digits(v0), mid, steps[:b - a] + np.uint64(s0),
                              max(digits(s0), second_width), tail))
    return "".join(out)


class PresentBatch:
    """Present-page lines of many runs, rendered together: `vm -p` of a big address space
    is mostly runs of a few dozen pages, too short to pay numpy's per-call cost alone.
    Runs are added in output order; whatever else is printed must flush() first."""

    MAX_LINES = 65_536

    def __init__(self, write, pwidth: int, page: int):
        self.write, self.pw, self.page = write, pwidth, page
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
        ns = np.array(self.ns, dtype=np.int64)
        first = np.cumsum(ns) - ns                       # line index where each run starts
        offset = (first * self.page).astype(np.uint64)
        steps = np.arange(self.lines, dtype=np.uint64) * np.uint64(self.page)
        # va of line i = va_run - first_run*page + i*page (modulo 2**64, as uint64 wraps)
        va = np.repeat(np.array(self.vas, dtype=np.uint64) - offset, ns) + steps
        pa = np.repeat(np.array(self.pas, dtype=np.uint64) - offset, ns) + steps
        self.vas, self.pas, self.ns, self.lines = [], [], [], 0
        self.write(render(va, self.dv, b"  ", pa, self.pw, b"\n"))   # (may call flush())
