"""Shared bits for the benchmarks: run a command, measure wall time and peak RSS."""
from __future__ import annotations

import os
import platform
import subprocess
import tempfile
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
VMDEX = str(Path(sys.executable).parent / "vmdex")


def timed(cmd: list[str], **kw) -> tuple[float, int, subprocess.CompletedProcess]:
    """(wall seconds, peak RSS of that child in MiB, result): the child's own rusage."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, **kw)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0), err.seek(0)
        code = os.waitstatus_to_exitcode(status)
        return wall, ru.ru_maxrss // 1024, subprocess.CompletedProcess(cmd, code, out.read(), err.read())


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {cpu}, {mem:.0f} GiB RAM, Python {platform.python_version()}"


def today() -> str:
    return date.today().isoformat()


def crash_timings(kernel_dir: Path) -> dict[str, str]:
    out = {}
    for line in (kernel_dir / "timings.txt").read_text().splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out
