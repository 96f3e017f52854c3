#!/usr/bin/env bash
# TLS benchmarks: pushloop serving TLS itself (--tls-cert/--tls-key; rustls with ring)
# against uWebSockets' SSLApp (../shared/peers/bin/uws-echo-tls, OpenSSL 3), in the same
# run, interleaved (uWS, pushloop, uWS, pushloop, ...), the server pinned to one core and
# the client to the other; every run starts a fresh server on a free port of 127.0.0.1.
#
# Usage: bench/tls.sh             (about 4 minutes on 2 cores with the defaults)
#   RUNS=3 SECS=5                 runs per scenario, measured seconds per run
#   IDLE_CONNS=10000              connections of the idle scenario
#   SERVER_CPU=0 LOAD_CPU=1       the cores to pin to
#   PEERS=DIR                     the uWebSockets servers (default ../shared/peers/bin)
#   KEEP_LOGS=1                   keep every log (kept anyway if a run failed)
# A smoke run that only checks the script works: RUNS=1 SECS=1 IDLE_CONNS=300 bench/tls.sh
#
# Scenarios (each for pushloop and for uWS):
#   echo_100x16B, echo_10x16KiB   loadgen echo --tls-ca none (TLS 1.3, AES-128-GCM as both
#                                 servers prefer it): server CPU per message
#   hs_ecdsa_p256, hs_rsa2048     tools/src/bin/tls_handshakes.rs, 20 at a time, full
#                                 handshakes (no resumption): handshakes/s and server CPU
#                                 per handshake, with an ECDSA P-256 or RSA 2048 certificate
#   idle                          loadgen idle --tls-ca none -c IDLE_CONNS: the server's
#                                 VmRSS with all open minus before, per connection
# Server CPU is utime + stime from /proc/PID/stat (fields 14 and 15) over the whole client
# run, divided by what it did. Certificates are made with the openssl command in the logs
# folder. The table at the end gives medians and pushloop / uWS ratios.
#
# Exits non-zero if any run failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

RUNS=${RUNS:-3}
SECS=${SECS:-5}
IDLE_CONNS=${IDLE_CONNS:-10000}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
KEEP_LOGS=${KEEP_LOGS:-0}
PEERS=${PEERS:-$ROOT/../shared/peers/bin}
REL=target/release
SERVER=$REL/pushloop
LOADGEN=$REL/loadgen
HANDSHAKES=$REL/tls_handshakes
CLK_TCK=$(getconf CLK_TCK)
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/pushloop-tls-bench.XXXXXX")
RESULTS=$LOGS/results.tsv
FAILS=0
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ $FAILS -eq 0 && $KEEP_LOGS != 1 ]]; then rm -rf "$LOGS"; else echo "logs kept in $LOGS" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Stops a process we started (by its pid): SIGTERM, then SIGKILL after 5 s.
stop_pid() {
    local pid=$1 keep=() p
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do [[ $p != "$pid" ]] && keep+=("$p"); done
    PIDS=("${keep[@]+"${keep[@]}"}")
}

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts $1 (pushloop | uws) with certificate $2 (ecdsa | rsa). Sets SPID and ADDR.
start_server() {
    local kind=$1 cert=$LOGS/$2.crt key=$LOGS/$2.key log=$LOGS/server.$1.$3.log port
    case $kind in
        pushloop)
            taskset -c "$SERVER_CPU" "$SERVER" --mode echo --listen 127.0.0.1:0 \
                --max-connections $((IDLE_CONNS + 1000)) --tls-cert "$cert" --tls-key "$key" >"$log" 2>&1 &
            ;;
        uws)
            port=$(free_port)
            taskset -c "$SERVER_CPU" "$PEERS/uws-echo-tls" "$port" "$cert" "$key" >"$log" 2>&1 &
            ;;
    esac
    SPID=$!
    PIDS+=("$SPID")
    ADDR=
    for _ in $(seq 100); do
        ADDR=$(sed -n -e 's#^pushloop listening on wss://\([^/ ]*\)/ws.*#\1#p' \
            -e 's#^Listening on port \([0-9]*\).*#127.0.0.1:\1#p' "$log" | head -n1 || true)
        [[ -n $ADDR ]] && return 0
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.1
    done
    echo "server ($kind) did not start:" >&2
    cat "$log" >&2
    exit 1
}

