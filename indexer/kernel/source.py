"""Where a dump's kernel facts come from: the same KernelTypes graph and Symtab either way.

  * `VmlinuxSource`: the debug vmlinux (DWARF types, ELF .symtab, .rodata, build-id note);
  * `DumpSource`: the dump itself (BTF types and kallsyms symbols in kernel memory,
    .rodata and the build-id note read from memory), for when no vmlinux is anywhere.

Both answer `build_id()` and `load()` -> (KernelTypes, Symtab); `kind` is what the index
records for the kernel row ("vmlinux" or "dump"), so a later ingest with a vmlinux
replaces a row read from a dump.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
import sys
from pathlib import Path

from vmdex.indexer.errors import KernelError, MemoryReadError, VmdexError

VMLINUX, DUMP = "vmlinux", "dump"

# Array lengths of global variables are not in BTF (only per-CPU VARs are). Each wanted
# array names its element (a BTF type name, or "*" for a pointer) and whether trailing
# all-zero elements of its slot are padding (true only where a real element is never all
# zero: a taint flag's letters are never NUL).
VARIABLE_ARRAYS: dict[str, tuple[str, bool]] = {
    "__per_cpu_offset": ("base long unsigned int", False),
    "node_data": ("*", False),
    "swap_info": ("*", False),
    "taint_flags": ("struct taint_flag", True),
}


class VmlinuxSource:
    kind = VMLINUX

    def __init__(self, path: Path):
        self.path = Path(path)
        self.label = str(path)

    def build_id(self) -> str | None:
        from vmdex.indexer.kernel.symtab import build_id
        return build_id(self.path)

    def load(self):
        from vmdex.indexer.kernel.types import load_kernel_types
        return load_kernel_types(self.path)


class DumpSource:
    """The kernel's own BTF and kallsyms, read from the dump's memory (no vmlinux)."""

    kind = DUMP

    def __init__(self, phys, info):
        from vmdex.indexer.arch import detect
        from vmdex.indexer.arch.memory import KernelMemory

        self.phys, self.info = phys, info
        self.label = f"{phys.path} (its BTF and kallsyms)"
        self.release = info.osrelease or "?"
        arch = detect(phys, info)
        stext = info.symbol("_stext")
        if stext is None:
            raise self.refuse("VMCOREINFO does not give _stext")
        arch.bootstrap_image(stext)
        self.arch = arch
        self.mem = KernelMemory(phys, arch)
        self._ks = None

    def refuse(self, why: str) -> KernelError:
        return KernelError(f"{self.phys.path}: kernel {self.release}: {why}: a vmlinux is "
                           "needed (give --vmlinux, or set VMDEX_DEBUG_DIRS or "
                           "DEBUGINFOD_URLS)")

    def read(self, va: int, size: int) -> bytes:
        return self.mem.read(va, size)

    @property
    def kallsyms(self):
        if self._ks is None:
            from vmdex.indexer.kernel import kallsyms as K
            try:
                ks = K.from_vmcoreinfo(self.read, self.info)
                if ks is None:
                    ks = K.scan(self.read, self.info, self.arch.page_size)
            except KernelError as exc:
                raise self.refuse(str(exc)) from None
            if ks is None:
                raise self.refuse("its symbol table (kallsyms) is neither in VMCOREINFO "
                                  "(Linux 6.0+) nor found in the kernel image")
            if not ks.has_data_symbols():
                raise self.refuse("built without CONFIG_KALLSYMS_ALL: its symbol table "
                                  "lists functions only")
            self._ks = ks
        return self._ks

    def _span(self, start: str, stop: str, limit: int) -> tuple[int, int] | None:
        a, b = self.kallsyms.address(start), self.kallsyms.address(stop)
        if a is None or b is None or not 0 < b - a <= limit:
            return None
        return a, b

    def build_id(self) -> str | None:
        """The GNU build-id note in memory (__start_notes..__stop_notes); VMCOREINFO's
        BUILD-ID when the notes cannot be read. Where the two differ the note wins
        (some stable kernels wrote a bad BUILD-ID), said in one line."""
        from vmdex.indexer.kernel.symtab import _note_build_id
        note = None
        span = self._span("__start_notes", "__stop_notes", 1 << 16)
        if span:
            try:
                note = _note_build_id(self.read(span[0], span[1] - span[0]))
            except VmdexError:
                note = None
        vmci = (self.info.build_id or "").strip().lower() or None
        if note and vmci and not note.startswith(vmci):
            print(f"vmdex: {self.phys.path}: VMCOREINFO BUILD-ID {vmci} differs from the "
                  f"kernel's build-id note {note}: using the note", file=sys.stderr)
        return note or vmci

    def load(self):
        from vmdex.indexer.kernel import btf as B
        from vmdex.indexer.kernel import types as T

        ks = self.kallsyms
        span = self._span("__start_BTF", "__stop_BTF", 256 << 20)
        if span is None:
            raise self.refuse("built without CONFIG_DEBUG_INFO_BTF (no __start_BTF)")
        try:
            btf = B.Btf(self.read(span[0], span[1] - span[0]))
        except MemoryReadError as exc:
            raise self.refuse(f"its BTF cannot be read from the dump ({exc})") from None
        except KernelError as exc:
            raise self.refuse(f"unreadable BTF ({exc})") from None
        g, enumerators = B.extract(btf, T.WANTED_STRUCTS, T.WANTED_TYPEDEFS, T.WANTED_ENUMS,
                                   T.WANTED_ENUMERATORS, self.arch.char_signed)
        missing = [n for n in T.REQUIRED if f"struct {n}" not in g.named]
        if missing:
            raise self.refuse(f"its BTF has no struct {missing[0]}")
        variables = self._array_variables(g)
        formats = self._formats()
        kt = T.KernelTypes({"v": 1, "types": g.types, "named": g.named,
                            "enumerators": enumerators, "variables": variables,
                            "wanted": T.WANTED_DIGEST, "formats": formats})
        from vmdex.indexer.kernel.kallsyms import to_symtab
        return kt, to_symtab(ks, self.info.kerneloffset, self.arch.symbols_move)

    def _array_variables(self, g) -> dict[str, int]:
        """Array variables with the lengths BTF lacks: VMCOREINFO LENGTH(), else the
        gap to the next kallsyms symbol; one stderr line for each no rule gives."""
        import numpy as np

        ks = self.kallsyms
        letters = np.frombuffer(ks.letters, np.uint8)
        absolute = (letters == ord("A")) | (letters == ord("a"))
        image = np.sort(np.asarray(ks.addrs, np.uint64)[~absolute])
        image = image[np.r_[True, image[1:] != image[:-1]]].tolist() if len(image) else []
        out = {}
        for name, (elem, zero_tail) in VARIABLE_ARRAYS.items():
            addr = ks.address(name)
            if addr is None:
                continue
            if elem == "*":
                eid = g.add({"k": "ptr", "sz": 8, "to": "void"})
            else:
                eid = g.named.get(elem)
            size = g.size_of(eid) if eid is not None else 0
            n = self.info.length(name)
            if n is None and size:
                i = bisect.bisect_right(image, addr)
                gap = image[i] - addr if i < len(image) else 0
                n = self._slot_length(addr, gap, size, zero_tail)
            if not n:
                print(f"vmdex: {self.phys.path}: the length of {name}[] is not in BTF, "
                      "VMCOREINFO or kallsyms: read as if it had one element",
                      file=sys.stderr)
                continue
            out[name] = g.add({"k": "array", "t": eid, "len": n, "sz": n * size})
        return out

    def _slot_length(self, addr: int, gap: int, size: int, zero_tail: bool) -> int | None:
        if gap <= 0 or gap > 1 << 20:
            return None
        if not zero_tail:
            return gap // size if gap % size == 0 else None
        try:
            raw = self.read(addr, gap - gap % size)
        except VmdexError:
            return None
        n = len(raw) // size
        while n and not any(raw[(n - 1) * size:n * size]):
            n -= 1
        return n or None

    def _formats(self) -> dict[str, str]:
        """The printf formats types.WANTED_FORMATS names, found in [__start_rodata,
        __end_rodata) as memory holds it, read a chunk at a time until all are found
        (pages the dump left out read as zeros: the formats are never in them)."""
        from vmdex.indexer.kernel import types as T

        span = self._span("__start_rodata", "__end_rodata", 256 << 20)
        if span is None:
            return {}
        chunk, keep = 1 << 20, 4096        # a format straddling two chunks is in `keep`
        page = self.arch.page_size
        found: dict[str, str] = {}
        tail = b""
        va = span[0]
        while va < span[1] and len(found) < len(T.WANTED_FORMATS):
            stop = min(span[1], va + chunk)
            out = bytearray(tail)
            while va < stop:
                n = min(stop - va, page - (va & (page - 1)))
                try:
                    out += self.read(va, n)
                except VmdexError:
                    out += bytes(n)
                va += n
            last = va >= span[1]
            for k, v in T.find_formats(bytes(out)).items():
                # a format cut by the chunk's end is found whole in the next one
                if k not in found and (last or v.encode("latin-1") + b"\0" in out):
                    found[k] = v
            tail = bytes(out[-keep:])
        return found


# `vmlinux` values that are not a path: read the kernel from the dump at once
# (--vmlinux-from-dump); never fall back to the dump (--vmlinux-required)
FROM_DUMP, VMLINUX_REQUIRED = "<from the dump>", "<a vmlinux required>"
MODES = (FROM_DUMP, VMLINUX_REQUIRED)


@dataclass
class KernelChoice:
    """The kernel an ingest uses, and how the index's row for it is to be written."""
    types: object
    symtab: object
    build_id: str
    source: str                      # VMLINUX or DUMP: where types and symbols were read
    kernel_from: str                 # said by `vmdex ingest` when no --vmlinux was given
    label: str                       # names the kernel in error messages
    vmlinux: Path | None = None
    cached: tuple | None = None      # (types_json, symtab) as stored: the index's row or the user cache's
    replace: bool = False            # the row is to be replaced by what was read now


