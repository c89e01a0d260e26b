"""Dumps in a /var/crash-style tree, each named after the directory that holds it.

kdump-tools (Debian, Ubuntu) writes `/var/crash/<stamp>/dump.<stamp>` (beside dmesg.<stamp>);
Fedora/RHEL kdump and a plain copy of /proc/vmcore write `<dir>/vmcore`. Anything else in
the tree (dmesg files, kexec_cmd, half-written `dump-incomplete`/`vmcore-incomplete`) is left
alone.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

# The files of a makedumpfile --split set: vmcore.1, vmcore-2, dump.<stamp>.1 ...
_SPLIT_PART = re.compile(r"^(vmcore|dump\.[^.]+)[.-]\d+$")


def is_dump_name(name: str) -> bool:
    return name == "vmcore" or (name.startswith("dump.") and len(name) > 5
                                and not _SPLIT_PART.match(name))


def find_dumps(top: Path) -> list[tuple[Path | tuple[Path, ...], str]]:
    """(path, name) of every dump under `top`, in path order; name = its directory's. The
    files of a --split set in one directory are one dump: a tuple of their paths."""
    from vmdex.indexer.dumpfile.split import group_split_files

    found: list = []
    top = Path(top)
    for here, dirs, files in os.walk(top):
        dirs.sort()
        name = Path(os.path.abspath(here)).name
        parts = []
        for f in sorted(files):
            path = Path(here) / f
            if not path.is_file():        # a symlink to a dump counts
                continue
            if is_dump_name(f):
                found.append((path, name))
            elif _SPLIT_PART.match(f):
                parts.append(str(path))
        for d in group_split_files(parts):
            found.append((tuple(map(Path, d)) if isinstance(d, tuple) else Path(d), name))
    return found
