"""A throwaway debuginfod server (elfutils' own) for the tests, serving the given files.

    with debuginfod_server([vmlinux]) as url:     # http://127.0.0.1:PORT
        ...

The files are linked into a temp directory that the server scans (-F, following links);
the context yields only once the server has indexed all of them. A missing `debuginfod`
binary is an error, not a skip: setup.sh installs Debian's debuginfod package.
(debuginfod 0.188 has no option to bind one address: it listens on every interface, on a
free port, for as long as the test runs.)
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

SCAN_TIMEOUT = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _metric(text: str, name: str) -> int:
    m = re.search(rf"^{re.escape(name)} (\d+)", text, re.M)
    return int(m.group(1)) if m else 0


def _get(url: str, nbytes: int = -1) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read(nbytes)


@contextlib.contextmanager
def debuginfod_server(files: list[Path], build_ids: list[str] = ()) -> Iterator[str]:
    """Yield the server's URL once it has scanned `files` (and answers for `build_ids`)."""
    exe = shutil.which("debuginfod")
    if exe is None:
        raise RuntimeError("debuginfod not found: install Debian's debuginfod package "
                           "(setup.sh does); the debuginfod tests do not skip")
    top = Path(tempfile.mkdtemp(prefix="vmdex-debuginfod-"))
    src = top / "src"
    src.mkdir()
    for i, f in enumerate(files):
        os.symlink(Path(f).resolve(), src / f"{i}-{Path(f).name}")
    port = _free_port()
    log = open(top / "server.log", "wb")
    proc = subprocess.Popen(
        [exe, "-F", "-L", "--disable-source-scan", "-p", str(port), "-d", str(top / "db.sqlite"),
         "-t", "0", "-g", "0", "-c", "1", str(src)],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SCAN_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"debuginfod exited {proc.returncode}: "
                                   f"{(top / 'server.log').read_text()[-2000:]}")
            try:
                m = _get(f"{url}/metrics").decode()
                if (_metric(m, 'scanned_files_total{source="file"}') >= len(files)
                        and _metric(m, 'thread_work_pending{role="scan"}') == 0
                        and _metric(m, 'thread_busy{role="scan"}') == 0):
                    # The first bytes of each wanted file: it is really being served.
                    if all(_get(f"{url}/buildid/{b}/debuginfo", 4) == b"\x7fELF"
                           for b in build_ids):
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"debuginfod did not finish scanning in {SCAN_TIMEOUT:g}s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(top, ignore_errors=True)
