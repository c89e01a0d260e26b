"""Kernel type layouts from vmlinux DWARF, as a plain JSON-able graph (`KernelTypes`).

Only a handful of compile units are parsed: an anchor function's address is mapped to
its CU through .debug_aranges (e.g. `copy_process` -> kernel/fork.c holds task_struct,
mm_struct, vm_area_struct). Whatever is still missing is looked for in the next anchor's
CU; required types fall back to scanning every CU. Nothing is hard-coded but names.

JSON shape (`to_json()`):
  {"v": 1,
   "types": [node, ...],                       # a type id is an index into this list
   "named": {"struct mm_struct": id, "union x": id, "enum pid_type": id,
             "typedef atomic_t": id, "base char": id},
   "enumerators": {"MM_FILEPAGES": 0, ...},
   "variables": {"swap_info": id, ...}}
  node kinds ("k"):
   base    {"k":"base","n":"long unsigned int","sz":8,"enc":"u|s|uc|sc|b|f|a"}
   ptr     {"k":"ptr","sz":8,"to":"struct file"|"void"|"func"|<name>,"fn":1?,"ch":1?}
   struct  {"k":"struct"|"union","n":name|null,"sz":N,"m":[[name|null, id, byte_off]
             or [name, id, byte_off, bit_size, bit_pos_from_struct_start], ...]}
           (an incomplete declaration has "decl":1 and no "m")
   array   {"k":"array","t":elem_id,"len":count|null (null = flexible),"sz":N}
   enum    {"k":"enum","n":name|null,"sz":N,"s":signed 0/1,"e":[[name, value], ...]}
   typedef {"k":"typedef","n":name,"t":id|null}
   func    {"k":"func"}
  `null` as a type id means void. const/volatile/restrict/atomic are transparent.
  Pointer targets are not expanded (only described by "to"): the walker reads pointers
  as addresses and the renderer prints them as addresses.
"""
from __future__ import annotations

import json
import struct
import time

from vmdex.indexer.errors import KernelError
from vmdex.indexer.kernel import dwarf as D

