"""Compare two KernelTypes graphs (DWARF-built and BTF-built) by structure, not by ids."""
from __future__ import annotations

from vmdex.indexer.kernel import types as T


def canon(data: dict, tid, memo=None, flat: bool = False):
    """A hashable description of type `tid` and everything it contains. `flat`: arrays
    of arrays as one array of the innermost element (what pahole writes into BTF, which
    has no multi-dimensional arrays)."""
    memo = {} if memo is None else memo
    if tid is None:
        return ("void",)
    if tid in memo:
        return memo[tid]
    t = data["types"][tid]
    k = t["k"]
    if k == "base":
        out = ("base", t["n"], t["sz"], t["enc"])
    elif k == "ptr":
        out = ("ptr", t.get("to"), bool(t.get("fn")), bool(t.get("ch")))
    elif k == "array":
        elem = canon(data, t["t"], memo, flat)
        n = t["len"] or 0
        if flat and elem[0] == "array":
            elem, n = elem[1], n * elem[2]
        out = ("array", elem, n, t["sz"])
    elif k == "typedef":
        out = ("typedef", t["n"], canon(data, t["t"], memo, flat))
    elif k in ("struct", "union"):
        out = (k, t.get("n"), t.get("sz"), bool(t.get("decl")),
               tuple((m[0], canon(data, m[1], memo, flat), *m[2:]) for m in t.get("m", ())))
    elif k == "enum":
        out = ("enum", t.get("n"), t["sz"], t["s"], tuple(map(tuple, t["e"])))
    else:
        out = (k,)
    memo[tid] = out
    return out


def differences(dwarf: dict, btf: dict) -> list[str]:
    """What a BTF graph gets wrong against the DWARF one: every wanted struct, typedef and
    enum (whole trees; multi-dimensional arrays flattened, except in the structs `vm -m`
    and `vm -v` print), every enumerator value, every variable's array length, formats."""
    from vmdex.indexer.kernel.types import KernelTypes
    out = []
    d, b = KernelTypes(dwarf), KernelTypes(btf)
    for name in T.WANTED_STRUCTS:
        i, j = d.struct_id(name), b.struct_id(name)
        if (i is None) != (j is None):
            out.append(f"struct {name}: dwarf {i is not None}, btf {j is not None}")
        elif i is not None:
            flat = name not in T.RENDER_STRUCTS
            if canon(dwarf, i, flat=flat) != canon(btf, j, flat=flat):
                out.append(f"struct {name} differs")
    for kw, names in (("typedef", T.WANTED_TYPEDEFS), ("enum", T.WANTED_ENUMS)):
        for name in names:
            i, j = dwarf["named"].get(f"{kw} {name}"), btf["named"].get(f"{kw} {name}")
            if (i is None) != (j is None) or (i is not None and canon(dwarf, i) != canon(btf, j)):
                out.append(f"{kw} {name} differs")
    for name, v in dwarf.get("enumerators", {}).items():
        if btf.get("enumerators", {}).get(name) != v:
            out.append(f"enumerator {name}: dwarf {v}, btf {btf.get('enumerators', {}).get(name)}")
    for name in dwarf.get("variables", {}):
        if d.variable_array_length(name) != b.variable_array_length(name):
            out.append(f"variable {name}: length dwarf {d.variable_array_length(name)}, "
                       f"btf {b.variable_array_length(name)}")
    if dwarf.get("formats") != btf.get("formats"):
        out.append(f"formats: dwarf {dwarf.get('formats')}, btf {btf.get('formats')}")
    return out
