#!/usr/bin/env bash
# Benchmarks pushloop with tools/src/bin/loadgen.rs, against tools/src/bin/tcp_echo.rs as the
# ceiling. The server runs pinned to one core, the load generator to another; every
# run starts a fresh server on an ephemeral port of 127.0.0.1.
#
# Usage: bench/run.sh            (about 9.5 minutes on 2 cores)
#   RUNS=3 SECS=5                runs per scenario, measured seconds per run
#   LAT_SECS=3                   measured seconds of each latency-at-half-peak run
#   SERVER_CPU=0 LOAD_CPU=1      the cores to pin to
#   IDLE_CONNS=10000             connections of the idle scenario
#   ONLY=echo                    run only the scenarios whose name matches this bash
#                                regex (a plain word: whose name contains it), e.g.
#                                ONLY='^bcast_' (what bench/deflate.sh runs); a lat_
#                                scenario brings its peak scenario along
#   PEERS=DIR                    the uWebSockets servers (default ../shared/peers/bin);
#                                when there, echo 100x16B, echo 10x16KiB, broadcast
#                                1->100/1,000/10,000, idle and the latency scenarios each
#                                get a uws_ twin run right before them, and a "pushloop /
#                                uWebSockets" ratio table is printed
#   CHART=docs/broadcast-cpu.svg where to write the chart of server CPU per delivery
#                                against subscribers (bcast_1to{100,1000,10000}x64B_w16
#                                and their uws_ twins; tools/src/bin/chart.rs); written
#                                only when those scenarios ran; CHART= writes none
#   PUSHLOOP_BIN=PATH            measure this pushloop binary instead of the one built
#                                here (e.g. an older build, for a before/after pair)
#   KEEP_LOGS=1                  keep every log (they are kept anyway if a run failed)
#   QUIET_WAIT=0                 seconds each run may wait for the machine to be under
#                                10% busy (other processes) before it starts
#
# For each scenario it prints the median over the runs of: messages/s (deliveries/s for
# broadcast), latency percentiles, and the server's CPU time per message: utime+stime
# from /proc/PID/stat (fields 14 and 15, in clock ticks of `getconf CLK_TCK`, so
# 10 ms granularity) before and after the whole loadgen run (connects and closes
# included), divided by the messages (deliveries) it reported. `srv%` and `cli%` are
# the server's and the load generator's CPU use during the measured window only.
# The idle scenario reports the server's VmRSS before, with all connections open, and
# after they closed, and the bytes each connection costs.
#
# permessage-deflate (RFC 7692): each broadcast scenario runs twice per round, its
# `_deflate` twin with the subscribers and the publisher offering permessage-deflate
# (loadgen --deflate; the server, with its defaults, compresses every message of 64 bytes
# or more, once per broadcast), the other without the offer. 64 B messages (the default
# --deflate-threshold, so compressed) with the loadgen's a..z pattern, and 1 KiB of JSON
# text (--body json, about 2.5:1). The twins run next to each other and the order of the
# scenarios flips every round (ABBA), so a drift in the machine's speed hits both alike;
# the section "permessage-deflate" gives, per pair, the medians and the median over
# rounds of the per-round ratios (deflate / plain) of deliveries/s, server CPU per
# delivery and bytes per delivery (the WebSocket frames the subscribers received,
# headers included).
#
# The publish API: api_1to1000x64B_w16 is bcast_1to1000x64B_w16 with the publisher a
# keep-alive HTTP/1.1 connection pipelining `POST /publish/lobby` (loadgen --publish-via
# http) instead of a WebSocket client: the subscribers (bare /ws, so in `lobby`) get the
# same 66-byte text frames either way, and the ratios section gives its server CPU per
# delivery over the chat broadcast's.
#
# Latency at half the peak rate: after all rounds of the other scenarios,
# lat_1to1000x64B_half and lat_1to10000x64B_half publish at a fixed --rate (RUNS runs of
# LAT_SECS s each): half the median peak of bcast_1to1000x64B_w16 / bcast_1to10000x64B_w16
# in this run (messages/s = deliveries/s / subscribers). Their uws_ twins run at half
# uWebSockets' own peak (its uws_bcast_ twin), and uws_lat_..._plrate at pushloop's
# half-peak rate, so both servers are also compared at the same absolute rate. A table
# gives rate, p50, p99 and p99.9 publish-to-delivery latency, server CPU use and CPU per
# delivery for both side by side. At a fixed rate each message fans out alone (one send
# per subscriber per message, no batching), so it costs more per delivery than at the
# windowed peak: half that peak can load the server far more than half.
#
# Workers (--workers 2): echo_100x16B_w1_2w, bcast_1to1000x64B_w16_2w and
# idle_IDLE_CONNS_2w are their one-worker scenarios with the server started with
# `--workers 2`, pinned to WORKERS_CPUS (default: SERVER_CPU, so both workers share the
# server's core and the load generator keeps its own: server CPU per message then
# measures what the split costs, not the load generator's competition for a core; with
# WORKERS_CPUS=0,1 the workers get both cores, which the load generator shares, for the
# deliveries/s). The section "workers" gives, per pair, the ratio (2 workers / 1 worker)
# of server CPU per message (idle: bytes per connection), and the rates of both.
# WORKERS=0 leaves them out.
#
# Exits non-zero if any run failed verification (see the loadgen's RESULT line).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