# What the walker and renderer need. Extend freely: missing ones are simply absent.
# name -> anchor functions whose CU (via .debug_aranges) likely defines it.
WANTED_STRUCTS: dict[str, tuple[str, ...]] = {
    "task_struct": ("copy_process", "dup_mm"),
    "mm_struct": ("dup_mm", "copy_process", "mm_alloc"),
    "vm_area_struct": ("vm_area_alloc", "copy_process"),
    "signal_struct": ("copy_process",),
    "list_head": ("copy_process",),
    "hlist_head": ("copy_process",),
    "hlist_node": ("copy_process",),
    "mm_rss_stat": ("copy_process",),
    "task_rss_stat": ("copy_process",),
    "percpu_counter": ("copy_process", "__percpu_counter_sum", "percpu_counter_add_batch"),
    "maple_tree": ("mas_walk", "mtree_load", "copy_process"),
    "maple_node": ("mas_walk", "mtree_load"),
    "maple_range_64": ("mas_walk", "mtree_load"),
    "maple_arange_64": ("mas_walk", "mtree_load"),
    "maple_metadata": ("mas_walk", "mtree_load"),
    "pid": ("find_pid_ns", "alloc_pid"),
    "upid": ("find_pid_ns", "alloc_pid"),
    "pid_namespace": ("find_pid_ns", "alloc_pid"),
    "idr": ("find_pid_ns", "idr_alloc_u32"),
    "xarray": ("xa_load", "find_pid_ns"),
    "xa_node": ("xa_load", "radix_tree_lookup"),
    "radix_tree_root": ("radix_tree_lookup", "find_pid_ns"),
    "radix_tree_node": ("radix_tree_lookup",),
    "file": ("d_path", "fput", "copy_process"),
    "path": ("d_path", "copy_process"),
    "dentry": ("d_path", "dput"),
    "qstr": ("d_path", "dput"),
    "mount": ("d_path", "mntput"),
    "vfsmount": ("d_path", "mntput"),
    "swap_info_struct": ("get_swap_device", "swap_info_get", "si_swapinfo"),
    "rq": ("scheduler_tick", "sched_tick", "schedule"),
    "clocksource": ("clocksource_register_hz", "__clocksource_register_scale", "init_jiffies_clocksource"),
    "rlimit": ("do_prlimit", "copy_process"),
    "pglist_data": ("__alloc_pages", "__alloc_pages_noprof", "__alloc_pages_nodemask",
                    "get_page_from_freelist"),
}
# Structs the renderer prints whole; they (like every wanted struct) are expanded fully.
RENDER_STRUCTS = ("mm_struct", "vm_area_struct")
REQUIRED = ("task_struct", "mm_struct", "vm_area_struct", "list_head")
WANTED_TYPEDEFS: dict[str, tuple[str, ...]] = {
    "atomic_t": ("copy_process",), "atomic_long_t": ("copy_process",),
    "atomic64_t": ("copy_process",), "spinlock_t": ("copy_process",),
    "pgd_t": ("copy_process",), "pgprot_t": ("copy_process",),
    "vm_flags_t": ("copy_process",),
}
WANTED_ENUMS: dict[str, tuple[str, ...]] = {
    "pid_type": ("find_pid_ns", "copy_process"),
    "maple_type": ("mas_walk", "mtree_load"),
}
# Enumerators of possibly anonymous enums (their whole enum is kept).
WANTED_ENUMERATORS: dict[str, tuple[str, ...]] = {
    "MM_FILEPAGES": ("copy_process", "__percpu_counter_sum"),
    "PIDTYPE_PID": ("find_pid_ns",),
    "maple_leaf_64": ("mas_walk",),
}
WANTED_VARIABLES: dict[str, tuple[str, ...]] = {
    "swap_info": ("get_swap_device", "swap_info_get", "si_swapinfo"),
    "nr_swapfiles": ("get_swap_device", "swap_info_get", "si_swapinfo"),
    "__per_cpu_offset": ("setup_per_cpu_areas", "copy_process"),
    "runqueues": ("scheduler_tick", "sched_tick", "schedule"),
    "init_pid_ns": ("find_pid_ns", "alloc_pid"),
    "init_task": ("copy_process", "find_pid_ns"),
    "init_mm": ("copy_process", "mm_alloc"),
    "node_data": ("numa_set_node", "setup_node_to_cpumask_map", "__alloc_pages"),
    "page_offset_base": ("x86_64_start_kernel", "__startup_64", "copy_process"),
}

# What smaps needs (indexer.kernel.smaps_types), merged into the lists above.
# What sys needs (indexer.kernel.sys_types), likewise; and the loaded modules
# (indexer.kernel.module_types).
from vmdex.indexer.kernel import module_types as _mods  # noqa: E402
from vmdex.indexer.kernel import smaps_types as _smaps  # noqa: E402
from vmdex.indexer.kernel import sys_types as _sys  # noqa: E402

for _mine, _theirs in ((WANTED_STRUCTS, _smaps.STRUCTS), (WANTED_ENUMS, _smaps.ENUMS),
                       (WANTED_ENUMERATORS, _smaps.ENUMERATORS),
                       (WANTED_VARIABLES, _smaps.VARIABLES), (WANTED_TYPEDEFS, _smaps.TYPEDEFS),
                       (WANTED_STRUCTS, _sys.STRUCTS), (WANTED_VARIABLES, _sys.VARIABLES),
                       (WANTED_STRUCTS, _mods.STRUCTS)):
    for _n, _a in _theirs.items():
        _mine.setdefault(_n, _a)

# What this vmdex asks of DWARF, as a short digest kept with every cached kernel: a kernel
# row cached by an older vmdex (which asked for less) is read again when a vmlinux is at hand.
WANTED_FORMATS = _smaps.FORMATS
WANTED_DIGEST = __import__("hashlib").sha1(repr(sorted(
    (k, sorted(d)) for k, d in (("s", WANTED_STRUCTS), ("t", WANTED_TYPEDEFS),
                                ("e", WANTED_ENUMS), ("n", WANTED_ENUMERATORS),
                                ("v", WANTED_VARIABLES), ("f", WANTED_FORMATS)))).encode()
                        ).hexdigest()[:12]

