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


def fixture_roots() -> list[Path]:
    """$VMDEX_FIXTURES (colon-separated folders), else ../shared/fixtures."""
    env = os.environ.get("VMDEX_FIXTURES")
    if env:
        return [Path(p) for p in env.split(":") if p]
    return [REPO.parent / "shared" / "fixtures"]


def fixture_root() -> Path:
    return fixture_roots()[0]


def cache_root() -> Path:
    env = os.environ.get("VMDEX_FIXTURE_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "vmdex-fixtures"
    base.mkdir(parents=True, exist_ok=True)
    return base


def is_fixture(d: Path) -> bool:
    """A fixture folder holds a vmlinux, at least one vmcore.* and a crash oracle; its name
    says nothing (a new boot of a kernel is a folder of any name)."""
    return ((d / "oracle" / "commands.tsv").is_file() and any(d.glob("vmcore.*"))
            and ((d / "vmlinux.xz").exists() or (d / "vmlinux").exists()))


_FOLDERS: dict[str, Path] = {}


def kernels() -> list[str]:
    """Every fixture folder under the fixture roots, by folder name, sorted. (The name is
    only a key: nothing is read from it.)"""
    if not _FOLDERS:
        for root in fixture_roots():
            for d in sorted(root.iterdir()) if root.is_dir() else []:
                if d.is_dir() and is_fixture(d):
                    _FOLDERS.setdefault(d.name, d)
    return sorted(_FOLDERS)


def _resolve_link(src: Path) -> Path:
    """Follow a link, also one that a copy flattened into a small text file holding the
    relative path (the boot2 folders' vmlinux.xz)."""
    for _ in range(8):
        src = src.resolve()
        if src.stat().st_size > 4096:
            return src
        head = src.read_bytes()
        if head.startswith(b"\xfd7zXZ") or b"\0" in head:
            return src
        target = (src.parent / head.decode().strip())
        if not target.exists():
            return src
        src = target
    return src


def _unpacked(src: Path, kernel: str) -> Path:
    """`src` itself, or its decompressed copy in the cache when it ends in .xz. The cache
    is keyed by the resolved source, so folders sharing one vmlinux unpack it once."""
    src = _resolve_link(src)
    if src.suffix != ".xz":
        return src
    out = cache_root() / src.parent.name / src.stem
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name + ".")
    with os.fdopen(fd, "wb") as dst, lzma.open(src) as packed:
        shutil.copyfileobj(packed, dst, 1 << 22)
    os.replace(tmp, out)  # atomic: a concurrent reader never sees half a file
    return out


def kernel_dir(kernel: str) -> Path:
    kernels()
    return _FOLDERS.get(kernel, fixture_root() / kernel)


def vmlinux(kernel: str) -> Path:
    plain = kernel_dir(kernel) / "vmlinux"
    if plain.exists():
        return plain.resolve()
    return _unpacked(kernel_dir(kernel) / "vmlinux.xz", kernel)


def release(kernel: str) -> str:
    """The kernel release crash printed for this dump (oracle/sys.txt)."""
    for line in (oracle_dir(kernel) / "sys.txt").read_text().splitlines():
        if line.strip().startswith("RELEASE:"):
            return line.split(":", 1)[1].strip()
    raise LookupError(f"{kernel}: no RELEASE in oracle/sys.txt")


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