RUNS=${RUNS:-3}
SECS=${SECS:-5}
LAT_SECS=${LAT_SECS:-3}
WORKERS=${WORKERS:-2}
CHART=${CHART-docs/broadcast-cpu.svg}
SERVER_CPU=${SERVER_CPU:-0}
WORKERS_CPUS=${WORKERS_CPUS:-$SERVER_CPU}
LOAD_CPU=${LOAD_CPU:-1}
IDLE_CONNS=${IDLE_CONNS:-10000}
ONLY=${ONLY:-}
KEEP_LOGS=${KEEP_LOGS:-0}
QUIET_WAIT=${QUIET_WAIT:-0}

REL=target/release
SERVER=${PUSHLOOP_BIN:-$REL/pushloop}
TCP_ECHO=$REL/tcp_echo
LOADGEN=$REL/loadgen
CHART_BIN=$REL/chart
# The uWebSockets servers to compare with (../shared/peers/README.md); their scenarios
# run only when they are there.
PEERS=${PEERS:-$ROOT/../shared/peers/bin}
CLK_TCK=$(getconf CLK_TCK)
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/pushloop-bench.XXXXXX")
RESULTS=$LOGS/results.tsv
FAILS=0
PIDS=()
RUN_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    if [[ $FAILS -eq 0 && $KEEP_LOGS != 1 ]]; then
        rm -rf "$LOGS"
    else
        echo "logs kept in $LOGS" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_pid() {
    local keep=() pid
    for pid in "${PIDS[@]}"; do [[ $pid != "$1" ]] && keep+=("$pid"); done
    PIDS=("${keep[@]+"${keep[@]}"}")
}

# Stops a process we started: SIGTERM, then SIGKILL after 5 s.
stop_pid() {
    local pid=$1
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

# utime + stime of a process, in clock ticks.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

# VmRSS of a process, in kB.
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# Percent of all cores busy over half a second (while nothing of ours is working).
machine_busy() {
    local a b
    a=$(awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6}' /proc/stat)
    sleep 0.5
    b=$(awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6}' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {
        split(a, x, " "); split(b, y, " "); t = y[1] - x[1]; i = y[2] - x[2]
        printf "%.0f", (t > 0 ? 100 * (t - i) / t : 0) }'
}