_ENC = {1: "a", 2: "b", 4: "f", 5: "s", 6: "sc", 7: "u", 8: "uc", 0x10: "u"}
_CV = (D.TAG_const, D.TAG_volatile, D.TAG_restrict, D.TAG_atomic)
_WANT = (D.AT_name, D.AT_type, D.AT_byte_size, D.AT_declaration, D.AT_encoding)
_MWANT = (D.AT_name, D.AT_type, D.AT_data_member_location, D.AT_bit_size, D.AT_bit_offset,
          D.AT_data_bit_offset, D.AT_byte_size)


def _member_location(v):
    if isinstance(v, bytes):                     # DWARF 2 expression: DW_OP_plus_uconst
        if v and v[0] == 0x23:
            return D.uleb(v, 1)[0]
        return 0
    return v or 0


class _Builder:
    """Turns DIEs into graph nodes, deduplicating named types across CUs."""

    def __init__(self, dw: D.DwarfFile):
        self.dw = dw
        self.types: list[dict] = []
        self.by_die: dict[int, int | None] = {}
        self.by_key: dict[tuple, int] = {}
        self.named: dict[str, int] = {}

    def _new(self, node) -> int:
        self.types.append(node)
        return len(self.types) - 1

    def _cu(self, off):
        for cu in self.dw._cus.values():
            if cu.contains(off):
                return cu
        return D.find_cu_for(self.dw, off)

    def type_id(self, off, cu=None):
        """Graph id of the type DIE at absolute offset `off` (None = void)."""
        if off is None:
            return None
        if isinstance(off, tuple):               # ref_addr
            off = off[1]
        if off in self.by_die:
            return self.by_die[off]
        cu = cu if cu is not None and cu.contains(off) else self._cu(off)
        tag, a, has_children, _ = cu.die(off, _WANT)
        if tag in _CV:
            tid = self.type_id(a.get(D.AT_type), cu)
            self.by_die[off] = tid
            return tid
        if tag == D.TAG_unspecified:
            self.by_die[off] = None
            return None
        name = a.get(D.AT_name)
        if tag in (D.TAG_struct, D.TAG_union, D.TAG_enum) and name is not None:
            kind = {D.TAG_struct: "struct", D.TAG_union: "union", D.TAG_enum: "enum"}[tag]
            key = (kind, name, a.get(D.AT_byte_size))
            if not a.get(D.AT_declaration) and key in self.by_key:
                self.by_die[off] = self.by_key[key]
                return self.by_key[key]
        if tag == D.TAG_base:
            node = {"k": "base", "n": name, "sz": a.get(D.AT_byte_size, 0),
                    "enc": _ENC.get(a.get(D.AT_encoding), "u")}
            tid = self.by_die[off] = self._new(node)
            self.named.setdefault("base " + (name or "?"), tid)
            return tid
        if tag == D.TAG_pointer:
            node = {"k": "ptr", "sz": a.get(D.AT_byte_size, 8)}
            node.update(self._describe_target(a.get(D.AT_type), cu))
            tid = self.by_die[off] = self._new(node)
            return tid
        if tag == D.TAG_subroutine:
            tid = self.by_die[off] = self._func_id()
            return tid
        if tag == D.TAG_typedef:
            tid = self.by_die[off] = self._new({"k": "typedef", "n": name, "t": None})
            self.types[tid]["t"] = self.type_id(a.get(D.AT_type), cu)
            self.named.setdefault("typedef " + name, tid)
            return tid
        if tag == D.TAG_array:
            return self._array(off, a, cu)
        if tag in (D.TAG_struct, D.TAG_union):
            return self._struct(off, tag, a, cu, has_children)
        if tag == D.TAG_enum:
            return self._enum(off, a, cu)
        raise KernelError(f"unexpected DWARF type tag 0x{tag:x} at 0x{off:x}")

    def _func_id(self):
        if "func" not in self.named:
            self.named["func"] = self._new({"k": "func"})
        return self.named["func"]

    def _describe_target(self, off, cu):
        """What a pointer points at, without expanding it: name, function?, char?"""
        seen = 0
        while off is not None and seen < 16:
            if isinstance(off, tuple):
                off = off[1]
            c = cu if cu.contains(off) else self._cu(off)
            tag, a, _, _ = c.die(off, _WANT)
            if tag in _CV:
                off, seen = a.get(D.AT_type), seen + 1
                continue
            name = a.get(D.AT_name)
            if tag == D.TAG_subroutine:
                return {"to": "func", "fn": 1}
            if tag == D.TAG_base:
                d = {"to": name}
                if a.get(D.AT_byte_size) == 1 and a.get(D.AT_encoding) in (6, 8, 5, 7):
                    d["ch"] = 1
                return d
            if tag == D.TAG_typedef:
                # keep the typedef name but look through it for function/char targets
                inner = self._describe_target(a.get(D.AT_type), c)
                inner["to"] = name
                return inner
            if tag == D.TAG_pointer:
                return {"to": "ptr"}
            if tag in (D.TAG_struct, D.TAG_union, D.TAG_enum):
                kw = {D.TAG_struct: "struct", D.TAG_union: "union", D.TAG_enum: "enum"}[tag]
                return {"to": f"{kw} {name}" if name else kw}
            if tag == D.TAG_array:
                return {"to": "array"}
            return {"to": "void"}
        return {"to": "void"}

    def _array(self, off, a, cu):
        dims = []
        for _, tag, ca, _ in cu.children(off, (D.AT_count, D.AT_upper_bound, D.AT_lower_bound)):
            if tag != D.TAG_subrange:
                continue
            if D.AT_count in ca and isinstance(ca[D.AT_count], int):
                dims.append(ca[D.AT_count])
            elif D.AT_upper_bound in ca and isinstance(ca[D.AT_upper_bound], int):
                ub = ca[D.AT_upper_bound]
                if ub >= (1 << 31) and ub in (0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF):
                    ub = -1
                dims.append(ub + 1 - ca.get(D.AT_lower_bound, 0))
            else:
                dims.append(None)
        if not dims:
            dims = [None]
        tid = self.by_die[off] = self._new({"k": "array", "t": None, "len": dims[0], "sz": 0})
        elem = self.type_id(a.get(D.AT_type), cu)
        # multi-dimensional arrays become arrays of arrays, innermost last
        for n in reversed(dims[1:]):
            esz = self.size_of(elem)
            elem = self._new({"k": "array", "t": elem, "len": n, "sz": (n or 0) * esz})
        node = self.types[tid]
        node["t"] = elem
        node["sz"] = (dims[0] or 0) * self.size_of(elem)
        return tid

    def _struct(self, off, tag, a, cu, has_children):
        kind = "struct" if tag == D.TAG_struct else "union"
        name = a.get(D.AT_name)
        node = {"k": kind, "n": name, "sz": a.get(D.AT_byte_size, 0)}
        if a.get(D.AT_declaration):
            node["decl"] = 1
            tid = self.by_die[off] = self._new(node)
            return tid
        tid = self.by_die[off] = self._new(node)
        if name is not None:
            self.by_key[(kind, name, node["sz"])] = tid
            prev = self.named.get(f"{kind} {name}")
            if prev is None or self.types[prev].get("decl"):
                self.named[f"{kind} {name}"] = tid
        members = []
        if has_children:
            for _, ctag, m, _ in cu.children(off, _MWANT):
                if ctag != D.TAG_member:
                    continue
                mt = self.type_id(m.get(D.AT_type), cu)
                boff = _member_location(m.get(D.AT_data_member_location))
                entry = [m.get(D.AT_name), mt, boff]
                bs = m.get(D.AT_bit_size)
                if bs is not None:
                    if D.AT_data_bit_offset in m:
                        bitpos = m[D.AT_data_bit_offset]
                    else:                        # DWARF <= 4: counted from the MSB
                        storage = m.get(D.AT_byte_size) or self.size_of(mt)
                        bitpos = boff * 8 + storage * 8 - m.get(D.AT_bit_offset, 0) - bs
                    entry = [entry[0], mt, bitpos // 8, bs, bitpos]
                members.append(entry)
        node["m"] = members
        return tid

    def _enum(self, off, a, cu):
        name = a.get(D.AT_name)
        base = a.get(D.AT_type)
        signed = 0
        if base is not None:
            t = self.types[self.type_id(base, cu)]
            while t["k"] == "typedef" and t["t"] is not None:
                t = self.types[t["t"]]
            signed = 1 if t.get("enc") in ("s", "sc") else 0
        size = a.get(D.AT_byte_size, 4)
        vals = []
        for _, tag, ea, _ in cu.children(off, (D.AT_name, D.AT_const_value)):
            if tag == D.TAG_enumerator:
                vals.append([ea.get(D.AT_name), ea.get(D.AT_const_value)])
        if any(v is not None and v < 0 for _, v in vals):
            signed = 1
        if signed:                               # dataN forms are raw: sign-extend
            bits = 8 * size
            vals = [[n, v - (1 << bits) if v is not None and v >= 1 << (bits - 1) else v]
                    for n, v in vals]
        node = {"k": "enum", "n": name, "sz": size, "s": signed, "e": vals}
        tid = self.by_die[off] = self._new(node)
        if name is not None:
            self.by_key[("enum", name, size)] = tid
            self.named.setdefault("enum " + name, tid)
        return tid

    def size_of(self, tid):
        return node_size(self.types, tid)


def node_size(types: list[dict], tid) -> int:
    """Bytes an element of graph type `tid` takes in an array (void and functions: 1, as
    gdb counts them), typedefs looked through."""
    if tid is None:
        return 1
    t = types[tid]
    while t["k"] == "typedef":
        if t["t"] is None:
            return 1
        t = types[t["t"]]
    if t["k"] == "func":
        return 1
    return t.get("sz", 0)


class _Finder:
    """Locates wanted items in CUs picked by anchor functions."""

    def __init__(self, dw: D.DwarfFile, symbol_address):
        self.dw = dw
        self.symbol_address = symbol_address
        self.parsed: list[D.CompUnit] = []
        self.tried: set[int] = set()

    def cu_for_anchor(self, fn):
        a = self.symbol_address(fn)
        if a is None:
            return None
        off = self.dw.cu_offset_for_address(a)
        if off is None or off in self.tried:
            return None
        self.tried.add(off)
        cu = self.dw.cu(off)
        self.parsed.append(cu)
        return cu

    @staticmethod
    def lookup(cu, tag, name):
        """Offset of a complete top-level definition `tag name` in `cu`, or None."""
        for off in cu.top_level().get((tag, name), ()):
            _, a, _, _ = cu.die(off, (D.AT_declaration,))
            if not a.get(D.AT_declaration):
                return off
        return None


def _find_struct(cu, name):
    for tag in (D.TAG_struct, D.TAG_union):
        off = _Finder.lookup(cu, tag, name)
        if off is not None:
            return off
    return None


def _find_enum_with(cu, enumerator):
    top = cu.top_level()
    cands = list(top.get(("anon_enums", None), ()))
    cands += [o for (t, _), offs in top.items() if t == D.TAG_enum for o in offs]
    for off in cands:
        for _, tag, a, _ in cu.children(off, (D.AT_name,)):
            if tag == D.TAG_enumerator and a.get(D.AT_name) == enumerator:
                return off
    return None


def _find_variable(cu, name):
    """(type DIE offset, complete?) of variable `name` in `cu`, preferring a sized type."""
    best = None
    for off in cu.top_level().get((D.TAG_variable, name), ()):
        _, a, _, _ = cu.die(off, (D.AT_type,))
        t = a.get(D.AT_type)
        if t is None:
            continue
        if _is_unsized_array(cu, t):
            best = best or (t, False)
            # a definition elsewhere in the CU may carry the complete array type
            for off2 in cu.top_level().get(("spec", off), ()):
                _, a2, _, _ = cu.die(off2, (D.AT_type,))
                if a2.get(D.AT_type) is not None:
                    return a2[D.AT_type], True
            continue
        return t, True
    return best


def _is_unsized_array(cu, off):
    if isinstance(off, tuple) or not cu.contains(off):
        return False
    tag, _, _, _ = cu.die(off, ())
    if tag != D.TAG_array:
        return False
    for _, ctag, ca, _ in cu.children(off, (D.AT_count, D.AT_upper_bound)):
        if ctag == D.TAG_subrange:
            return D.AT_count not in ca and D.AT_upper_bound not in ca
    return True


def _extract(dw, symbol_address) -> "KernelTypes":
    t0 = time.perf_counter()
    f = _Finder(dw, symbol_address)
    b = _Builder(dw)
    enumerators: dict[str, int] = {}
    variables: dict[str, int | None] = {}
    found_struct: dict[str, int] = {}

    # every wanted item: (kind, name, anchors, search function, on-found)
    def want_struct(name):
        def hit(cu):
            off = _find_struct(cu, name)
            if off is not None:
                found_struct[name] = b.type_id(off, cu)
            return off is not None
        return hit

    def want_typedef(name):
        def hit(cu):
            off = _Finder.lookup(cu, D.TAG_typedef, name)
            if off is not None:
                b.type_id(off, cu)
            return off is not None
        return hit

    def take_enum(find):
        """A search for an enum (by `find(cu)`) that records all of its enumerators."""
        def hit(cu):
            off = find(cu)
            if off is not None:
                tid = b.type_id(off, cu)
                enumerators.update({n: v for n, v in b.types[tid]["e"]})
            return off is not None
        return hit

    def want_enum(name):
        return take_enum(lambda cu: _Finder.lookup(cu, D.TAG_enum, name))

    def want_enumerator(name):
        return take_enum(lambda cu: _find_enum_with(cu, name))

    def want_variable(name):
        def hit(cu):
            r = _find_variable(cu, name)
            if r is None:
                return False
            toff, complete = r
            variables[name] = b.type_id(toff, cu)
            return complete
        return hit

    items = []
    items += [(n, a, want_struct(n)) for n, a in WANTED_STRUCTS.items()]
    items += [(n, a, want_typedef(n)) for n, a in WANTED_TYPEDEFS.items()]
    items += [(n, a, want_enum(n)) for n, a in WANTED_ENUMS.items()]
    items += [(n, a, want_enumerator(n)) for n, a in WANTED_ENUMERATORS.items()]
    items += [(n, a, want_variable(n)) for n, a in WANTED_VARIABLES.items()]
    pending = list(items)

    def sweep(cu):
        nonlocal pending
        pending = [it for it in pending if not it[2](cu)]

    for name, anchors, _ in items:
        if not any(p[0] == name for p in pending):
            continue
        for fn in anchors:
            cu = f.cu_for_anchor(fn)
            if cu is not None:
                sweep(cu)
            if not any(p[0] == name for p in pending):
                break
    # required layouts must exist: scan further CUs (slow path, unusual kernels only)
    missing = [n for n in REQUIRED if n not in found_struct]
    if missing:
        for off in dw.all_cu_offsets():
            if off in f.tried:
                continue
            f.tried.add(off)
            cu = dw.cu(off)
            sweep(cu)
            dw._cus.pop(off, None)               # do not keep every CU in memory
            if all(n in found_struct for n in REQUIRED):
                break
        missing = [n for n in REQUIRED if n not in found_struct]
        if missing:
            raise KernelError(f"no debug info for struct {missing[0]}: {dw.elf.path}")
    kt = KernelTypes({"v": 1, "types": b.types, "named": b.named,
                      "enumerators": enumerators, "variables": variables,
                      "wanted": WANTED_DIGEST})
    kt.extract_seconds = time.perf_counter() - t0
    kt.cus_parsed = [cu.name for cu in f.parsed]
    return kt


def load_kernel_types(vmlinux_path):
    """(KernelTypes, Symtab) of one vmlinux; KernelError on anything unusable."""
    from vmdex.indexer.kernel.symtab import ElfImage, Symtab
    elf = ElfImage(vmlinux_path)
    try:
        dw = D.DwarfFile(elf)
        symtab = Symtab._from_elf(elf)
        kt = _extract(dw, symtab.address)
        kt.data["formats"] = rodata_formats(elf)
        return kt, symtab
    except (IndexError, KeyError, ValueError, OverflowError, RecursionError,
            struct.error) as e:  # corrupt DWARF: one line, no traceback
        raise KernelError(f"unreadable debug info in {vmlinux_path}: {e!r}") from None
    finally:
        elf.close()


def rodata_formats(elf) -> dict[str, str]:
    """{name: the whole format string} of WANTED_FORMATS found in the vmlinux's .rodata."""
    return find_formats(elf.section(".rodata") or b"")


def find_formats(rodata: bytes) -> dict[str, str]:
    """{name: the whole format string} of WANTED_FORMATS found in `rodata` (the section's
    bytes, from the vmlinux or from the dump's memory)."""
    out = {}
    for name, start in WANTED_FORMATS.items():
        at = rodata.find(start)
        if at >= 0:
            end = rodata.find(b"\0", at)
            out[name] = rodata[at:end if end >= 0 else at + 64].decode("latin-1")
    return out


class KernelTypes:
    """Queries over the type graph; built by `extract`, or `from_json` at query time."""

    def __init__(self, data: dict):
        self.data = data
        self.types = data["types"]
        self.named = data["named"]
        self.enumerators = data.get("enumerators", {})
        self.variables = data.get("variables", {})
        self._paths: dict = {}

    def format(self, name: str) -> str | None:
        """A printf format of the kernel's (WANTED_FORMATS), None when not read."""
        return self.data.get("formats", {}).get(name)

    @property
    def complete(self) -> bool:
        """Whether it holds everything this vmdex asks of DWARF (see WANTED_DIGEST)."""
        return self.data.get("wanted") == WANTED_DIGEST

    # ---- serialisation ---------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(self.data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text) -> "KernelTypes":
        return cls(json.loads(text) if isinstance(text, (str, bytes)) else text)

    # ---- helpers ---------------------------------------------------------------------
    def strip(self, tid):
        """Follow typedefs to the real type id."""
        while tid is not None and self.types[tid]["k"] == "typedef":
            tid = self.types[tid]["t"]
        return tid

    def struct_id(self, name):
        for kw in ("struct ", "union "):
            tid = self.named.get(kw + name)
            if tid is not None and not self.types[tid].get("decl"):
                return tid
        tid = self.named.get("typedef " + name)
        tid = self.strip(tid)
        if tid is not None and self.types[tid]["k"] in ("struct", "union"):
            return tid
        return None

    def _size(self, tid):
        tid = self.strip(tid)
        if tid is None:
            return None
        return self.types[tid].get("sz")

    def _find_member(self, sid, name):
        """(offset, member entry) of `name` in struct `sid`, searching anonymous members
        in declaration order like gdb does."""
        for m in self.types[sid].get("m", ()):
            if m[0] == name:
                return m[2], m
            if m[0] is None:
                inner = self.strip(m[1])
                if inner is not None and self.types[inner]["k"] in ("struct", "union"):
                    r = self._find_member(inner, name)
                    if r is not None:
                        return m[2] + r[0], r[1]
        return None

    def _resolve(self, struct, path):
        key = (struct, path)
        if key in self._paths:
            return self._paths[key]
        res = None
        sid = self.struct_id(struct)
        if sid is not None:
            off, m = 0, None
            cur = sid
            for part in path.split("."):
                if cur is None or self.types[cur]["k"] not in ("struct", "union"):
                    m = None
                    break
                r = self._find_member(cur, part)
                if r is None:
                    m = None
                    break
                off += r[0]
                m = r[1]
                cur = self.strip(m[1])
            if m is not None:
                res = (off, m)
        self._paths[key] = res
        return res

    # ---- the API ---------------------------------------------------------------------
    def has_struct(self, name) -> bool:
        return self.struct_id(name) is not None

    def sizeof(self, name) -> int | None:
        sid = self.struct_id(name)
        if sid is None:
            tid = self.named.get("typedef " + name) or self.named.get("base " + name)
            return self._size(tid) if tid is not None else None
        return self.types[sid]["sz"]

    def offsetof(self, struct, path) -> int | None:
        r = self._resolve(struct, path)
        return None if r is None else r[0]

    def has_member(self, struct, path) -> bool:
        return self._resolve(struct, path) is not None

    def member_size(self, struct, path) -> int | None:
        r = self._resolve(struct, path)
        if r is None:
            return None
        m = r[1]
        return self._size(m[1]) if m[1] is not None else None

    def member_type(self, struct, path) -> dict | None:
        r = self._resolve(struct, path)
        if r is None:
            return None
        d = self.describe(r[1][1])
        if len(r[1]) > 3:
            d["bit_size"], d["bit_pos"] = r[1][3], r[1][4]
        return d

    def array_length(self, struct, path) -> int | None:
        r = self._resolve(struct, path)
        if r is None:
            return None
        tid = self.strip(r[1][1])
        if tid is None or self.types[tid]["k"] != "array":
            return None
        return self.types[tid]["len"]

    def describe(self, tid) -> dict:
        """Small descriptor: kind, name, size, (array) length/elem, (ptr) target,
        typedef name if one was looked through."""
        td = None
        if tid is not None and self.types[tid]["k"] == "typedef":
            td = self.types[tid]["n"]
        rid = self.strip(tid)
        if rid is None:
            return {"kind": "void", "name": "void", "size": None, "typedef": td}
        t = self.types[rid]
        k = t["k"]
        d = {"kind": k, "name": t.get("n"), "size": t.get("sz"), "typedef": td, "id": rid}
        if k == "array":
            d["length"] = t["len"]
            d["elem"] = self.describe(t["t"])
        elif k == "ptr":
            d["target"] = t.get("to")
            d["function"] = bool(t.get("fn"))
        elif k == "base":
            d["signed"] = t["enc"] in ("s", "sc")
        elif k == "func":
            d["size"] = None
        return d

    def enum_value(self, name) -> int | None:
        return self.enumerators.get(name)

    def variable_type(self, symbol) -> dict | None:
        if symbol not in self.variables:
            return None
        return self.describe(self.variables[symbol])

    def flexible_char_array_offset(self, struct) -> int | None:
        """Offset of a trailing `char name[]` member (mm_struct's flexible_array on newer
        kernels): gdb prints it as a char pointer, i.e. the string found past the struct."""
        sid = self.struct_id(struct)
        members = self.types[sid].get("m") if sid is not None else None
        if not members:
            return None
        last = members[-1]
        tid = self.strip(last[1])
        if tid is None or self.types[tid]["k"] != "array" or self.types[tid].get("len"):
            return None
        eid = self.strip(self.types[tid]["t"])
        if eid is None:
            return None
        e = self.types[eid]
        if e["k"] == "base" and e.get("sz") == 1 and e.get("enc") != "b":
            return last[2]
        return None

    def variable_array_length(self, symbol) -> int | None:
        tid = self.strip(self.variables.get(symbol))
        if tid is None or self.types[tid]["k"] != "array":
            return None
        return self.types[tid]["len"]

    def render_subset(self, struct_names=RENDER_STRUCTS) -> dict:
        """The same JSON shape restricted to what rendering `struct_names` touches."""
        keep, order = {}, []

        def visit(tid):
            if tid is None or tid in keep:
                return
            keep[tid] = len(order)
            order.append(tid)
            t = self.types[tid]
            for m in t.get("m", ()):
                visit(m[1])
            if t["k"] in ("array", "typedef"):
                visit(t["t"])

        for n in struct_names:
            visit(self.struct_id(n))
        types = []
        for tid in order:
            t = dict(self.types[tid])
            if "m" in t:
                t["m"] = [[m[0], keep.get(m[1]) if m[1] is not None else None, *m[2:]]
                          for m in t["m"]]
            if t["k"] in ("array", "typedef") and t["t"] is not None:
                t["t"] = keep[t["t"]]
            types.append(t)
        named = {}
        for n in struct_names:
            sid = self.struct_id(n)
            if sid is not None:
                named[f"{self.types[sid]['k']} {n}"] = keep[sid]
        return {"v": 1, "types": types, "named": named}