# One run: $1 scenario, $2 server kind, $3 certificate, $4 run, then the client command.
run_once() {
    local name=$1 kind=$2 cert=$3 run=$4
    shift 4
    local out=$LOGS/$name.$kind.$run.out rc=0 t0 t1 rss0 rss1=0 result done per cpu_us
    start_server "$kind" "$cert" "$name.$run"
    rss0=$(rss_kb "$SPID")
    t0=$(cpu_ticks "$SPID")
    taskset -c "$LOAD_CPU" "$@" --url "$ADDR" >"$out" 2>&1 &
    local cpid=$!
    PIDS+=("$cpid")
    if [[ $name == idle ]]; then
        for _ in $(seq 1200); do
            grep -q '^IDLE_READY' "$out" && break
            kill -0 "$cpid" 2>/dev/null || break
            sleep 0.05
        done
        rss1=$(rss_kb "$SPID")
    fi
    wait "$cpid" || rc=$?
    stop_pid "$cpid"
    t1=$(cpu_ticks "$SPID")
    stop_pid "$SPID"
    result=$(grep '^RESULT' "$out" | tail -n1 || true)
    case $name in
        hs_*) done=$(field handshakes "$result"); per=$(field per_s "$result") ;;
        idle) done=$(field open "$result"); per=0 ;;
        *) done=$(field msgs "$result"); per=$(field msgs_per_s "$result") ;;
    esac
    if [[ -z $result || $rc -ne 0 || $(field errors "$result") != 0 ]]; then
        FAILS=$((FAILS + 1))
        echo "  FAILED: $name $kind run $run (exit $rc):" >&2
        tail -n 10 "$out" >&2 || true
    fi
    cpu_us=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="${done:-0}" \
        'BEGIN { printf "%.3f", (n > 0 ? d / hz * 1e6 / n : 0) }')
    local bytes
    bytes=$(awk -v a="$rss0" -v b="$rss1" -v n="${done:-0}" \
        'BEGIN { printf "%.0f", (n > 0 && b > 0 ? (b - a) * 1024 / n : 0) }')
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$kind" "${per:-0}" "$cpu_us" "$bytes" >>"$RESULTS"
    printf '  %-14s %-8s run %s: %9s/s  %9s us cpu/op  %6s B/conn (idle)  errors %s\n' \
        "$name" "$kind" "$run" "${per:-?}" "$cpu_us" "$bytes" "$(field errors "$result")"
}

echo "== build"
cargo build --release -p pushloop -p pushloop-tools 2>&1 | tail -n 2
[[ -x $PEERS/uws-echo-tls ]] || { echo "no $PEERS/uws-echo-tls" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), server on core" \
    "$SERVER_CPU, client on core $LOAD_CPU, $RUNS runs x ${SECS}s, $(date -u '+%Y-%m-%d %H:%M UTC')"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -keyout "$LOGS/ecdsa.key" -out "$LOGS/ecdsa.crt" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -keyout "$LOGS/rsa.key" -out "$LOGS/rsa.crt" 2>/dev/null

scenarios=(
    "echo_100x16B|ecdsa|$LOADGEN echo --tls-ca none -c 100 -s 16 -w 1 -t $SECS"
    "echo_10x16KiB|ecdsa|$LOADGEN echo --tls-ca none -c 10 -s 16384 -w 1 -t $SECS"
    "hs_ecdsa_p256|ecdsa|$HANDSHAKES -c 20 -t $SECS"
    "hs_rsa2048|rsa|$HANDSHAKES -c 20 -t $SECS"
    "idle|ecdsa|$LOADGEN idle --tls-ca none -c $IDLE_CONNS -t 2"
)
for run in $(seq "$RUNS"); do
    echo "== round $run"
    for entry in "${scenarios[@]}"; do
        IFS='|' read -r name cert command <<<"$entry"
        for kind in uws pushloop; do
            # shellcheck disable=SC2086 # the command's words
            run_once "$name" "$kind" "$cert" "$run" $command
        done
    done
done

echo "== medians (pushloop / uWebSockets)"
awk -F'\t' '
    function median(list,   n, a, i, j, t) {
        n = split(list, a, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { rate[$1, $2] = rate[$1, $2] " " $3; cpu[$1, $2] = cpu[$1, $2] " " $4; mem[$1, $2] = mem[$1, $2] " " $5
      if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
    END {
        printf "%-14s %12s %12s %10s %10s %10s %10s\n", "scenario", "pushloop/s", "uWS/s", "pl us/op", "uWS us/op", "cpu ratio", "rate ratio"
        for (i = 1; i <= n; i++) {
            s = order[i]
            if (s == "idle") {
                p = median(mem[s, "pushloop"]); u = median(mem[s, "uws"])
                printf "%-14s %12s %12s %10s %10s %10.2f   (bytes per idle TLS connection)\n", s, p " B", u " B", "", "", (u > 0 ? p / u : 0)
                continue
            }
            pr = median(rate[s, "pushloop"]); ur = median(rate[s, "uws"])
            pc = median(cpu[s, "pushloop"]); uc = median(cpu[s, "uws"])
            printf "%-14s %12.0f %12.0f %10.2f %10.2f %10.2f %10.2f\n", s, pr, ur, pc, uc, (uc > 0 ? pc / uc : 0), (ur > 0 ? pr / ur : 0)
        }
    }' "$RESULTS"
exit $((FAILS > 0))