# Value of key $1 in RESULT line $2.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# A free TCP port of 127.0.0.1 (for the uWebSockets peers, which take a port, not 0).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts a server: $1 = ws-echo | ws-chat | tcp | uws-echo | uws-broadcast, further
# arguments go to pushloop. Sets SPID and ADDR.
start_server() {
    local kind=$1 log=$LOGS/server.$2.log
    shift 2
    : >"$log"
    case $kind in
        ws-echo) taskset -c "$SERVER_CPU" "$SERVER" --mode echo --listen 127.0.0.1:0 "$@" >"$log" 2>&1 & ;;
        ws-chat) taskset -c "$SERVER_CPU" "$SERVER" --mode chat --listen 127.0.0.1:0 "$@" >"$log" 2>&1 & ;;
        ws-echo-workers)
            taskset -c "$WORKERS_CPUS" "$SERVER" --mode echo --workers "$WORKERS" \
                --listen 127.0.0.1:0 "$@" >"$log" 2>&1 &
            ;;
        ws-chat-workers)
            taskset -c "$WORKERS_CPUS" "$SERVER" --mode chat --workers "$WORKERS" \
                --listen 127.0.0.1:0 "$@" >"$log" 2>&1 &
            ;;
        tcp) taskset -c "$SERVER_CPU" "$TCP_ECHO" 127.0.0.1:0 >"$log" 2>&1 & ;;
        uws-*)
            local port
            port=$(free_port)
            taskset -c "$SERVER_CPU" "$PEERS/$kind" "$port" >"$log" 2>&1 &
            ;;
    esac
    SPID=$!
    PIDS+=("$SPID")
    ADDR=
    for _ in $(seq 100); do
        ADDR=$(sed -n -e 's#^pushloop listening on ws://\([^/ ]*\)/ws.*#\1#p' \
            -e 's#^tcp_echo listening on \([^ ]*\)$#\1#p' \
            -e 's#^Listening on port \([0-9]*\).*#127.0.0.1:\1#p' "$log" | head -n1 || true)
        [[ -n $ADDR ]] && return 0
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.1
    done
    echo "server ($kind) did not start:" >&2
    cat "$log" >&2
    exit 1
}

# One run: $1 scenario, $2 run number, $3 server kind, then the loadgen arguments.
run_once() {
    local name=$1 run=$2 kind=$3
    shift 3
    local tag=$name.$run out=$LOGS/$name.$run.out err=$LOGS/$name.$run.err
    local mode=$1 busy rc=0 rss0 rss1=0 rss2 t0 t1 extra=()
    busy=$(machine_busy)
    local deadline=$((SECONDS + QUIET_WAIT))
    while [[ $busy -gt 10 && $SECONDS -lt $deadline ]]; do
        busy=$(machine_busy)
    done
    # Room for every scenario's connections (idle, 10,000 subscribers) over the default.
    extra=(--max-connections $((IDLE_CONNS > 10000 ? IDLE_CONNS + 1000 : 11000)))
    start_server "$kind" "$tag" "${extra[@]+"${extra[@]}"}"
    rss0=$(rss_kb "$SPID")
    t0=$(cpu_ticks "$SPID")
    # In the background, so that a signal to this script is handled at once.
    taskset -c "$LOAD_CPU" "$LOADGEN" "$@" --url "$ADDR" --server-pid "$SPID" >"$out" 2>"$err" &
    local lpid=$!
    PIDS+=("$lpid")
    if [[ $mode == idle ]]; then
        for _ in $(seq 1200); do
            grep -q '^IDLE_READY' "$out" && break
            kill -0 "$lpid" 2>/dev/null || break
            sleep 0.05
        done
        rss1=$(rss_kb "$SPID")
    fi
    wait "$lpid" || rc=$?
    forget_pid "$lpid"
    t1=$(cpu_ticks "$SPID")
    rss2=$(rss_kb "$SPID")
    stop_server_now
    local result msgs cpu_us per
    result=$(grep '^RESULT' "$out" | tail -n1 || true)
    case $mode in
        broadcast)
            # Deliveries include the publishers' own copies when the server sends them
            # (uWebSockets' publish to a topic the sender is in).
            local delivered own
            delivered=$(field deliveries "$result")
            own=$(field own "$result")
            msgs=$((${delivered:-0} + ${own:-0}))
            per=$(field deliveries_per_s "$result")
            ;;
        idle) msgs=$(field open "$result"); per=0 ;;
        *) msgs=$(field msgs "$result"); per=$(field msgs_per_s "$result") ;;
    esac
    cpu_us=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="${msgs:-0}" \
        'BEGIN { printf "%.3f", (n > 0 ? d / hz * 1e6 / n : 0) }')
    if [[ -z $result || $rc -ne 0 ]]; then
        FAILS=$((FAILS + 1))
        echo "  FAILED: $name run $run (exit $rc); last lines of its output:" >&2
        tail -n 15 "$err" "$out" >&2 || true
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$name" "$run" "$rc" "${per:-0}" "$(field p50_us "$result")" "$(field p99_us "$result")" \
        "$(field p999_us "$result")" "$cpu_us" "$(field server_cpu_pct "$result")" \
        "$(field client_cpu_pct "$result")" "$rss0" "$rss1" "$rss2" "${msgs:-0}" \
        "$(field errors "$result")" "$(field lost "$result")/$(field dup "$result")/$(field reorder "$result")" \
        "$busy" "$(field wire_bytes_per_msg "$result")" "$(field deflated_pct "$result")" \
        "$(field rate "$result")" >>"$RESULTS"
    if [[ $mode == idle ]]; then
        printf '  %-22s run %s: open %s, rss %s -> %s -> %s kB, %s us cpu/conn, errors %s, machine busy %s%%\n' \
            "$name" "$run" "$msgs" "$rss0" "$rss1" "$rss2" "$cpu_us" "$(field errors "$result")" "$busy"
    else
        local wire=
        if [[ $mode == broadcast ]]; then
            wire=$(printf '  %s B/msg (%s%% deflated)' "$(field wire_bytes_per_msg "$result")" \
                "$(field deflated_pct "$result")")
        fi
        printf '  %-22s run %s: %10s/s  p50 %8s  p99 %8s  p99.9 %8s us  %7s us cpu/msg  srv %3s%% cli %3s%%  err %s lost/dup/reorder %s%s  busy %s%%\n' \
            "$name" "$run" "${per:-?}" "$(field p50_us "$result")" "$(field p99_us "$result")" \
            "$(field p999_us "$result")" "$cpu_us" "$(field server_cpu_pct "$result")" \
            "$(field client_cpu_pct "$result")" "$(field errors "$result")" \
            "$(field lost "$result")/$(field dup "$result")/$(field reorder "$result")" "$wire" "$busy"
    fi
}

