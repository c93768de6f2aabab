#!/usr/bin/env bash
# CI: the build follows its configuration. A clean clone of this checkout is
# built once without tracepoints (LTTNG=0), then with the default; the
# second build must rebuild what the first left without them, so the LTTng
# test must run (not skip) and record every event.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d /tmp/udpweave-fresh.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
git clone -q "$PWD" "$tmp/src"
cd "$tmp/src"
make -j2 LTTNG=0 all
grep -q 'lttng=0' build/config.stamp
make -j2 all
grep -q 'lttng=1' build/config.stamp
out=$(make integration PYTEST_ARGS="-rs test_lttng.py" 2>&1) || { echo "$out"; exit 1; }
echo "$out" | tail -n 3
if echo "$out" | grep -q skipped; then
	echo "ci-fresh-build: the LTTng test skipped after LTTNG=0 then the default build" >&2
	exit 1
fi
echo "ci-fresh-build: LTTNG=0 then default: tracepoint events recorded"
