"""The loaded modules' symbols, named and looked up as crash 9.0.2 does without module
debuginfo (symbols.c: store_module_symbols_v2 / store_module_symbols_6_4,
store_module_kallsyms_v2, value_search_module / value_search_module_6_4; kernel.c
module_init).

crash prints a pointer into a module through gdb, whose own lookup knows only the vmlinux;
gdb then asks crash (gdb_lookup_module_symbol), which answers from one table of every
module's symbols, sorted by value:

  * per module, pseudo symbols marking its memory: `_MODULE_START_name` /
    `_MODULE_END_name` (+ `_MODULE_INIT_..._name`) at the core_layout / init_layout bounds,
    or, when struct module has `mem[]`, `_MODULE_<TYPE>_START_name` at each non-empty
    region's base and `..._END_name` at its last byte;
  * the exported symbols (`syms`, `gpl_syms`: struct kernel_symbol arrays);
  * the module's kallsyms (`core_kallsyms`, Elf64_Sym entries from 1 on) whose value and
    name lie in the module's memory, defined (st_shndx != SHN_UNDEF), named, with
    `.isra.`/`.part.`/`.llvm.` cut off, not already there as an exported symbol.

Which layout is used is decided by the members struct module has, as crash does. Every
count and size read from the dump is bounded by the module's own memory; a module list or
symbol table that does not add up is a ModuleError (the ingest records one line and
answers with the vmlinux's symbols only).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from vmdex.indexer.errors import MemoryReadError, WalkError
from vmdex.indexer.walk.kernel import Kernel

U64 = (1 << 64) - 1
MAX_MODULES = 1 << 14          # far beyond any real system; a longer list is a loop
MAX_NAME = 1500                # crash's BUFSIZE: the longest symbol name it keeps
MAX_READ = 64 << 20            # the most read at once for one module table (untrusted sizes)
SHN_UNDEF = 0
# enum mod_mem_type as crash emulates it (defs.h MOD_TEXT..MOD_INIT_RODATA)
MEM_TAGS = ("TEXT", "DATA", "RODATA", "RO_AFTER_INIT", "INIT_TEXT", "INIT_DATA",
            "INIT_RODATA")
MOD_DATA, MOD_INIT_TEXT = 1, 4
STRIP = (".isra.", ".part.", ".llvm.")


class ModuleError(Exception):
    """The module list or a module's symbols cannot be read as the kernel laid them out."""


class CrashReadsNoModules(ModuleError):
    """A kernel whose modules crash 9.0.2 itself cannot read (it starts only with
    --no_modules there): no module symbols, and nothing wrong with the dump."""


@dataclass
class Module:
    """One loaded module: its name and memory regions [(base, size)] — the 7 `mem[]`
    regions, or [core, init] of the older layouts."""
    name: str
    regions: list[tuple[int, int]]
    mem: bool                                  # regions are mem[] (crash's MODULE_MEMORY())
    symbols: list[tuple[int, str]] = field(default_factory=list)   # crash's insertion order

    def _in(self, value: int, first: int, last: int) -> bool:
        return any(size and base <= value < base + size
                   for base, size in self.regions[first:last + 1])

    def in_core(self, value: int) -> bool:
        """crash's IN_MODULE."""
        return self._in(value, 0, MOD_INIT_TEXT - 1 if self.mem else 0)

    def in_init(self, value: int) -> bool:
        """crash's IN_MODULE_INIT."""
        return self._in(value, MOD_INIT_TEXT, 6) if self.mem else self._in(value, 1, 1)

    def region_end(self, value: int) -> int:
        """End of the region holding `value` (0 if none): the bound of any array there."""
        for base, size in self.regions:
            if size and base <= value < base + size:
                return base + size
        return 0

    @property
    def base(self) -> int:
        return self.regions[0][0]


# --- reading the dump ---------------------------------------------------------------------