stop_server_now() { stop_pid "$SPID"; }

echo "== build"
cargo build --release -p pushloop -p pushloop-tools 2>&1 | tail -n 2
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), RLIMIT_NOFILE $(ulimit -n)," \
    "server on core $SERVER_CPU, load on core $LOAD_CPU, $RUNS runs x ${SECS}s, CLK_TCK $CLK_TCK"
: >"$RESULTS"

# name | server kind | loadgen arguments (-t is added). The runs go round-robin over the
# scenarios, forwards in odd rounds and backwards in even ones, so that a drift in the
# machine's speed hits every scenario alike. A broadcast scenario NAME_deflate is the
# twin of NAME (see the ratios at the end): keep the two next to each other.
SCENARIOS=(
    "echo_100x16B_w1|ws-echo|echo -c 100 -s 16 -w 1"
    "tcp_100x16B_w1|tcp|tcp-echo -c 100 -s 16 -w 1"
    "echo_100x16B_w8|ws-echo|echo -c 100 -s 16 -w 8"
    "tcp_100x16B_w8|tcp|tcp-echo -c 100 -s 16 -w 8"
    "echo_10x16KiB_w1|ws-echo|echo -c 10 -s 16384 -w 1"
    "bcast_1to100x64B_w16|ws-chat|broadcast -c 100 -p 1 -s 64 -w 16"
    "bcast_1to10000x64B_w16|ws-chat|broadcast -c 10000 -p 1 -s 64 -w 16"
    "api_1to1000x64B_w16|ws-chat|broadcast -c 1000 -p 1 -s 64 -w 16 --publish-via http"
    "bcast_1to1000x64B_w16|ws-chat|broadcast -c 1000 -p 1 -s 64 -w 16"
    "bcast_1to1000x64B_w16_deflate|ws-chat|broadcast -c 1000 -p 1 -s 64 -w 16 --deflate"
    "bcast_1to1000x1KiBjson_w16|ws-chat|broadcast -c 1000 -p 1 -s 1024 -w 16 --body json"
    "bcast_1to1000x1KiBjson_w16_deflate|ws-chat|broadcast -c 1000 -p 1 -s 1024 -w 16 --body json --deflate"
    "idle_${IDLE_CONNS}|ws-echo|idle -c $IDLE_CONNS"
)
# The same loads on several workers, each right after its one-worker scenario.
if [[ $WORKERS -gt 1 ]]; then
    with_workers=()
    for spec in "${SCENARIOS[@]}"; do
        with_workers+=("$spec")
        IFS='|' read -r name kind args <<<"$spec"
        case $name in
            echo_100x16B_w1 | bcast_1to1000x64B_w16 | idle_*)
                with_workers+=("${name}_${WORKERS}w|$kind-workers|$args")
                ;;
        esac
    done
    SCENARIOS=("${with_workers[@]}")
