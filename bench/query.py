"""Query benchmark: every oracle `vm`/`foreach` command as a whole `vmdex` process (best of
3), next to crash's time for the same work (start-up ≈ 6 s + the command itself).

    .venv/bin/python bench/query.py
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from common import VMDEX, crash_timings, machine, timed, today

from tests import fixturedata as F
from tests.conftest import primary_variant


def main() -> None:
    print(f"### Query latency ({today()}; {machine()})\n")
    for kernel in F.kernels():
        ct = crash_timings(F.kernel_dir(kernel))
        startup = float(ct["startup_only_session"])
        with tempfile.TemporaryDirectory() as d:
            db = str(Path(d) / "q.db")
            _, _, p = timed([VMDEX, "--db", db, "ingest", "--vmlinux", str(F.vmlinux(kernel)),
                             str(F.dump(kernel, primary_variant(kernel)))])
            assert p.returncode == 0, p.stderr
            print(f"\n#### {kernel} ({primary_variant(kernel)}); crash start-up alone "
                  f"{startup:.2f} s, `foreach vm -p` {ct['foreach_vm_p']} s, "
                  f"`foreach vm -R <phys>` {ct['foreach_vm_R_phys']} s\n")
            print("| command | vmdex s (best of 3) | peak MiB |")
            print("|---|---|---|")
            worst = 0.0
            for fname, cmd, _ in F.oracle_commands(kernel):
                if cmd.split()[0] not in ("vm", "foreach"):
                    continue
                runs = [timed([VMDEX, "--db", db, *cmd.split()]) for _ in range(3)]
                best = min(r[0] for r in runs)
                worst = max(worst, best)
                print(f"| `{cmd}` | {best:.3f} | {max(r[1] for r in runs)} |")
            print(f"\nslowest command: {worst:.3f} s")


if __name__ == "__main__":
    main()