def module_addresses(k: Kernel) -> list[int]:
    """struct module addresses on the `modules` list, in list order (kernel.c module_init)."""
    head = k.sym("modules")
    if head is None or not k.has("module", "list"):
        return []
    lo = k.off("module", "list")
    out, seen = [], set()
    nxt = k.ptr(head)
    while nxt != head:
        if nxt in seen or len(out) >= MAX_MODULES:
            raise ModuleError(f"the modules list does not return to its head after "
                              f"{len(out)} modules")
        seen.add(nxt)
        out.append((nxt - lo) & U64)
        nxt = k.ptr(nxt)
    return out


def module_regions(k: Kernel, view) -> tuple[list[tuple[int, int]], bool]:
    """The module's memory: `mem[]` (one module_memory per mod_mem_type), else
    core_layout/init_layout (module_layout), else module_core/core_size."""
    if view.has("mem"):
        n = k.types.array_length("module", "mem")
        if n != len(MEM_TAGS):
            raise ModuleError(f"struct module has {n} mem[] regions, not the "
                              f"{len(MEM_TAGS)} crash knows")
        step = k.sizeof("module_memory")
        base, size = k.off("module_memory", "base"), k.off("module_memory", "size")
        bsz = k.member_size("module_memory", "size")
        at = k.off("module", "mem")
        raw = view.raw
        return [(int.from_bytes(raw[at + i * step + base:at + i * step + base + 8], "little"),
                 int.from_bytes(raw[at + i * step + size:at + i * step + size + bsz], "little"))
                for i in range(n)], True
    if view.has("core_layout"):
        return [(view.ptr("core_layout.base"), view.u("core_layout.size")),
                (view.ptr("init_layout.base"), view.u("init_layout.size"))], False
    if view.has("module_core"):
        return [(view.ptr("module_core"), view.u("core_size")),
                (view.ptr("module_init"), view.u("init_size"))], False
    raise ModuleError("struct module has neither mem[], core_layout nor module_core")


def pseudo_symbols(mod: Module, end: bool) -> list[tuple[int, str]]:
    """crash's region markers for one module (start ones, or with `end` the end ones)."""
    if mod.mem:
        which = "END" if end else "START"
        return [(base + size - 1 if end else base, f"_MODULE_{tag}_{which}_{mod.name}")
                for tag, (base, size) in zip(MEM_TAGS, mod.regions) if size]
    (core, csize), (init, isize) = mod.regions
    out = [(core + csize if end else core, f"_MODULE_{'END' if end else 'START'}_{mod.name}")]
    if isize:
        out.append((init + isize if end else init,
                    f"_MODULE_INIT_{'END' if end else 'START'}_{mod.name}"))
    return out


def _name(k: Kernel, mod: Module, addr: int) -> str:
    """A NUL-terminated name inside the module's memory (bounded by its region)."""
    end = mod.region_end(addr)
    if not end:
        raise ModuleError(f"module {mod.name}: a symbol name at {addr:x} lies outside it")
    raw = k.mem.read(addr, min(MAX_NAME, end - addr))
    z = raw.find(b"\0")
    if z < 0:
        raise ModuleError(f"module {mod.name}: symbol name at {addr:x} is not terminated")
    return raw[:z].decode("latin-1")


def _array(k: Kernel, mod: Module, addr: int, count: int, size: int, what: str) -> bytes:
    """`count` entries of `size` bytes at `addr`, which must lie in one module region."""
    if not count:
        return b""
    end = mod.region_end(addr)
    if not end or count * size > min(end - addr, MAX_READ):
        raise ModuleError(f"module {mod.name}: {what} ({count} entries at {addr:x}) runs "
                          "outside the module's memory")
    return k.mem.read(addr, count * size)