fi
# Latency at half the peak rate, run after all rounds of the above: name | server kind |
# the scenario whose median peak sets the rate | loadgen arguments (--rate and -t are
# added). Rate: half the peak's deliveries/s over its subscribers (-c).
LAT_SCENARIOS=(
    "lat_1to1000x64B_half|ws-chat|bcast_1to1000x64B_w16|broadcast -c 1000 -p 1 -s 64"
    "lat_1to10000x64B_half|ws-chat|bcast_1to10000x64B_w16|broadcast -c 10000 -p 1 -s 64"
)
# Each pushloop scenario with a uWebSockets twin (same load, the peer server) gets it
# right before itself, so the two alternate within every round (and a _deflate twin
# stays right after its plain scenario). A latency twin runs at uWebSockets' own half
# peak (uws_lat_*), and once more at pushloop's (uws_lat_*_plrate: same absolute rate).
if [[ -x $PEERS/uws-echo && -x $PEERS/uws-broadcast ]]; then
    with_peers=()
    for spec in "${SCENARIOS[@]}"; do
        IFS='|' read -r name kind args <<<"$spec"
        case $name in
            *_[0-9]w) ;;
            echo_100x16B_w1 | echo_10x16KiB_w1 | idle_*) with_peers+=("uws_$name|uws-echo|$args") ;;
            bcast_1to*x64B_w16) with_peers+=("uws_$name|uws-broadcast|$args --self-delivery") ;;
        esac
        with_peers+=("$spec")
    done
    SCENARIOS=("${with_peers[@]}")
    with_peers=()
    for spec in "${LAT_SCENARIOS[@]}"; do
        IFS='|' read -r name kind peak args <<<"$spec"
        with_peers+=("uws_$name|uws-broadcast|uws_$peak|$args --self-delivery")
        with_peers+=("uws_${name}_plrate|uws-broadcast|$peak|$args --self-delivery")
        with_peers+=("$spec")
    done
    LAT_SCENARIOS=("${with_peers[@]}")
else
    echo "== no uWebSockets peers in $PEERS: pushloop only"
fi

# Whether scenario $1 runs: its name matches ONLY, or it is the peak of a latency
# scenario that does.
selected() {
    [[ -z $ONLY || $1 =~ $ONLY ]] && return 0
    local spec lname lkind peak largs
    for spec in "${LAT_SCENARIOS[@]}"; do
        IFS='|' read -r lname lkind peak largs <<<"$spec"
        [[ $peak == "$1" && $lname =~ $ONLY ]] && return 0
    done
    return 1
}

# The median of column $2 of scenario $1's successful runs so far (empty if none).
median_of() {
    awk -F'\t' -v s="$1" -v c="$2" '$1 == s && $3 == 0 && $c != "" { v[++n] = $c + 0 }
        END {
            if (n == 0) exit
            for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
            print (n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2)
        }' "$RESULTS"
}

