#!/usr/bin/env bash
# The whole gate, as CI runs it: install what the tests need, then
# formatting, clippy with warnings as errors, and every test (unit,
# in-process integration, and end-to-end against the real binary with real
# containers). Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --tests

# Independent CF clients for the conformance tests, in a venv of their own:
# cloudfoundry-client (v3 API), dropsonde (CF's v1 log envelopes) and
# websocket-client (to read the traffic controller's websockets),
# openbrokerapi (real Open Service Broker brokers for the broker tests).
py=target/test-python
if [ ! -x "$py/bin/python" ] || ! "$py/bin/python" -c 'import cloudfoundry_client, dropsonde, websocket, openbrokerapi' 2>/dev/null; then
  /usr/bin/python3 -m venv "$py"
  "$py/bin/pip" install --quiet --disable-pip-version-check cloudfoundry-client dropsonde websocket-client openbrokerapi
fi
export INGOT_TEST_PYTHON="$PWD/$py/bin/python"
# Wheels an app in the end-to-end test vendors (a pure-Python PostgreSQL
# driver), fetched now so that staging never needs a package index.
wheels=target/test-wheels
if ! ls "$wheels"/pg8000-*.whl >/dev/null 2>&1; then
  "$py/bin/pip" download --quiet --disable-pip-version-check --only-binary=:all: --dest "$wheels" pg8000
fi
export INGOT_TEST_WHEELS="$PWD/$wheels"

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace -- --test-threads=4