class _Strings:
    """A module's string table, read once from its start to the end of its region (at
    most MAX_READ): names are sliced from it, the rare one elsewhere read on its own."""

    def __init__(self, k: Kernel, mod: Module, start: int):
        self.k, self.mod, self.start = k, mod, start
        self.raw = k.mem.read(start, min(mod.region_end(start) - start, MAX_READ))

    def name(self, addr: int) -> str:
        rel = addr - self.start
        if not 0 <= rel < len(self.raw):
            return _name(self.k, self.mod, addr)
        z = self.raw.find(b"\0", rel, rel + MAX_NAME)
        if z < 0:
            raise ModuleError(f"module {self.mod.name}: symbol name at {addr:x} is not "
                              "terminated")
        return self.raw[rel:z].decode("latin-1")


def exported_symbols(k: Kernel, view, mod: Module) -> list[tuple[int, str]]:
    """`syms` then `gpl_syms`: struct kernel_symbol with absolute pointers (value, name) or
    place-relative ints (value_offset, name_offset), as the kernel's layout says."""
    if not (view.has("gpl_syms") and view.has("num_gpl_syms")):
        # crash 9.0.2's module_init reads module.num_gpl_syms (and store_module_symbols_*
        # gpl_syms) unconditionally (kernel.c, symbols.c) and dies without them (7.x): crash
        # runs only with --no_modules there, so it prints no module symbols
        raise CrashReadsNoModules("struct module has no gpl_syms/num_gpl_syms")
    st = "kernel_symbol"
    rel = k.has(st, "value_offset")
    vf, nf = ("value_offset", "name_offset") if rel else ("value", "name")
    if not k.has(st, vf) or not k.has(st, nf):
        raise ModuleError("kernel has no struct kernel_symbol layout (value, name)")
    size = k.sizeof(st)
    vo, no = k.off(st, vf), k.off(st, nf)
    vs, ns = k.member_size(st, vf), k.member_size(st, nf)
    out = []
    arrays = [("syms", "num_syms"), ("gpl_syms", "num_gpl_syms")]
    for arr, cnt in arrays:
        syms, n = view.ptr(arr), view.u(cnt)
        if arr == "syms" and n and not mod.in_core(syms):
            continue        # crash: "module.syms outside of module address space"
        raw = _array(k, mod, syms, n, size, f"module.{arr}")
        for i in range(n):
            e = raw[i * size:(i + 1) * size]
            v = int.from_bytes(e[vo:vo + vs], "little", signed=rel)
            a = int.from_bytes(e[no:no + ns], "little", signed=rel)
            if rel:
                v = (syms + i * size + vo + v) & U64
                a = (syms + i * size + no + a) & U64
            name = _name(k, mod, a)
            if name:
                out.append((v, strip_symbol_end(strip_module_symbol_end(name))))
    return out


def kallsyms_symbols(k: Kernel, view, mod: Module, exported, arm64: bool
                     ) -> list[tuple[int, str]]:
    """The module's core kallsyms (`core_kallsyms`, or the older `symtab` members)."""
    pre = "core_kallsyms." if view.has("core_kallsyms") else ""
    if not view.has(pre + "num_symtab"):
        return []
    nk, symtab, strtab = (view.u(pre + "num_symtab"), view.ptr(pre + "symtab"),
                          view.ptr(pre + "strtab"))
    if not (mod.in_core(symtab) or mod.in_init(symtab)) or \
            not (mod.in_core(strtab) or mod.in_init(strtab)):
        return []           # crash: "module.symtab/strtab outside of module address space"
    es = "elf64_sym"
    if k.sizeof(es) is None:
        raise ModuleError("kernel has no Elf64_Sym layout")
    size = k.sizeof(es)
    fields = {f: (k.off(es, f), k.member_size(es, f))
              for f in ("st_name", "st_info", "st_shndx", "st_value")}
    raw = _array(k, mod, symtab, nk, size, "kallsyms symtab")
    strings = _Strings(k, mod, strtab)
    seen = set(exported)
    out = []
    for i in range(1, nk):
        e = raw[i * size:(i + 1) * size]
        name_off, info, shndx, value = (int.from_bytes(e[o:o + n], "little")
                                        for o, n in fields.values())
        if not (mod.in_core(value) or mod.in_init(value)) or shndx == SHN_UNDEF:
            continue
        at = (strtab + name_off) & U64
        if not (mod.in_core(at) or mod.in_init(at)):
            continue
        name = strings.name(at)
        if not name or (arm64 and _arm64_mapping_symbol(name, value, info)):
            continue
        name = strip_symbol_end(name)
        if (value, name) in seen:
            continue
        out.append((value, name))
    return out