# Runs the scenarios of array $1 for RUNS rounds, forwards in odd rounds and backwards
# in even ones; $2: "lat" for latency scenarios (their rate from their peak's median).
run_rounds() {
    local -n specs=$1
    local phase=$2 run i spec name kind peak args subs peak_dps rate
    local order=() any=0
    for spec in "${specs[@]}"; do
        selected "${spec%%|*}" && any=1
    done
    [[ $any == 1 ]] || return 0
    for run in $(seq "$RUNS"); do
        echo "== ${phase:+latency }round $run of $RUNS"
        order=("${specs[@]}")
        if ((run % 2 == 0)); then
            order=()
            for ((i = ${#specs[@]} - 1; i >= 0; i--)); do order+=("${specs[i]}"); done
        fi
        for spec in "${order[@]}"; do
            if [[ $phase == lat ]]; then
                IFS='|' read -r name kind peak args <<<"$spec"
            else
                IFS='|' read -r name kind args <<<"$spec"
            fi
            selected "$name" || continue
            read -ra argv <<<"$args"
            if [[ $phase != lat ]]; then
                run_once "$name" "$run" "$kind" "${argv[@]}" -t "$SECS"
                continue
            fi
            subs=$(sed -n 's/.*-c \([0-9]*\).*/\1/p' <<<"$args")
            peak_dps=$(median_of "$peak" 4)
            rate=$(awk -v d="${peak_dps:-0}" -v n="$subs" 'BEGIN { if (d > 0 && n > 0) printf "%.0f", d / n / 2 }')
            if [[ -z $rate || $rate -lt 1 ]]; then
                echo "  $name: skipped, no successful run of $peak to take the peak from" >&2
                continue
            fi
            run_once "$name" "$run" "$kind" "${argv[@]}" --rate "$rate" -t "$LAT_SECS"
        done
    done
}

run_rounds SCENARIOS ""
run_rounds LAT_SCENARIOS lat

# Medians per scenario.
echo
echo "== medians over $RUNS runs"
awk -F'\t' '
    function median(list,   n, a, i, j, t) {
        n = split(list, a, " ")
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
        if (n == 0) return "-"
        return (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2)
    }
    {
        if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 }
        for (c = 3; c <= 20; c++) col[$1, c] = col[$1, c] " " $c
        # Per round, for the ratios of twins.
        per_run[$1, $2] = $4; cpu_run[$1, $2] = $8; wire_run[$1, $2] = $18; if ($2 > nrounds) nrounds = $2
        if ($3 != 0) failed[$1]++
        errs[$1] += $15
        split($16, ldr, "/"); lost[$1] += ldr[1]; dup[$1] += ldr[2]; reord[$1] += ldr[3]
    }
    END {
        printf "%-24s %12s %9s %9s %9s %12s %5s %5s %6s %s\n", "scenario", "msgs/s", "p50 us", "p99 us", "p99.9 us", "cpu us/msg", "srv%", "cli%", "failed", "errors lost/dup/reorder (all runs)"
        for (i = 1; i <= k; i++) {
            s = order[i]
            if (s ~ /(^|_)idle_/) continue
            printf "%-24s %12.0f %9s %9s %9s %12s %5s %5s %6d %d %d/%d/%d\n", s, median(col[s, 4]), median(col[s, 5]), median(col[s, 6]), median(col[s, 7]), median(col[s, 8]), median(col[s, 9]), median(col[s, 10]), failed[s], errs[s], lost[s], dup[s], reord[s]
            rate[s] = median(col[s, 4]); cpu[s] = median(col[s, 8])
        }
        for (i = 1; i <= k; i++) {
            s = order[i]
            if (s !~ /(^|_)idle_/) continue
            r0 = median(col[s, 11]); r1 = median(col[s, 12]); r2 = median(col[s, 13]); n = median(col[s, 14])
            idle_bytes[s] = (n > 0 ? (r1 - r0) * 1024 / n : 0)
            printf "%-24s open %s; server VmRSS %s kB before, %s kB open, %s kB after close: %.0f bytes/conn; cpu %s us/conn (open+close); failed %d; errors %d\n", s, n, r0, r1, r2, idle_bytes[s], median(col[s, 8]), failed[s], errs[s]
        }
        print "(broadcast: msgs/s are deliveries/s, cpu per delivery; srv%/cli%: CPU use of server/loadgen in the window)"
        print ""
        print "== ratios (pushloop / tcp_echo, medians)"
        for (w = 1; w <= 8; w += 7) {
            e = "echo_100x16B_w" w; t = "tcp_100x16B_w" w
            if ((e in rate) && (t in rate) && rate[t] > 0 && cpu[t] > 0)
                printf "100 conns x 16 B, window %d: throughput %.2f, server cpu/msg %.2f\n", w, rate[e] / rate[t], cpu[e] / cpu[t]
        }
        b = "bcast_1to1000x64B_w16"
        if ((b in rate) && ("echo_100x16B_w8" in rate) && cpu["echo_100x16B_w8"] > 0)
            printf "broadcast delivery vs pipelined echo: server cpu per delivery / per echo %.2f\n", cpu[b] / cpu["echo_100x16B_w8"]
        a = "api_1to1000x64B_w16"
        if ((a in rate) && (b in rate) && cpu[b] > 0 && rate[b] > 0)
            printf "publish API / chat broadcast: server cpu per delivery %.2f (%.3f / %.3f us), deliveries/s %.2f\n", cpu[a] / cpu[b], cpu[a], cpu[b], rate[a] / rate[b]
        header = 0
        for (i = 1; i <= k; i++) {
            w = order[i]
            if (w !~ /_[0-9]w$/) continue
            one = w; sub(/_[0-9]w$/, "", one)
            if (!(one in seen)) continue
            if (!header) {
                print ""
                print "== workers: several / one (server CPU per message or delivery; idle: bytes per connection)"
                header = 1
            }
            if (w ~ /(^|_)idle_/) {
                if (idle_bytes[one] > 0) printf "%-28s %6.0f B/conn   one worker %6.0f B/conn   ratio %.2f\n", w, idle_bytes[w], idle_bytes[one], idle_bytes[w] / idle_bytes[one]
            } else if (cpu[one] > 0 && rate[one] > 0) {
                printf "%-28s %8.3f us (%10.0f/s)   one worker %8.3f us (%10.0f/s)   ratio %.2f, rate %.2f\n", w, cpu[w], rate[w], cpu[one], rate[one], cpu[w] / cpu[one], rate[w] / rate[one]
            }
        }
        header = 0
        for (i = 1; i <= k; i++) {
            u = order[i]
            if (u !~ /^uws_/) continue
            p = substr(u, 5)
            if (!(p in seen)) continue
            if (!header) {
                print ""
                print "== pushloop / uWebSockets, same run (server CPU per message or delivery; idle: bytes per connection)"
                header = 1
            }
            if (p ~ /(^|_)idle_/) {
                bp = idle_bytes[p]; bu = idle_bytes[u]
                if (bu > 0) printf "%-24s pushloop %6.0f B/conn   uWebSockets %6.0f B/conn   ratio %.2f\n", p, bp, bu, bp / bu
            } else if (cpu[u] > 0) {
                printf "%-24s pushloop %8.3f us        uWebSockets %8.3f us        ratio %.2f\n", p, cpu[p], cpu[u], cpu[p] / cpu[u]
            }
        }
        header = 0
        for (i = 1; i <= k; i++) {
            p = order[i]; d = p "_deflate"
            if (!(d in seen)) continue
            if (!header) {
                print ""
                print "== permessage-deflate: twin / plain (medians over runs; ratio: median of the per-round ratios)"
                printf "%-36s %12s %10s %10s %9s %5s %5s %s\n", "scenario", "deliveries/s", "cpu us/dlv", "wire B/dlv", "deflated", "srv%", "cli%", "errors lost/dup/reorder (all runs)"
                header = 1
            }
            for (j = 0; j < 2; j++) {
                s = (j ? d : p)
                printf "%-36s %12.0f %10s %10s %8s%% %5s %5s %d %d/%d/%d\n", s, median(col[s, 4]), median(col[s, 8]), median(col[s, 18]), median(col[s, 19]), median(col[s, 9]), median(col[s, 10]), errs[s], lost[s], dup[s], reord[s]
            }
            rr = ""; rc = ""; rw = ""
            for (r = 1; r <= nrounds; r++) {
                if (((p, r) in per_run) && ((d, r) in per_run) && per_run[p, r] > 0 && cpu_run[p, r] > 0 && wire_run[p, r] > 0) {
                    rr = rr " " sprintf("%.3f", per_run[d, r] / per_run[p, r])
                    rc = rc " " sprintf("%.3f", cpu_run[d, r] / cpu_run[p, r])
                    rw = rw " " sprintf("%.3f", wire_run[d, r] / wire_run[p, r])
                }
            }
            if (rr != "")
                printf "  ratio deflate/plain: deliveries/s x%.3f, server cpu/delivery x%.3f, wire bytes/delivery x%.3f (per round: deliveries/s%s; cpu%s)\n", median(rr), median(rc), median(rw), rr, rc
        }
        header = 0
        for (i = 1; i <= k; i++) {
            p = order[i]
            if (p !~ /^lat_/) continue
            if (!header) {
                print ""
                print "== publish-to-delivery latency at half the peak rate (medians over runs; rate: messages/s published;"
                print "   srv%: server CPU use; us/dlv: server CPU per delivery)"
                printf "%-26s | %-50s | %s\n", "", "pushloop (half its peak)", "uWebSockets (half its peak)"
                printf "%-26s | %6s %9s %9s %9s %4s %7s | %6s %9s %9s %9s %4s %7s\n", "scenario", "rate", "p50 us", "p99 us", "p99.9 us", "srv%", "us/dlv", "rate", "p50 us", "p99 us", "p99.9 us", "srv%", "us/dlv"
                header = 1
            }
            for (j = 0; j < 2; j++) {
                u = (j ? "uws_" p "_plrate" : "uws_" p)
                if (j && !(u in seen)) continue
                pl = sprintf("%6.0f %9s %9s %9s %4s %7s", median(col[p, 20]), median(col[p, 5]), median(col[p, 6]), median(col[p, 7]), median(col[p, 9]), median(col[p, 8]))
                uw = ((u in seen) ? sprintf("%6.0f %9s %9s %9s %4s %7s", median(col[u, 20]), median(col[u, 5]), median(col[u, 6]), median(col[u, 7]), median(col[u, 9]), median(col[u, 8])) : "(not run)")
                printf "%-26s | %s | %s\n", (j ? "  at pushloop'"'"'s rate" : p), pl, uw
            }
        }
    }' "$RESULTS"

# The chart: server CPU per delivery against subscribers, pushloop and uWebSockets.
if [[ -n $CHART ]]; then
    points=() upoints=()
    for n in 100 1000 10000; do
        v=$(median_of "bcast_1to${n}x64B_w16" 8)
        [[ -n $v ]] && points+=("$n:$(awk -v v="$v" 'BEGIN { printf "%.1f", v * 1000 }')")
        v=$(median_of "uws_bcast_1to${n}x64B_w16" 8)
        [[ -n $v ]] && upoints+=("$n:$(awk -v v="$v" 'BEGIN { printf "%.1f", v * 1000 }')")
    done
    if [[ ${#points[@]} -ge 2 ]]; then
        series=(--series "pushloop=$(IFS=,; echo "${points[*]}")")
        [[ ${#upoints[@]} -ge 1 ]] && series+=(--series "uWebSockets=$(IFS=,; echo "${upoints[*]}")")
        commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
        if ! git -C "$ROOT" diff --quiet HEAD -- . ':(exclude)docs/broadcast-cpu.svg' 2>/dev/null; then
            commit="$commit (modified)"
        fi
        if "$CHART_BIN" --out "$CHART" --title "Broadcast: server CPU per delivery (lower is better)" \
            --subtitle "1 publisher, 64-byte messages, 16 in flight; server pinned to one core; medians of $RUNS run(s) x ${SECS} s" \
            --subtitle "bench/run.sh, $RUN_DATE, commit $commit, $(nproc) cores" \
            --x-label "subscribers (log scale)" --y-label "server CPU (user + system) per delivery, ns" \
            --unit ns "${series[@]}"; then
            echo
            echo "== chart: $CHART"
        else
            echo "chart: could not write $CHART" >&2
        fi
    fi
fi

busiest=$(awk -F'\t' '$17 > m { m = $17 } END { print m + 0 }' "$RESULTS")
if [[ $busiest -gt 15 ]]; then
    echo "warning: the machine was up to ${busiest}% busy before some runs (other processes): figures are noisy"
fi
if [[ $FAILS -gt 0 ]]; then
    echo "$FAILS run(s) FAILED"
    exit 1
fi
echo "all runs passed verification"
