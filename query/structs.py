"""`vm -m` / `vm -v`: gdb-style struct text from stored raw bytes and stored type layouts.

gdb annotates pointers with `<symbol+off>`. Which pointers a struct print shows is the
renderer's business, so the ingest asks the renderer (collect_pointer_symbols) and stores
the answers; the query side then needs no symbol table (and no numpy) at all.
"""
from __future__ import annotations

import json


def collect_pointer_symbols(types: dict, symbolize, objects) -> dict[int, str]:
    """{pointer value: symbol text} for every pointer printed when rendering `objects`,
    an iterable of (struct name, raw bytes, address)."""
    from query.render.gdbprint import render_struct

    seen: dict[int, str | None] = {}

    def ask(addr: int) -> str | None:
        if addr not in seen:
            seen[addr] = symbolize(addr)
        return seen[addr]

    for struct, raw, addr in objects:
        render_struct(types, struct, raw, ask, 10, addr)
    return {a: s for a, s in seen.items() if s}


def render_structs(idx, struct: str, objects: list[tuple[bytes, int]], radix: int) -> str:
    from query.render.gdbprint import render_struct

    types = json.loads(idx.types_json())
    symbols = idx.pointer_symbols()
    return "".join(render_struct(types, struct, raw, symbols.get, radix, addr)
                   for raw, addr in objects)
