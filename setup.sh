#!/usr/bin/env bash
# Set up vmdex on a fresh Debian machine: system libraries, then a virtualenv in .venv.
set -euo pipefail
cd "$(dirname "$0")"

need=()
dpkg -s liblzo2-dev >/dev/null 2>&1 || need+=(liblzo2-dev)          # python-lzo builds against it
dpkg -s xz-utils >/dev/null 2>&1 || need+=(xz-utils)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)  # tests run a real server
dpkg -s debuginfod >/dev/null 2>&1 || need+=(debuginfod)   # tests/test_locate.py runs a real server
# The kernel matrix (tests/test_matrix.py) builds fresh dumps with
# ../shared/fixtures/tools/make-dumps.sh: QEMU, debootstrap for crash's sid chroot, and
# what the guest's initramfs is made of (its README's host requirements).
# Its arm64 row (--arch arm64) also needs the aarch64 emulator, qemu-user for arm64's
# makedumpfile, and a cross compiler for the guest's workloads.
for p in qemu-system-x86 debootstrap busybox-static gcc libc6-dev cpio kmod zstd binutils bc \
         debian-archive-keyring qemu-system-arm qemu-user-static gcc-aarch64-linux-gnu \
         libc6-dev-arm64-cross; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
# Byte-compile vmdex now, as a wheel install would: with PYTHONDONTWRITEBYTECODE set (as on
# some CI machines) every `vmdex vm` would otherwise compile its modules again (~30 ms).
.venv/bin/python -m compileall -q indexer query migrations
