"""`vm -m` / `vm -v`: gdb-style struct text from stored raw bytes and stored type layouts,
with the pointer symbols the ingest resolved (indexer.kernel.pointers)."""
from __future__ import annotations

import json


def render_structs(idx, struct: str, objects: list[tuple[bytes, int]], radix: int) -> str:
    from vmdex.indexer.kernel.gdbprint import render_struct

    types = json.loads(idx.types_json())
    symbols = idx.pointer_symbols()
    return "".join(render_struct(types, struct, raw, symbols.get, radix, addr)
                   for raw, addr in objects)
