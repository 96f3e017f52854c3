#!/usr/bin/env bash
# Soak/abuse test of pushloop (tools/src/bin/soak.rs; see its header for what runs and what is
# checked): 1,000 churning clients, 200 slowloris sockets, 50 slow readers of a flooded
# channel, 10 well-behaved subscribers that must get every flood message in order, and a
# stream of malformed frames and requests, all at once, on 127.0.0.1 only. It prints the
# server's RSS and the deliveries every second, then a verdict; the RSS after the soak's
# clients left must be within 10% of the RSS after the warm-up's clients left.
#
# Usage: bench/soak.sh [SECONDS]      seconds of the measured phase (default 60); the whole
#                                     run takes about SECONDS + WARMUP + 40 s after the build
#   WARMUP=15                         seconds of the warm-up phase (same abuse)
#   SERVER_CPU=0 LOAD_CPU=1           the cores to pin the server and the soak to
#   SERVER_ARGS="..."                 more server flags (e.g. "--backlog-policy drop-oldest")
#   SOAK_ARGS="..."                   more soak flags (e.g. "--slow-expect open" with such a
#                                     policy, "--flood-rate 20000", "--unique-rooms")
#   KEEP_LOGS=1                       keep the server's log (kept anyway on failure)
#   SERVER_BIN=path                   soak another build of the server (default: the one built)
#   HEAP_STATS=0                      do not read the server's glibc heap with gdb (by default
#                                     done when gdb is installed, when no client is connected:
#                                     information besides the RSS, not part of the verdict)
#
# The server runs with short timeouts so that the abuse bites within the run:
# --handshake-timeout 2 (slowloris), --ping-interval 2 --pong-timeout 2 (keepalive on every
# connection), --close-timeout 5, --max-backlog 262144 (slow readers). It is stopped with
# SIGTERM and must exit 0. The exit status is the soak's verdict (0 PASS, 1 FAIL).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SECS=${1:-60}
WARMUP=${WARMUP:-15}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SERVER_ARGS=${SERVER_ARGS:-}
SOAK_ARGS=${SOAK_ARGS:-}
KEEP_LOGS=${KEEP_LOGS:-0}
HEAP_STATS=${HEAP_STATS:-1}

HANDSHAKE_TIMEOUT=2
CLOSE_TIMEOUT=5
PING_INTERVAL=2
PONG_TIMEOUT=2
MAX_BACKLOG=262144

SERVER=${SERVER_BIN:-target/release/pushloop}
SOAK=target/release/soak
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/pushloop-soak.XXXXXX")
SLOG=$LOGS/server.log
SPID=
LPID=
FAILED=1

cleanup() {
    local pid
    for pid in $LPID $SPID; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if [[ $FAILED -eq 0 && $KEEP_LOGS != 1 ]]; then
        rm -rf "$LOGS"
    else
        echo "server log kept in $SLOG" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== build"
cargo build --release -p pushloop --bin pushloop -p pushloop-tools --bin soak 2>&1 | tail -n 2
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), RLIMIT_NOFILE $(ulimit -n)," \
    "server on core $SERVER_CPU, soak on core $LOAD_CPU; soak ${SECS} s after a ${WARMUP} s warm-up"

# shellcheck disable=SC2086 # SERVER_ARGS is a list of flags
taskset -c "$SERVER_CPU" "$SERVER" --listen 127.0.0.1:0 \
    --handshake-timeout "$HANDSHAKE_TIMEOUT" --close-timeout "$CLOSE_TIMEOUT" \
    --ping-interval "$PING_INTERVAL" --pong-timeout "$PONG_TIMEOUT" \
    --max-backlog "$MAX_BACKLOG" $SERVER_ARGS >"$SLOG" 2>&1 &
SPID=$!
ADDR=
for _ in $(seq 100); do
    ADDR=$(sed -n 's#^pushloop listening on ws://\([^/ ]*\)/ws.*#\1#p' "$SLOG" | head -n1 || true)
    [[ -n $ADDR ]] && break
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.1
done
if [[ -z $ADDR ]]; then
    echo "the server did not start:" >&2
    cat "$SLOG" >&2
    exit 1
fi
echo "== server pid $SPID on $ADDR: $SERVER --handshake-timeout $HANDSHAKE_TIMEOUT" \
    "--close-timeout $CLOSE_TIMEOUT --ping-interval $PING_INTERVAL --pong-timeout $PONG_TIMEOUT" \
    "--max-backlog $MAX_BACKLOG $SERVER_ARGS"

HEAP_ARGS=()
if [[ $HEAP_STATS == 1 ]] && command -v gdb >/dev/null; then
    HEAP_ARGS=(--heap-stats "$SLOG")
fi

START=$SECONDS
rc=0
# In the background, so that a signal to this script is handled at once.
# shellcheck disable=SC2086 # SOAK_ARGS is a list of flags
taskset -c "$LOAD_CPU" "$SOAK" --addr "$ADDR" --server-pid "$SPID" --secs "$SECS" \
    --warmup "$WARMUP" --handshake-timeout "$HANDSHAKE_TIMEOUT" \
    --close-timeout "$CLOSE_TIMEOUT" --max-backlog "$MAX_BACKLOG" \
    "${HEAP_ARGS[@]+"${HEAP_ARGS[@]}"}" $SOAK_ARGS &
LPID=$!
wait "$LPID" || rc=$?
LPID=

# Stop the server as a user would, and check that it stops cleanly.
srv_rc=0
kill -TERM "$SPID"
for _ in $(seq 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$SPID" 2>/dev/null; then
    echo "the server did not stop within 10 s of SIGTERM" >&2
    kill -KILL "$SPID" 2>/dev/null || true
fi
wait "$SPID" || srv_rc=$?
SPID=

echo "== server: exit status $srv_rc after SIGTERM; log: $(wc -l <"$SLOG") lines," \
    "$(grep -c ' WARN ' "$SLOG" || true) warnings ($(grep -c 'backlog limit; closing' "$SLOG" || true) backlog closes)," \
    "$(grep -c ' ERROR ' "$SLOG" || true) errors"
grep -v -e 'backlog limit; closing' -e ' INFO ' -e 'bytes *=' -e '^Arena ' -e '^Total (incl' -e '^max mmap' "$SLOG" |
    sort | uniq -c | sort -rn | head -n 5 || true
if grep -q -e 'panicked' -e ' ERROR ' "$SLOG"; then
    echo "the server logged errors or panics" >&2
    rc=1
fi
if [[ $srv_rc -ne 0 ]]; then
    echo "the server exited with $srv_rc" >&2
    rc=1
fi
echo "== soak.sh: $((SECONDS - START)) s after the build; exit status $rc"
FAILED=$rc
exit "$rc"
