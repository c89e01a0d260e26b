"""Find a dump's vmlinux from what the dump says about itself: its build id, else its release.

Looked for, in order:
  1. under each debug root ($VMDEX_DEBUG_DIRS, colon-separated, then /usr/lib/debug):
     `.build-id/xx/rest.debug` (by build id), `boot/vmlinux-REL`, `lib/modules/REL/vmlinux`
     and a plain `vmlinux-REL` (by release; Debian's -dbg packages install all three);
  2. the debuginfod servers of $DEBUGINFOD_URLS (by build id; indexer.debuginfod).
A file found by release is used only if its build id is the dump's (when the dump has one):
several builds of one release are common, and the wrong one reads garbage.
"""
from __future__ import annotations

import os
from pathlib import Path

from vmdex.indexer import debuginfod
from vmdex.indexer.errors import KernelError, VmdexError
from vmdex.indexer.kernel.symtab import build_id as file_build_id

SYSTEM_DEBUG_DIR = Path("/usr/lib/debug")


def debug_roots() -> list[Path]:
    roots = [Path(p) for p in os.environ.get("VMDEX_DEBUG_DIRS", "").split(":") if p]
    return roots + ([SYSTEM_DEBUG_DIR] if SYSTEM_DEBUG_DIR not in roots else [])


def candidates(root: Path, bid: str | None, release: str | None) -> list[Path]:
    """The paths a vmlinux may have under one debug root, most specific first."""
    paths = []
    if bid and len(bid) > 2:
        paths.append(root / ".build-id" / bid[:2] / f"{bid[2:]}.debug")
    if release and "/" not in release:   # the release becomes a path component
        paths += [root / "boot" / f"vmlinux-{release}",
                  root / "lib" / "modules" / release / "vmlinux",
                  root / f"vmlinux-{release}"]
    return paths


def _same_build(path: Path, bid: str) -> str | None:
    """None if `path` is the build `bid`; else why not (for the not-found message)."""
    try:
        have = file_build_id(path)
    except VmdexError:
        return f"{path}: not an ELF file"
    if have is None:
        return f"{path}: no build id"
    if not have.lower().startswith(bid):
        return f"{path}: build id {have}"
    return None


def find_in_dirs(bid: str | None, release: str | None,
                 roots: list[Path]) -> tuple[Path | None, list[str]]:
    """The first matching file under the roots, and the files passed over (and why)."""
    passed = []
    for root in roots:
        for path in candidates(root, bid, release):
            if not path.is_file():
                continue
            why = _same_build(path, bid) if bid else None
            if why is None:
                return path, passed
            passed.append(why)
    return None, passed


def find_vmlinux(dump: str, bid: str | None, release: str | None,
                 progress: debuginfod.Progress | None = None) -> Path:
    """The vmlinux for this dump, or KernelError saying (in one line) where vmdex looked."""
    bid = (bid or "").strip().lower() or None
    roots = debug_roots()
    found, passed = find_in_dirs(bid, release, roots)
    if found:
        return found
    urls = debuginfod.server_urls()
    failures: list[str] = []
    if bid:
        found, failures = debuginfod.fetch(
            bid, urls, progress=progress, check=lambda p: _same_build(p, bid))
        if found:
            return found
    what = (f"build id {bid}" if bid else "no build id in the dump") + \
        (f", kernel {release}" if release else "")
    where = "debug dirs " + ", ".join(str(r) for r in roots)
    if not bid:
        where += "; debuginfod needs a build id"
    elif urls:
        where += "; debuginfod " + "; ".join(failures)
    else:
        where += f"; debuginfod cache {debuginfod.cache_dir()} (DEBUGINFOD_URLS is not set)"
    skipped = f"; passed over {'; '.join(passed)}" if passed else ""
    raise KernelError(f"{dump}: no vmlinux found ({what}): looked in {where}{skipped}; "
                      "give --vmlinux, or set VMDEX_DEBUG_DIRS or DEBUGINFOD_URLS")
