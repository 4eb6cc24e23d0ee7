#!/bin/sh
# make check: the integration suite (real processes on 127.0.0.1), with Debian's pytest.
here=$(cd "$(dirname "$0")" && pwd)
FLASHGATE_BIN=${FLASHGATE_BIN:-$(pwd)/flashgate}
export FLASHGATE_BIN
export PYTHONDONTWRITEBYTECODE=1 # distcheck: the source tree is read-only
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider "$here"
