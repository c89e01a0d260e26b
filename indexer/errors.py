"""The one error family vmdex lets escape: each carries a one-line message for the user."""
import re

_ZLIB_ERROR = re.compile(r"zlib: uncompress failed: Error (-?\d+)")


def read_cause(reason: str) -> str:
    """The cause code of a failed read's message text (MemoryReadError.cause; also the
    reason stored in page_table_faults): excluded, absent, incomplete, zlib:<code>,
    unreadable."""
    if reason.startswith("page excluded"):
        return "excluded"
    if "not in dump" in reason:
        return "absent"
    if "incomplete dump" in reason:
        return "incomplete"
    m = _ZLIB_ERROR.search(reason)
    return f"zlib:{m.group(1)}" if m else "unreadable"


class VmdexError(Exception):
    """Base of every error vmdex reports to the user (one line, non-zero exit)."""


class DumpError(VmdexError):
    """The dump file is unreadable, truncated, corrupt or of an unknown format."""


class MemoryReadError(DumpError):
    """A physical address could not be read from the dump. `vaddr` is set when the read
    was of a kernel virtual address (the start of the chunk that failed)."""

    vaddr: int | None = None

    def __init__(self, paddr: int, why: str):
        self.paddr = paddr
        self.why = why
        super().__init__(f"{why}: physical address: {paddr:x}")

    @property
    def cause(self) -> str:
        """The loss as a stored code, for answers to word as crash does: excluded (the
        filter left the page out), absent (no part of the dump covers it), incomplete (a
        descriptor never written), zlib:<code> (compressed data corrupt), unreadable."""
        return "excluded" if isinstance(self, ExcludedPage) else read_cause(self.why)


class ExcludedPage(MemoryReadError):
    """The page exists in the machine but the dump filter left it out."""

    def __init__(self, paddr: int):
        super().__init__(paddr, "page excluded")


class OutOfDump(MemoryReadError):
    """The address is not covered by the dump at all (no RAM there, or truncated file)."""

    def __init__(self, paddr: int, why: str = "not in dump"):
        super().__init__(paddr, why)


class KernelError(VmdexError):
    """The vmlinux is missing, lacks debug info, or does not belong to the dump."""


class WalkError(VmdexError):
    """A kernel structure could not be walked (corrupt or unreadable)."""
