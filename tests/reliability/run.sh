#!/bin/sh
# make check: the reliability suite (tests/reliability/README.md), short form: real
# flashgate and flashgate-agent processes under the faults of a real sale, each scenario
# bounded in time. The long form is tests/bench/soak.sh.
here=$(cd "$(dirname "$0")" && pwd)
FLASHGATE_BIN=${FLASHGATE_BIN:-$(pwd)/flashgate}
export FLASHGATE_BIN
export PYTHONDONTWRITEBYTECODE=1 # distcheck: the source tree is read-only
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider -rsx "$here"
