"""Ingest benchmark: cold (empty index) and warm (kernel layouts cached) ingest of every
fixture dump, wall time and peak RSS, next to crash's own start-up + `foreach vm -p`.

    .venv/bin/python bench/ingest.py            # prints a Markdown table for RESULTS.md
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from common import VMDEX, crash_timings, machine, timed, today

from tests import fixturedata as F


def main() -> None:
    print(f"### Ingest ({today()}; {machine()})\n")
    print("| dump | cold s | cold peak MiB | warm s | warm peak MiB | crash start-up + foreach vm -p s |")
    print("|---|---|---|---|---|---|")
    for kernel in F.kernels():
        ct = crash_timings(F.kernel_dir(kernel))
        crash = float(ct["startup_only_session"]) + float(ct["foreach_vm_p"])
        vml = str(F.vmlinux(kernel))
        for variant in F.dump_variants(kernel):
            dump = str(F.dump(kernel, variant))
            with tempfile.TemporaryDirectory() as d:
                db = str(Path(d) / "b.db")
                cold, cold_rss, p = timed([VMDEX, "--db", db, "ingest", "--vmlinux", vml,
                                           "--name", "cold", dump])
                assert p.returncode == 0, p.stderr
                warm, warm_rss, p = timed([VMDEX, "--db", db, "ingest", "--vmlinux", vml,
                                           "--name", "warm", dump])
                assert p.returncode == 0, p.stderr
            print(f"| {kernel} {variant} | {cold:.2f} | {cold_rss} | {warm:.2f} | {warm_rss} "
                  f"| {crash:.2f} |")


if __name__ == "__main__":
    main()
