"""VMCOREINFO: the kernel's `KEY=value` lines describing itself to dump tools.

Value formats come from the kernel's macros: SYMBOL() and KERNELOFFSET are hex without 0x,
NUMBER() is *signed* decimal (phys_base can be negative), OFFSET/SIZE/LENGTH are unsigned
decimal. Like crash, a key only counts at the start of a line and followed by '='; the first
occurrence wins.
"""
from __future__ import annotations


class VmcoreInfo:
    def __init__(self, entries: dict[str, str]):
        self.entries = entries

    @classmethod
    def parse(cls, text: str) -> "VmcoreInfo":
        entries: dict[str, str] = {}
        for line in text.split("\n"):
            key, eq, value = line.partition("=")
            if eq and key:
                entries.setdefault(key, value.rstrip("\r\0"))
        return cls(entries)

    def get(self, key: str) -> str | None:
        """The raw value text of `key` (e.g. 'SYMBOL(_stext)'), or None."""
        return self.entries.get(key)

    def _int(self, key: str, base: int) -> int | None:
        value = self.entries.get(key)
        if value is None:
            return None
        try:
            return int(value.strip(), base)
        except ValueError:
            return None

    @property
    def osrelease(self) -> str | None:
        return self.entries.get("OSRELEASE")

    @property
    def pagesize(self) -> int | None:
        return self._int("PAGESIZE", 10)

    @property
    def build_id(self) -> str | None:
        return self.entries.get("BUILD-ID")

    @property
    def kerneloffset(self) -> int:
        """The KASLR slide (hex); 0 when the kernel did not report one."""
        return self._int("KERNELOFFSET", 16) or 0

    def symbol(self, name: str) -> int | None:
        return self._int(f"SYMBOL({name})", 16)

    def symbols(self) -> dict[str, int]:
        """Every SYMBOL(name) with a readable value."""
        out = {}
        for key in self.entries:
            if key.startswith("SYMBOL(") and key.endswith(")"):
                value = self.symbol(key[7:-1])
                if value is not None:
                    out[key[7:-1]] = value
        return out

    def number(self, name: str) -> int | None:
        """Signed: int() accepts the leading '-'. Callers doing address arithmetic wrap
        modulo 2**64 themselves. Decimal, or hex with 0x (arm64 exports kimage_voffset,
        PHYS_OFFSET, TCR_EL1_T1SZ... so)."""
        raw = (self.entries.get(f"NUMBER({name})") or "").strip().lower()
        hexa = raw.lstrip("-").startswith("0x")
        return self._int(f"NUMBER({name})", 16 if hexa else 10)

    def offset(self, struct_member: str) -> int | None:
        """OFFSET(struct.member), e.g. offset('list_head.next')."""
        return self._int(f"OFFSET({struct_member})", 10)

    def size(self, name: str) -> int | None:
        return self._int(f"SIZE({name})", 10)

    def length(self, name: str) -> int | None:
        return self._int(f"LENGTH({name})", 10)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __repr__(self) -> str:
        return f"<VmcoreInfo {self.osrelease} ({len(self.entries)} keys)>"