def _from_cache(row, bid: str) -> KernelChoice:
    from vmdex.indexer.kernel.symtab import Symtab
    from vmdex.indexer.kernel.types import KernelTypes
    return KernelChoice(KernelTypes.from_json(row[0]), Symtab.from_bytes(row[1]), bid,
                        row[2], f"kernel {bid} cached in the index",
                        f"kernel {bid} cached in the index", cached=row[:2])


def _read(src, bid: str, row, replace: bool) -> KernelChoice:
    types, symtab = src.load()
    path = getattr(src, "path", None)
    return KernelChoice(types, symtab, bid, src.kind,
                        str(path) if path else "BTF and kallsyms from the dump", src.label,
                        vmlinux=path,
                        replace=replace)


def _usable(row) -> bool:
    """A cached row this vmdex can answer from as it is (read from a vmlinux, and with
    everything this vmdex asks for)."""
    from vmdex.indexer.kernel.types import KernelTypes
    return bool(row) and row[2] == VMLINUX and KernelTypes.from_json(row[0]).complete


def _known_kernel(engine, build_id: str | None, release: str | None) -> str | None:
    """The build the index holds for this dump (store.known_kernel); engine None: a new
    index (indexer.target), which holds none."""
    if engine is None:
        return None
    from vmdex.indexer import store
    return store.known_kernel(engine, build_id, release)


