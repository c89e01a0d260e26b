"""Where the real fixture dumps are, unpacked on first use into a cache outside the repo.

The fixture folder is read-only (and in CI a copy beside the clone); `.xz` files are
decompressed once into $VMDEX_FIXTURE_CACHE (default ~/.cache/vmdex-fixtures) and reused.
"""
from __future__ import annotations

import lzma
import os
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def fixture_root() -> Path:
    env = os.environ.get("VMDEX_FIXTURES")
    if env:
        return Path(env)
    return REPO.parent / "shared" / "fixtures"


def cache_root() -> Path:
    env = os.environ.get("VMDEX_FIXTURE_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "vmdex-fixtures"
    base.mkdir(parents=True, exist_ok=True)
    return base


def kernels() -> list[str]:
    """Every fixture kernel folder (linux-<release>), sorted."""
    return sorted(p.name for p in fixture_root().glob("linux-*") if (p / "oracle").is_dir())


def _unpacked(src: Path, kernel: str) -> Path:
    """`src` itself, or its decompressed copy in the cache when it ends in .xz."""
    if src.suffix != ".xz":
        return src
    out = cache_root() / kernel / src.stem
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name + ".")
    with os.fdopen(fd, "wb") as dst, lzma.open(src) as packed:
        shutil.copyfileobj(packed, dst, 1 << 22)
    os.replace(tmp, out)  # atomic: a concurrent reader never sees half a file
    return out


def kernel_dir(kernel: str) -> Path:
    return fixture_root() / kernel


def vmlinux(kernel: str) -> Path:
    return _unpacked(kernel_dir(kernel) / "vmlinux.xz", kernel)


def dump_variants(kernel: str) -> list[str]:
    """Dump file names as users have them (without .xz), e.g. vmcore.mdf-c-d31."""
    names = set()
    for p in kernel_dir(kernel).glob("vmcore.*"):
        names.add(p.name[:-3] if p.name.endswith(".xz") else p.name)
    return sorted(names)


def dump(kernel: str, variant: str) -> Path:
    d = kernel_dir(kernel)
    plain = d / variant
    return plain if plain.exists() else _unpacked(d / (variant + ".xz"), kernel)


def oracle_dir(kernel: str) -> Path:
    return kernel_dir(kernel) / "oracle"


def oracle_commands(kernel: str) -> list[tuple[str, str, str]]:
    """(file, crash command, note) rows of oracle/commands.tsv."""
    rows = []
    for line in (oracle_dir(kernel) / "commands.tsv").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        rows.append((parts[0], parts[1], parts[2] if len(parts) > 2 else ""))
    return rows