def read_module(k: Kernel, addr: int, arm64: bool) -> Module:
    """One struct module and its symbols in crash's insertion order."""
    view = k.view("module", addr)
    raw = view.raw[k.off("module", "name"):][:k.member_size("module", "name")]
    name = raw.split(b"\0", 1)[0].decode("latin-1")
    regions, mem = module_regions(k, view)
    mod = Module(name, regions, mem)
    core = sum(s for _, s in regions[:MOD_INIT_TEXT if mem else 1])
    if not core:
        raise ModuleError(f"module {name or hex(addr)}: size 0")   # crash gives up there
    exported = exported_symbols(k, view, mod)
    mod.symbols = (pseudo_symbols(mod, False) + exported
                   + kallsyms_symbols(k, view, mod, exported, arm64)
                   + pseudo_symbols(mod, True))
    return mod


def read_modules(k: Kernel, errors: list[str]) -> "ModuleSymbols | None":
    """Every loaded module's symbols, or None (one line in `errors`) when the list or a
    module cannot be read as laid out: the answers then know the vmlinux's symbols only,
    as they do (without a line) where crash 9.0.2 reads no modules either."""
    arm64 = getattr(k.mem.arch, "name", "") == "arm64"
    try:
        mods = [read_module(k, a, arm64) for a in module_addresses(k)]
    except CrashReadsNoModules:
        return None
    except (ModuleError, MemoryReadError, WalkError, ValueError, OverflowError) as exc:
        errors.append(f"loaded modules: {exc}: module symbols are not known "
                      "(pointers into modules print without <symbol>)")
        return None
    return ModuleSymbols(mods) if mods else None


# --- crash's naming rules -------------------------------------------------------------------

def strip_symbol_end(name: str) -> str:
    """crash's strip_symbol_end: cut at the first of `.isra.`, `.part.`, `.llvm.` found."""
    for s in STRIP:
        p = name.find(s)
        if p >= 0:
            return name[:p]
    return name


def strip_module_symbol_end(name: str) -> str:
    """crash's strip_module_symbol_end: an exported name ending in `_R<hex>` (modversions
    of old) or holding `_Rsmp_` at its last `R` is cut before the `_R`."""
    r = name.rfind("R")
    if r < 1 or name[r - 1] != "_":
        return name
    if name.startswith("_Rsmp_", r - 1):
        return name[:r - 1]
    tail = name[r + 1:]
    if tail and all(c in "0123456789abcdefABCDEFxX" for c in tail) and \
            any(c not in "xX" for c in tail):
        return name[:r - 1]
    return name


def _arm64_mapping_symbol(name: str, value: int, info: int) -> bool:
    """arm64_verify_symbol's refusals, with st_info as crash reads it (a printable byte
    as is, 0x02 't', 0x12 'T', else '?')."""
    t = chr(info) if 0x20 <= info < 0x7F else {2: "t", 0x12: "T"}.get(info, "?")
    if t in "Aa" and value >> 63 != 1:
        return True
    if value == 0 and t in "anNU":
        return True
    if name in ("$d", "$x", "$c") or name.startswith(("$d.", "$x.", "$c.")):
        return True
    return (t == "A" and name.startswith("__crc_")) or (t == "N" and "$d" in name)


# --- the lookup ---------------------------------------------------------------------------

def _pseudo(name: str) -> bool:
    return name.startswith("_MODULE_")


