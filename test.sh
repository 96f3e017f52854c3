#!/usr/bin/env bash
# The test command: installs what the tests need (each step is skipped when what it makes
# is already there), then runs every test with `cargo test --release` and prints the
# Autobahn conformance summaries. Extra arguments go to `cargo test`:
#   ./test.sh                     everything
#   ./test.sh --test deflate      one test binary
#
# Set-up steps (Debian; apt-get runs as root, through sudo when not root):
#   chromium         Debian's /usr/bin/chromium, for tests/browser.rs
#   node             node and npm (Debian's nodejs/npm when missing); Node.js 20 or later
#   playwright-core  `npm ci` in tests/browser (the version in package-lock.json)
#   node 22          `npm ci` in tests/client_js: the npm package `node` (22), for tests/client_js.rs
#   py3 venv         target/py3 with the PY_PACKAGES below, for tests/deflate.rs,
#                    tests/tls.rs, tests/ops.rs (prometheus_client) and tests/auth.rs
#                    (PyJWT: tokens from a second implementation)
#   curl, openssl    Debian's packages, for tests/tls.rs (https, openssl s_client)
#   redis, nginx     Debian's redis-server and nginx, for tests/nginx.rs and tests/browser.rs
#                    (and the --redis tests); the tests start their own on free ports in temporary
#                    directories and never use a system service (which apt may start:
#                    port 80 and 6379 are not used by any test)
#   autobahn         tests/autobahn/setup.sh (Autobahn|Testsuite), for tests/autobahn.rs
# Exit: cargo's status, or 1 when a set-up step failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")" || exit 1
ROOT="$PWD"

step=""
done_() { echo "test.sh: $step: done"; }
skip_() { echo "test.sh: $step: skipped (present)"; }
fail_() {
  [ $# -gt 0 ] && echo "test.sh: $step: $*" >&2
  echo "test.sh: $step failed"
  exit 1
}

# Runs a command as root: directly when root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "test.sh: $step: needs root for apt-get, and sudo is not installed" >&2
    return 1
  fi
}

# Installs Debian packages; `apt-get update` runs once per test.sh run.
apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    as_root apt-get update || return 1
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

# (a) Chromium: tests/browser.rs and tests/browser/e2e.js launch /usr/bin/chromium.
step="chromium"
if [ -x /usr/bin/chromium ]; then
  skip_
else
  apt_install chromium && [ -x /usr/bin/chromium ] || fail_
  done_
fi

# (b) Node.js and npm, then playwright-core in tests/browser/node_modules (`npm ci`).
step="node"
missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -eq 0 ]; then
  installed=0
else
  apt_install "${missing[@]}" || fail_
  installed=1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null)"
if ! [ "${node_major:-0}" -ge 20 ] 2>/dev/null; then
  fail_ "Node.js 20 or later needed (playwright-core; tests/browser.rs), found $(node --version 2>&1)"
fi
if [ "$installed" -eq 1 ]; then done_; else skip_; fi

step="playwright-core"
lock="tests/browser/package-lock.json"
stamp="tests/browser/node_modules/.test.sh-lock.sha256"
want="$(sha256sum "$lock" | cut -d' ' -f1)" || fail_
if [ -d tests/browser/node_modules/playwright-core ] && [ -f "$stamp" ] \
   && [ "$(cat "$stamp")" = "$want" ]; then
  skip_
else
  # npm ci empties node_modules first, stamp included; the stamp is written only after
  # it succeeded.
  (cd tests/browser && npm ci --no-audit --no-fund) || fail_
  echo "$want" >"$stamp" || fail_
  done_
fi

# (b2) Node.js 22 for tests/client_js.rs (pushloop.js under Node with a global WebSocket):
# the npm package `node` at the version in tests/client_js/package-lock.json, which ships
# its binary (tests/client_js/node_modules/.bin/node); the machine's node stays as it is.
step="node 22"
lock="tests/client_js/package-lock.json"
stamp="tests/client_js/node_modules/.test.sh-lock.sha256"
want="$(sha256sum "$lock" | cut -d' ' -f1)" || fail_
if [ -x tests/client_js/node_modules/.bin/node ] && [ -f "$stamp" ] \
   && [ "$(cat "$stamp")" = "$want" ]; then
  skip_
else
  (cd tests/client_js && npm ci --no-audit --no-fund) || fail_
  tests/client_js/node_modules/.bin/node --version || fail_
  echo "$want" >"$stamp" || fail_
  done_
fi

# (c) target/py3 (tests/deflate.rs runs tests/deflate/client.py with
# $CARGO_MANIFEST_DIR/target/py3/bin/python, whatever CARGO_TARGET_DIR is).
step="py3 venv"
venv="$ROOT/target/py3"
# One pinned package a line (merges stay easy).
PY_PACKAGES=(
  'websockets==17.4'
  'prometheus_client==0.26.0'
  'PyJWT==2.15.1'
  'cryptography==50.0.2'
)
venv_ok() {
  "$venv/bin/python" - "${PY_PACKAGES[@]}" >/dev/null 2>&1 <<'PY'
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    assert version(name) == want, spec
PY
}
if venv_ok; then
  skip_
else
  if ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
    # No venv, or a broken one: make it afresh; Debian's python3 needs python3-venv.
    mkdir -p "$ROOT/target" || fail_
    if ! python3 -m venv --clear "$venv"; then
      if command -v python3 >/dev/null 2>&1; then
        apt_install python3-venv || fail_
      else
        apt_install python3 python3-venv || fail_
      fi
      python3 -m venv --clear "$venv" || fail_
    fi
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}" \
    || fail_
  venv_ok || fail_ "${PY_PACKAGES[*]} not all installed in $venv"
  done_
fi

# (c2) curl and openssl: tests/tls.rs runs curl over https and `openssl s_client`.
step="curl, openssl"
missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -eq 0 ]; then
  skip_
else
  apt_install "${missing[@]}" || fail_
  done_
fi

# (c3) redis-server and nginx: tests/common/redis.rs and tests/common/nginx.rs start their
# own (no root, no daemon, everything in a temporary directory). Debian installs nginx in
# /usr/sbin, which may not be on a non-root PATH: the helpers look there too.
step="redis, nginx"
missing=()
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ ${#missing[@]} -eq 0 ]; then
  skip_
else
  apt_install "${missing[@]}" || fail_
  done_
fi

# (d) Autobahn|Testsuite (setup.sh is idempotent; it says so when already installed).
step="autobahn"
log="$(mktemp)" || fail_
tests/autobahn/setup.sh 2>&1 | tee "$log" | grep -v '^autobahn setup: already installed'
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then
  rm -f "$log"
  fail_
fi
if grep -q '^autobahn setup: already installed' "$log"; then skip_; else done_; fi
rm -f "$log"

# (e) The tests.
cargo test --release "$@"
status=$?

# The conformance summaries (per-section counts, failing case ids), passed or failed.
# tests/autobahn.rs writes them under CARGO_TARGET_TMPDIR, i.e. <target dir>/tmp.
for summary in "${CARGO_TARGET_DIR:-target}"/tmp/autobahn-*/summary.txt; do
  [ -f "$summary" ] && { echo "== $summary"; grep -E "section|^[A-Z-]+:|^close|^autobahn:" "$summary"; }
done
exit $status