def _index_row(engine, build_id: str):
    """The index's kernel row for this build (store.cached_kernel), None in a new index."""
    if engine is None:
        return None
    from vmdex.indexer import store
    return store.cached_kernel(engine, build_id)


def choose_kernel(engine, phys, info, dump: str, vmlinux: Path | None, mode: str | None,
                  progress) -> KernelChoice:
    """Where this dump's kernel comes from, in order: --vmlinux; the index's row for its
    build; a vmlinux in the debug dirs or from debuginfod (indexer.kernel.locate); the dump
    itself (BTF and kallsyms). `mode` FROM_DUMP goes to the dump at once, VMLINUX_REQUIRED
    never goes there. `engine` None: a new index, nothing in it. A row read from a
    dump, or by an older vmdex, is replaced when a vmlinux turns up."""
    from vmdex.indexer.kernel.locate import find_vmlinux
    from vmdex.indexer.kernel.types import KernelTypes

    dump_bid = (info.build_id or "").strip().lower() or None
    if mode == FROM_DUMP:
        return _from_dump(engine, phys, info)
    if vmlinux is None:
        bid = _known_kernel(engine, dump_bid, info.osrelease)
        row = _index_row(engine, bid) if bid else None
        if row and _usable(row):
            return _from_cache(row, bid)
        try:
            vmlinux = find_vmlinux(dump, bid or dump_bid, info.osrelease, progress)
        except KernelError as not_found:
            if row and KernelTypes.from_json(row[0]).complete:
                return _from_cache(row, bid)      # read from a dump before: as good
            if row and row[2] == VMLINUX:
                return _from_cache(row, bid)      # an older vmdex's: what it holds
            if mode == VMLINUX_REQUIRED:
                raise
            return _from_dump(engine, phys, info, not_found)
    src = VmlinuxSource(vmlinux)
    bid = src.build_id()
    if bid is None:
        raise KernelError(f"{vmlinux}: no build id note: not a kernel vmlinux?")
    if dump_bid and not bid.lower().startswith(dump_bid):
        raise KernelError(f"{vmlinux}: build id {bid} is not the dump's {dump_bid} "
                          f"(dump kernel {info.osrelease}): wrong vmlinux")
    row = _index_row(engine, bid)
    if _usable(row):
        choice = _from_cache(row, bid)
        choice.vmlinux, choice.kernel_from = vmlinux, str(vmlinux)
        return choice
    return _read_vmlinux(src, bid, row)


