#!/usr/bin/env bash
# Set up vmdex on a fresh Debian machine, in a virtualenv in .venv.
#   ./setup.sh          what vmdex needs to run: Python's venv, then vmdex installed from
#                       its wheel (`pip install .`), as a user installs it
#   ./setup.sh --tests  also what the tests need: PostgreSQL, debuginfod, Java (Spark), and for
#                       the kernel matrix QEMU, debootstrap, cross compilers; pytest and the
#                       test extras (DuckDB, pyspark, pyarrow)
set -euo pipefail
cd "$(dirname "$0")"
tests=0
case "${1:-}" in
    --tests) tests=1 ;;
    "") ;;
    *) echo "usage: ./setup.sh [--tests]" >&2; exit 2 ;;
esac

need=()
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
dpkg -s xz-utils >/dev/null 2>&1 || need+=(xz-utils)     # the README unpacks a fixture vmlinux
if [ $tests = 1 ]; then
    ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)  # a real server
    dpkg -s debuginfod >/dev/null 2>&1 || need+=(debuginfod)   # tests/test_locate.py
    # Spark (tests/test_export.py, pyspark in local mode) runs on Java 17+
    command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
    # The kernel matrix (tests/test_matrix.py) builds fresh dumps with
    # ../shared/fixtures/tools/make-dumps.sh: QEMU, debootstrap for crash's sid chroot, and
    # what the guest's initramfs is made of (its README's host requirements).
    # Its arm64 rows (--arch arm64) also need the aarch64 emulator, qemu-user for arm64's
    # makedumpfile, and a cross compiler for the guest's workloads; the real-system rows
    # (--rootfs) make ext4, xfs and btrfs images.
    for p in qemu-system-x86 debootstrap busybox-static gcc libc6-dev cpio kmod zstd binutils bc \
             debian-archive-keyring qemu-system-arm qemu-user-static gcc-aarch64-linux-gnu \
             libc6-dev-arm64-cross e2fsprogs xfsprogs btrfs-progs; do
        dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
    done
fi
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
# A regular install (pip builds the wheel and installs it), never an editable one: the
# tests run the vmdex users get. Uninstalled first, so a developer's `pip install -e .` or
# an older build of the same version is replaced by this tree.
.venv/bin/pip uninstall -y -q vmdex >/dev/null 2>&1 || true
extras=""; [ $tests = 1 ] && extras="[test]"
.venv/bin/pip install -q --disable-pip-version-check ".$extras"
