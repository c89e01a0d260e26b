"""Per-page decompression for kdump-compressed dumps.

The flag values are the `DUMP_DH_COMPRESSED_*` bits of a page descriptor (and of the
header's `status`). The optional libraries are imported on first use, so a dump that only
uses zlib never needs them, and a missing one is reported as a DumpError the user can act on.
"""
from __future__ import annotations

import zlib

from ..errors import DumpError

ZLIB, LZO, SNAPPY, ZSTD = 0x1, 0x2, 0x4, 0x20
CODEC_BITS = ZLIB | LZO | SNAPPY | ZSTD
NAMES = {ZLIB: "zlib", LZO: "lzo", SNAPPY: "snappy", ZSTD: "zstd"}

_loaded: dict[int, object] = {}  # flag -> callable(data, expected_size) -> bytes


def name(flags: int) -> str:
    """Codec name for a descriptor/status flag word ('none' when no codec bit is set)."""
    bits = flags & CODEC_BITS
    return NAMES.get(bits, "none" if not bits else f"unknown(0x{bits:x})")


def _zlib(data: bytes, size: int) -> bytes:
    """zlib's uncompress() into a page-sized buffer, as makedumpfile and crash call it, so
    corrupt data fails with the code they see: Z_BUF_ERROR (-5) when the output would
    not fit the page, Z_DATA_ERROR (-3) when the data is bad or ends early."""
    d = zlib.decompressobj(15)
    out = d.decompress(data, size)       # raises zlib.error "Error -3 ..." on bad data
    if d.eof:
        return out
    if len(out) >= size:
        raise zlib.error("Error -5 while decompressing data: output does not fit the page")
    raise zlib.error("Error -3 while decompressing data: incomplete or truncated stream")


def _load_lzo():
    try:  # lzokay: LZO1X decompression with wheels on PyPI (no C compiler, no liblzo2)
        import lzokay
    except ImportError:
        raise DumpError("lzo support needs lzokay (pip install lzokay)") from None
    # makedumpfile stores raw lzo1x_1 output; the page size bounds what it may expand to
    return lambda data, size: lzokay.decompress(data, size)


def _load_snappy():
    try:  # cramjam is what python-snappy wraps nowadays; raw snappy, as makedumpfile writes
        import cramjam
    except ImportError:
        raise DumpError("snappy support needs cramjam (pip install cramjam)") from None
    return lambda data, size: bytes(cramjam.snappy.decompress_raw(data))


def _load_zstd():
    try:
        import zstandard
    except ImportError:
        raise DumpError("zstd support needs zstandard (pip install zstandard)") from None
    dctx = zstandard.ZstdDecompressor()
    # max_output_size covers frames written without a content size
    return lambda data, size: dctx.decompress(data, max_output_size=size)


_LOADERS = {ZLIB: lambda: _zlib, LZO: _load_lzo, SNAPPY: _load_snappy, ZSTD: _load_zstd}


def codec(flags: int):
    """The decompress function for one codec bit; raises DumpError if unusable."""
    bits = flags & CODEC_BITS
    fn = _loaded.get(bits)
    if fn is None:
        if bits not in _LOADERS:
            raise DumpError(f"unknown page compression flags 0x{flags:x}")
        fn = _loaded[bits] = _LOADERS[bits]()
    return fn


def decompress(flags: int, data: bytes, expected_size: int) -> bytes:
    """One page's data, exactly `expected_size` bytes, or DumpError saying what failed."""
    if flags & ~CODEC_BITS:
        raise DumpError(f"unknown page compression flags 0x{flags:x}")
    if not flags:
        if len(data) != expected_size:
            raise DumpError(f"uncompressed page is {len(data)} bytes, expected {expected_size}")
        return bytes(data)
    fn = codec(flags)
    try:
        out = fn(bytes(data), expected_size)
    except DumpError:
        raise
    except Exception as e:  # each library has its own error type; all mean "corrupt data"
        raise DumpError(f"{name(flags)}: uncompress failed: {e}") from None
    if len(out) != expected_size:
        raise DumpError(
            f"{name(flags)}: uncompress failed: got {len(out)} bytes, expected {expected_size}")
    return out
