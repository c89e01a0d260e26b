"""`vm -m` / `vm -v`: gdb-style struct text from stored raw bytes and stored type layouts,
with the pointer symbols the ingest resolved (indexer.kernel.pointers)."""
from __future__ import annotations

import json
import sys

UNSURE = "\0?"      # indexer.kernel.symtab.UNSURE (importing that module brings numpy)


def render_structs(idx, struct: str, objects: list[tuple[bytes, int]], radix: int) -> str:
    from vmdex.indexer.kernel.gdbprint import render_struct

    types = json.loads(idx.types_json())
    symbols = idx.pointer_symbols()
    unsure: list[str] = []

    def symbol(value: int) -> str | None:
        s = symbols.get(value)
        if s is not None and s.startswith(UNSURE):
            # kernel read from the dump: kallsyms has no sizes, so whether the pointer lies
            # in the object or in padding after it is not known; gdb's answer is not guessed
            unsure.append(f"vmdex: {value:#x}: printed without <{s[len(UNSURE):]}>: whether "
                          "it lies in that object needs the vmlinux's symbol sizes")
            return None
        return s

    text = "".join(render_struct(types, struct, raw, symbol, radix, addr)
                   for raw, addr in objects)
    for line in dict.fromkeys(unsure):
        print(line, file=sys.stderr)
    return text