class ModuleSymbols:
    """crash's module symbol table: every module's symbols sorted by value (ties: the
    `_MODULE_START_` / `_MODULE_TEXT_START_` markers first, else as stored), and the
    lookup gdb falls back to for an address outside the vmlinux."""

    def __init__(self, mods: list[Module]):
        entries = [s for m in mods for s in m.symbols]
        order = sorted(range(len(entries)), key=lambda i: (
            entries[i][0],
            0 if entries[i][1].startswith("__insmod") else
            1 if entries[i][1].startswith(("_MODULE_TEXT_START_", "_MODULE_START_")) else 2,
            i))
        self.values = [entries[i][0] for i in order]
        self.names = [entries[i][1] for i in order]
        self.mods = sorted(mods, key=lambda m: m.base)     # compare_mods
        first: dict[str, int] = {}
        last: dict[str, int] = {}
        for i, n in enumerate(self.names):
            if _pseudo(n):
                first.setdefault(n, i)
                last[n] = i
        self.ranges = [self._ranges(m, first, last) for m in self.mods]

    def _ranges(self, m: Module, first, last) -> list[tuple[int, int] | None]:
        """Per module, the (start, end) indexes crash walks between: per mem[] type (first
        START, then the first END after it), or core and init (the last match of each)."""
        if m.mem:
            out = []
            for tag in MEM_TAGS:
                s = first.get(f"_MODULE_{tag}_START_{m.name}")
                e = None
                if s is not None:
                    e = next((i for i in range(s, len(self.names))
                              if self.names[i] == f"_MODULE_{tag}_END_{m.name}"), None)
                out.append((s, e) if s is not None and e is not None else None)
            return out
        pair = [(last.get(f"_MODULE_{a}START_{m.name}"), last.get(f"_MODULE_{a}END_{m.name}"))
                for a in ("", "INIT_")]
        return [p if None not in p else None for p in pair]

    def _walk(self, value: int, sp: int, sp_end: int, ends: tuple[str, ...]):
        """crash's scan of one range: (index, offset) or None to go on."""
        V, N = self.values, self.names
        splast = None
        i = sp
        while i <= sp_end:
            if V[i] == value:
                if N[i].startswith(ends):
                    return None
                if _pseudo(N[i]) and i + 1 < len(N):
                    if _pseudo(N[i + 1]):
                        i += 1
                        continue
                    if V[i + 1] == value:
                        i += 1
                if N[i][:1] == "." and i + 1 < len(N) and V[i + 1] == value:
                    i += 1
                return i, 0
            if V[i] > value:
                j = splast if splast is not None else i - 1
                return j, value - V[j]
            if not _pseudo(N[i]):
                splast = i
            i += 1
        return None

    def lookup(self, value: int) -> tuple[str, int] | None:
        """(name, offset) crash's value_search_module[_6_4] gives, or None."""
        if self.mods and self.mods[0].mem:
            for m, rng in zip(self.mods, self.ranges):
                if not (m.in_core(value) or m.in_init(value)):
                    continue
                for tag, r in zip(MEM_TAGS, rng):
                    if r is None or not self.values[r[0]] <= value <= self.values[r[1]]:
                        continue
                    hit = self._walk(value, r[0], r[1], (f"_MODULE_{tag}_END_",))
                    if hit:
                        return self.names[hit[0]], hit[1]
            return None
        passes = (0, 1) if any(r[1] for r in self.ranges) else (0,)
        for p in passes:
            for rng in self.ranges:
                r = rng[p]
                if r is None:
                    continue
                if self.values[r[0]] > value:
                    break                           # between modules
                if self.values[r[1]] < value:
                    continue
                hit = self._walk(value, r[0], r[1], ("_MODULE_END_", "_MODULE_INIT_END_"))
                if hit:
                    return self.names[hit[0]], hit[1]
        return None

    def symbolize(self, value: int) -> str | None:
        """What gdb prints inside `<...>` for a module address (`name` or `name+off`,
        the offset as the C int gdb keeps it in)."""
        r = self.lookup(value)
        if r is None:
            return None
        name, off = r
        off = (off + (1 << 31)) % (1 << 32) - (1 << 31)
        return name if off == 0 else f"{name}+{off}"
