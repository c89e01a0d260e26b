"""The one error family vmdex lets escape: each carries a one-line message for the user."""


class VmdexError(Exception):
    """Base of every error vmdex reports to the user (one line, non-zero exit)."""


class DumpError(VmdexError):
    """The dump file is unreadable, truncated, corrupt or of an unknown format."""


class MemoryReadError(DumpError):
    """A physical address could not be read from the dump."""

    def __init__(self, paddr: int, why: str):
        self.paddr = paddr
        super().__init__(f"{why}: physical address: {paddr:x}")


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
