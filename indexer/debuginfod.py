"""A small debuginfod client: fetch a vmlinux by build id over HTTP into elfutils' cache.

The protocol is one GET per server, `<url>/buildid/<HEX>/debuginfo`, tried in the order
$DEBUGINFOD_URLS lists them (space-separated, as elfutils reads it). Downloads land in
`<cache>/<HEX>/debuginfo`, the layout elfutils' own client uses, so either client reuses
what the other fetched. A download is written to a temp file and renamed into place, so a
killed or concurrent fetch never leaves half a vmlinux where the next run would trust it.
"""
from __future__ import annotations

import os
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

DEFAULT_TIMEOUT = 90.0   # seconds without data before a server is given up (elfutils' default)
CHUNK = 1 << 20

Progress = Callable[[str, int, int], None]


def server_urls() -> list[str]:
    return [u.rstrip("/") for u in os.environ.get("DEBUGINFOD_URLS", "").split() if u]


def cache_dir() -> Path:
    """$DEBUGINFOD_CACHE_PATH, else $XDG_CACHE_HOME/debuginfod_client, else
    ~/.cache/debuginfod_client (where elfutils' client keeps its files)."""
    env = os.environ.get("DEBUGINFOD_CACHE_PATH")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg or Path.home() / ".cache") / "debuginfod_client"


def timeout() -> float:
    try:
        return float(os.environ.get("DEBUGINFOD_TIMEOUT", "")) or DEFAULT_TIMEOUT
    except ValueError:
        return DEFAULT_TIMEOUT


def cached(build_id: str, cache: Path | None = None) -> Path | None:
    """The cached file, if any. elfutils marks a failed lookup with an empty file of the
    same name (its negative cache): that is not a hit."""
    path = (cache or cache_dir()) / build_id.lower() / "debuginfo"
    try:
        return path if path.is_file() and path.stat().st_size > 0 else None
    except OSError:
        return None


def fetch(build_id: str, urls: list[str], cache: Path | None = None,
          progress: Progress | None = None,
          check: Callable[[Path], str | None] | None = None) -> tuple[Path | None, list[str]]:
    """The cached debuginfo of `build_id`, downloading it from the first server that has it.

    Returns (path or None, one short reason per server that failed). `check` vets a
    finished download before it enters the cache (a reason string rejects it)."""
    bid = build_id.lower()
    cache = cache or cache_dir()
    hit = cached(bid, cache)
    if hit and not (check and check(hit)):
        return hit, []
    failures = []
    for url in urls:
        try:
            path = _download(f"{url}/buildid/{bid}/debuginfo", cache / bid, progress, check)
            return path, failures
        except _Failed as exc:
            failures.append(f"{url}: {exc}")
    return None, failures


class _Failed(Exception):
    pass


def _download(url: str, where: Path, progress: Progress | None,
              check: Callable[[Path], str | None] | None) -> Path:
    req = urllib.request.Request(url, headers={"User-Agent": "vmdex"})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout())
    except urllib.error.HTTPError as exc:
        raise _Failed("not found (HTTP 404)" if exc.code == 404
                      else f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _Failed(_reason(exc.reason)) from None
    except (OSError, ValueError) as exc:   # timeouts, resets, malformed URLs
        raise _Failed(_reason(exc)) from None
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        resp.close()
        raise _Failed(f"cannot create cache {where}: {exc.strerror or exc}") from None
    total = int(resp.headers.get("Content-Length") or 0)
    fd, tmp = tempfile.mkstemp(dir=where, prefix=".debuginfo.")
    try:
        with resp, os.fdopen(fd, "wb") as out:
            done = 0
            while True:
                try:
                    block = resp.read(CHUNK)
                except (OSError, ValueError) as exc:
                    raise _Failed(f"download cut short: {_reason(exc)}") from None
                if not block:
                    break
                out.write(block)
                done += len(block)
                if progress:
                    progress(f"debuginfod {where.name[:12]}", done, total)
        if total and done != total:
            raise _Failed(f"download cut short ({done} of {total} bytes)")
        why = check(Path(tmp)) if check else None
        if why:
            raise _Failed(why)
        final = where / "debuginfo"
        os.replace(tmp, final)   # atomic: readers see no file or the whole file
        return final
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):   # the read errors are _Failed already: this is the disk
            raise _Failed(f"cannot write to the cache {where}: {exc.strerror or exc}") from None
        raise


def _reason(exc) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"timed out after {timeout():g}s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
