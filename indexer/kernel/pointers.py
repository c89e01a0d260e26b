"""Which pointers `vm -m` / `vm -v` print with a `<symbol+off>`, resolved at ingest.

gdb annotates pointers with `<symbol+off>`. Which pointers a struct print shows is the
renderer's business (indexer.kernel.gdbprint), so the ingest asks it and stores the
answers; the query side then needs no symbol table (and no numpy) at all.
"""
from __future__ import annotations

from indexer.kernel.gdbprint import render_struct


def collect_pointer_symbols(types: dict, symbolize, objects) -> dict[int, str]:
    """{pointer value: symbol text} for every pointer printed when rendering `objects`,
    an iterable of (struct name, raw bytes, address)."""
    seen: dict[int, str | None] = {}

    def ask(addr: int) -> str | None:
        if addr not in seen:
            seen[addr] = symbolize(addr)
        return seen[addr]

    for struct, raw, addr in objects:
        render_struct(types, struct, raw, ask, 10, addr)
    return {a: s for a, s in seen.items() if s}
