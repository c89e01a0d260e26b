#!/usr/bin/env bash
# Set up vmdex on a fresh Debian machine: system libraries, then a virtualenv in .venv.
set -euo pipefail
cd "$(dirname "$0")"

need=()
dpkg -s liblzo2-dev >/dev/null 2>&1 || need+=(liblzo2-dev)          # python-lzo builds against it
dpkg -s xz-utils >/dev/null 2>&1 || need+=(xz-utils)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)  # tests run a real server
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
