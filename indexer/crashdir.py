"""Dumps in a /var/crash-style tree, each named after the directory that holds it.

kdump-tools (Debian, Ubuntu) writes `/var/crash/<stamp>/dump.<stamp>` (beside dmesg.<stamp>);
Fedora/RHEL kdump and a plain copy of /proc/vmcore write `<dir>/vmcore`. Anything else in
the tree (dmesg files, kexec_cmd, half-written `dump-incomplete`/`vmcore-incomplete`) is left
alone.
"""
from __future__ import annotations

import os
from pathlib import Path


def is_dump_name(name: str) -> bool:
    return name == "vmcore" or (name.startswith("dump.") and len(name) > 5)


def find_dumps(top: Path) -> list[tuple[Path, str]]:
    """(path, name) of every dump file under `top`, in path order; name = its directory's."""
    found = []
    top = Path(top)
    for here, dirs, files in os.walk(top):
        dirs.sort()
        for f in sorted(files):
            path = Path(here) / f
            if is_dump_name(f) and path.is_file():   # a symlink to a dump counts
                found.append((path, Path(os.path.abspath(here)).name))
    return found
