"""One dump's kernel as the walkers see it: memory, type layouts, symbols, per-CPU data."""
from __future__ import annotations

from functools import lru_cache

from vmdex.indexer.errors import MemoryReadError, WalkError
from vmdex.indexer.arch.base import U64
from vmdex.indexer.arch.memory import KernelMemory


class StructView:
    """The bytes of one kernel object, read once, with fields picked out by member path."""

    __slots__ = ("kernel", "struct", "addr", "raw")

    def __init__(self, kernel: "Kernel", struct: str, addr: int, raw: bytes):
        self.kernel, self.struct, self.addr, self.raw = kernel, struct, addr, raw

    def _field(self, path: str, size: int | None = None) -> bytes:
        k = self.kernel
        off = k.off(self.struct, path)
        n = size or k.member_size(self.struct, path)
        return self.raw[off:off + n]

    def u(self, path: str, size: int | None = None) -> int:
        return int.from_bytes(self._field(path, size), "little")

    def s(self, path: str, size: int | None = None) -> int:
        return int.from_bytes(self._field(path, size), "little", signed=True)

    def ptr(self, path: str) -> int:
        return self.u(path, 8)

    def has(self, path: str) -> bool:
        return self.kernel.has(self.struct, path)


class Kernel:
    """Layouts from DWARF (`types`), runtime symbols (vmlinux value + KASLR), memory."""

    def __init__(self, mem: KernelMemory, types, symbol_address, kaslr_offset: int):
        self.mem = mem
        self.types = types
        self._symbol_address = symbol_address  # name -> unrelocated address or None
        self.kaslr_offset = kaslr_offset
        self._off = lru_cache(maxsize=None)(self._offsetof)
        self._flex = lru_cache(maxsize=None)(types.flexible_char_array_offset)

    # --- layouts -------------------------------------------------------------------
    def _offsetof(self, struct: str, path: str) -> int:
        off = self.types.offsetof(struct, path)
        if off is None:
            raise WalkError(f"kernel has no member {struct}.{path}")
        return off

    def off(self, struct: str, path: str) -> int:
        return self._off(struct, path)

    def has(self, struct: str, path: str) -> bool:
        return self.types.has_member(struct, path)

    def sizeof(self, struct: str) -> int:
        return self.types.sizeof(struct)

    def member_size(self, struct: str, path: str) -> int:
        return self.types.member_size(struct, path)

    def enum(self, name: str, default: int | None = None) -> int | None:
        v = self.types.enum_value(name)
        return default if v is None else v

    # --- symbols -------------------------------------------------------------------
    def sym(self, name: str) -> int | None:
        """Runtime address: KASLR moves image symbols (the Arch says which move)."""
        a = self._symbol_address(name)
        if a is None:
            return None
        return a + self.kaslr_offset if self.mem.arch.symbol_moves(a) else a

    def need_sym(self, name: str) -> int:
        a = self.sym(name)
        if a is None:
            raise WalkError(f"kernel has no symbol {name}")
        return a

    # --- memory --------------------------------------------------------------------
    def view(self, struct: str, addr: int) -> StructView:
        raw = self.mem.read(addr, self.sizeof(struct))
        flex = self._flex(struct)
        if flex is not None and raw.find(b"\0", flex) < 0:
            raw = raw.ljust(flex, b"\0") + self._string_at(addr + max(flex, len(raw)),
                                                         self.STRING_TAIL - max(len(raw) - flex, 0))
        return StructView(self, struct, addr, raw)

    # gdb prints up to 256 characters of a string (`print elements`), then `...`.
    STRING_TAIL = 257

    def _string_at(self, va: int, limit: int) -> bytes:
        """Bytes at va up to and including a NUL, at most `limit`: what a trailing
        `char x[]` member points at, kept after the struct's bytes so `vm -m` prints it
        as gdb does. Stops where memory cannot be read."""
        got = bytearray()
        while len(got) < limit:
            page = self.mem.page
            n = min(limit - len(got), page - (va & (page - 1)))
            try:
                chunk = self.mem.read(va, n)
            except (MemoryReadError, WalkError):
                break
            z = chunk.find(b"\0")
            if z >= 0:
                return bytes(got + chunk[:z + 1])
            got += chunk
            va += n
        return bytes(got)

    def ptr(self, addr: int) -> int:
        return self.mem.u64(addr)

    def percpu(self, base: int, cpu: int) -> int:
        """Address of a per-CPU variable's copy for `cpu`: `base + __per_cpu_offset[cpu]`
        modulo 2^64, as the CPU adds them. Older x86-64 kernels link per-CPU symbols from 0
        (small offsets, offset = area); newer ones link them in the image at
        __per_cpu_start (offset = area - __per_cpu_start, a sum that wraps). The one
        modular rule serves both, and dynamic per-CPU pointers too."""
        return (base + self.per_cpu_offsets[cpu]) & U64

    @property
    def per_cpu_offsets(self) -> list[int]:
        if not hasattr(self, "_pco"):
            base = self.need_sym("__per_cpu_offset")
            n = self.types.variable_array_length("__per_cpu_offset") or 1
            raw = self.mem.read(base, 8 * n)
            self._pco = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, 8 * n, 8)]
        return self._pco
