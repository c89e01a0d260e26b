"""`vm -m` / `vm -v`: gdb-style struct text from stored raw bytes and stored type layouts."""
from __future__ import annotations

import json


def render_structs(idx, struct: str, objects: list[tuple[bytes, int]], radix: int) -> str:
    from indexer.kernel.symtab import Symtab
    from query.render.gdbprint import render_struct

    types = json.loads(idx.types_json())
    symtab = Symtab.from_bytes(idx.symtab_bytes())

    def symbol(addr: int) -> str | None:
        return symtab.symbolize(addr, idx.kaslr_offset)

    return "".join(render_struct(types, struct, raw, symbol, radix, addr)
                   for raw, addr in objects)