def _read_vmlinux(src: VmlinuxSource, bid: str, row) -> KernelChoice:
    """The vmlinux's types and symbols: from the user's kernel cache when an earlier ingest
    read this build (indexer.kernel.usercache), else from its DWARF (and then cached)."""
    from vmdex.indexer.kernel import usercache
    from vmdex.indexer.kernel.symtab import Symtab
    from vmdex.indexer.kernel.types import KernelTypes

    kept = usercache.load(bid)
    types = KernelTypes.from_json(kept[0]) if kept is not None else None
    if types is not None and types.complete:
        return KernelChoice(types, Symtab.from_bytes(kept[1]), bid, VMLINUX, str(src.path),
                            src.label, vmlinux=src.path, cached=kept, replace=bool(row))
    choice = _read(src, bid, row, replace=bool(row))
    choice.cached = (choice.types.to_json(), choice.symtab.to_bytes())
    usercache.save(bid, *choice.cached)
    return choice


def _from_dump(engine, phys, info, not_found: KernelError | None = None) -> KernelChoice:
    """The kernel read from the dump (never from the index's cache). A refusal says where
    vmdex looked for a vmlinux first (`not_found`, indexer.kernel.locate's message)."""
    try:
        src = DumpSource(phys, info)
        bid = src.build_id()
        if not bid:
            raise src.refuse("no build id in VMCOREINFO or in the kernel's notes")
        row = _index_row(engine, bid)
        # a row read from a vmlinux stays: it is never replaced by what a dump holds
        return _read(src, bid, row, replace=bool(row) and row[2] == DUMP)
    except KernelError as refused:
        looked = str(not_found or "").partition(": looked in ")[2].partition("; give ")[0]
        if not looked:
            raise
        raise KernelError(f"{refused} (no vmlinux found: looked in {looked})") from None
