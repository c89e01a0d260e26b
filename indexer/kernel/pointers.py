"""Which pointers `vm -m` / `vm -v` print with a `<symbol+off>`, resolved at ingest.

gdb annotates pointers with `<symbol+off>`. Which pointers a struct print shows is the
renderer's business (indexer.kernel.gdbprint), so the ingest asks it and stores the
answers; the query side then needs no symbol table (and no numpy) at all.
"""
from __future__ import annotations

from vmdex.indexer.kernel.gdbprint import pointer_fields

U64 = (1 << 64) - 1


def collect_pointer_symbols(types: dict, symbolize, objects) -> dict[int, str]:
    """{pointer value: symbol text} for every pointer printed when rendering `objects`,
    an iterable of (struct name, raw bytes, address). The renderer's own walk says where
    those pointers are (gdbprint.pointer_fields), once per struct type."""
    seen: dict[int, str | None] = {}
    fields: dict[str, tuple] = {}
    for struct, raw, addr in objects:
        if struct not in fields:
            fields[struct] = pointer_fields(types, struct)
        ptrs, flex = fields[struct]
        values = [int.from_bytes(raw[o:o + n], "little") for o, n in ptrs]
        values += [((addr or 0) + o) & U64 for o in flex]
        for v in values:
            if v and v not in seen:
                seen[v] = symbolize(v)
    return {a: s for a, s in seen.items() if s}
