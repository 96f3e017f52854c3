#!/usr/bin/env bash
# What one more idle connection costs, apart from what a worker costs once: opens
# 2,000, 4,000, ... 16,000 idle WebSocket connections (the load generator's `idle`
# mode) into a fresh server with one worker and with two, interleaved, and fits
# VmRSS growth (open − before) = fixed + slope × connections by least squares.
# The slope is the per-connection cost; the fixed part is memory a loop touches once
# (its thread's stack and malloc arena, first table sizes, queues).
#
# A single count mixes the two: at 10,000 connections (bench/run.sh's idle scenario)
# a second worker's one-off memory is 10-20 bytes "per connection", and hash tables
# and the slab grow by doubling, so one count can sit just before or just after a
# step. The fit over eight counts smooths both.
#
# Usage: bench/idle-slope.sh      (about 2 minutes per repetition)
#   REPS=3                        repetitions of the whole sweep
#   COUNTS="2000 4000 ..."        connection counts
#   WORKERS="1 2"                 worker counts to compare (the first is the base)
#   SERVER_CPU=0 LOAD_CPU=1       the cores to pin to
#   PUSHLOOP_BIN=PATH             measure this binary instead of the one built here
# Output: one line per run ("workers connections growth_kB"), then per worker count
# the slope (bytes per connection), the fixed part (kB) and the slope's ratio to the
# first worker count's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPS=${REPS:-3}
COUNTS=${COUNTS:-"2000 4000 6000 8000 10000 12000 14000 16000"}
WORKERS=${WORKERS:-"1 2"}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
cargo build --release -p pushloop -p pushloop-tools 2>&1 | tail -n 1
SERVER=${PUSHLOOP_BIN:-target/release/pushloop}
LOADGEN=target/release/loadgen
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
WORK=$(mktemp -d)
SPID=
cleanup() {
    [[ -n $SPID ]] && kill "$SPID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# One run: $1 workers, $2 connections. Prints "workers opened growth_kB".
one() {
    local w=$1 n=$2 addr r0 r1 opened lpid
    taskset -c "$SERVER_CPU" "$SERVER" --mode echo --workers "$w" --max-connections 41000 \
        --listen 127.0.0.1:0 >"$WORK/server" 2>&1 &
    SPID=$!
    addr=
    for _ in $(seq 200); do
        addr=$(sed -n 's#^pushloop listening on ws://\([^/ ]*\)/ws.*#\1#p' "$WORK/server")
        [[ -n $addr ]] && break
        sleep 0.02
    done
    [[ -n $addr ]] || { echo "server did not start" >&2; cat "$WORK/server" >&2; exit 1; }
    r0=$(rss_kb "$SPID")
    taskset -c "$LOAD_CPU" "$LOADGEN" idle -c "$n" -t 1 --url "$addr" >"$WORK/load" 2>&1 &
    lpid=$!
    for _ in $(seq 1200); do
        grep -q '^IDLE_READY' "$WORK/load" && break
        kill -0 "$lpid" 2>/dev/null || break
        sleep 0.05
    done
    r1=$(rss_kb "$SPID")
    opened=$(sed -n 's/^IDLE_READY open=//p' "$WORK/load")
    wait "$lpid" || true
    kill "$SPID"
    wait "$SPID" 2>/dev/null || true
    SPID=
    echo "$w ${opened:-0} $((r1 - r0))"
}

echo "== $(date -u '+%F %T') UTC, $REPS reps, counts: $COUNTS; workers: $WORKERS"
for _ in $(seq "$REPS"); do
    for n in $COUNTS; do
        for w in $WORKERS; do one "$w" "$n"; done
    done
done | tee "$WORK/runs"
echo "== least-squares fit of growth = fixed + slope x connections"
awk -v order="$WORKERS" '
    $2 > 0 { w = $1; x = $2; y = $3 * 1024
             n[w]++; sx[w] += x; sy[w] += y; sxx[w] += x * x; sxy[w] += x * y }
    END {
        k = split(order, ws, " ")
        for (i = 1; i <= k; i++) {
            w = ws[i]
            if (n[w] < 2) continue
            b = (n[w] * sxy[w] - sx[w] * sy[w]) / (n[w] * sxx[w] - sx[w] * sx[w])
            a = (sy[w] - b * sx[w]) / n[w]
            if (i == 1) base = b
            printf "workers %s: %.1f bytes/conn, fixed %.0f kB, %d runs, slope ratio %.3f\n", w, b, a / 1024, n[w], b / base
        }
    }' "$WORK/runs"
