#!/usr/bin/env bash
# Two pushloop nodes sharing one Redis (--redis) against one node without Redis, in the
# same run, with tools/src/bin/loadgen.rs: the subscribers spread round robin over the
# two nodes (loadgen --url A --url B), the publisher on node A; a chat-mode broadcast in
# the channel of a bare /ws (`lobby`), so every message goes node A -> Redis (one
# FCALL: id, history, PUBLISH) -> Redis pub/sub -> both nodes -> their subscribers. The
# single node gets the same subscribers, the same publisher and the same load. Every run
# starts fresh processes: a redis-server (Debian's; `--save '' --appendonly no`, its own
# temporary --dir) on a free port, the nodes on ephemeral ports of 127.0.0.1.
#
# Usage: bench/redis.sh             (about 2 minutes on 2 cores with the defaults)
#   RUNS=3                          runs per scenario (rounds; medians over them)
#   SECS=5                          measured seconds of each peak run
#   LAT_SECS=5                      measured seconds of each fixed-rate run
#   SUBS=1000                       subscribers (half on each node of the pair)
#   RATE=1000                       publishes/s of the latency scenarios
#   WINDOW=16                       unlanded messages of the peak scenarios (-w)
#   SERVER_CPU=0 LOAD_CPU=1         the cores to pin to
#   REDIS_CPU=$SERVER_CPU           the core of redis-server
#   SETTLE=1                        seconds between the last connection and the load
#   DRAIN=10                        seconds the load generator waits for messages still in
#                                   flight after the window (it stops as soon as none are);
#                                   what is missing then is lost, and the run fails
#   KEEP_LOGS=1                     keep every log (kept anyway if a run failed)
#   QUIET_WAIT=0                    seconds each run may wait for the machine to be under
#                                   10% busy (other processes) before it starts
#   PUSHLOOP_BIN=PATH               measure this pushloop binary instead of the one built
# A smoke run that only checks the script works:
#   RUNS=1 SECS=2 LAT_SECS=2 SUBS=100 RATE=200 bench/redis.sh
# It writes nothing into docs/; the table at the end is for docs/performance.md.
#
# Pinning (2 cores): both nodes AND redis-server share SERVER_CPU, the single node has
# SERVER_CPU alone, and the load generator has LOAD_CPU alone. So both sides get the same
# one core for everything server-side: the pair / single ratios are what sharing
# channels through Redis costs on the same hardware (two event loops, Redis's work, the
# extra hop), not what a second machine would add (on 2 cores there is no fair way to
# show scale-out: giving Redis the load generator's core would make the two fight over
# it and spoil the latency and the peak of both). REDIS_CPU=1 puts Redis on the load
# generator's core instead, for a look at the other layout. Only a quiet machine gives
# fair figures: when other processes want SERVER_CPU too, the pair's three processes get
# a larger share of it than the single node's one (QUIET_WAIT=60 waits for quiet).
#
# Scenarios, each round in the order below (backwards in even rounds, so a drift in the
# machine's speed hits them alike):
#   lat_single, lat_pair     loadgen broadcast -c SUBS -p 1 -s 64 --rate RATE: p50, p99,
#                            p99.9 publish-to-delivery latency (timestamps in the
#                            payloads, one clock: the load generator's)
#   peak_single, peak_pair   the same flat out with -w WINDOW (as bench/run.sh's
#                            bcast_ scenarios): deliveries/s; lost must be 0
# Every run is verified by the load generator: each subscriber, whichever node it is on,
# gets every message exactly once and in order (lost, dup, reorder and errors all 0).
#
# Columns: dlv/s deliveries per second in the measured window; p50/p99/p99.9 in us;
# srv% the CPU use of every server-side process (both nodes and redis-server, summed;
# one core is 100%) in the window; cpu us/dlv the same processes' utime+stime (from
# /proc/PID/stat, 10 ms ticks) over the whole loadgen run (connects and closes included)
# per delivery; rt/msg the Redis round trips (pipelines written, both nodes:
# pushloop_broker_round_trips_total) per published message, cmds/msg the commands in them
# (pushloop_broker_commands_total), redis/msg Redis's own count (INFO stats
# total_commands_processed, less the INFO that read it: it counts the commands a function
# runs inside Redis too, about a dozen per publish), fcall/msg Redis's FCALLs per message
# (INFO commandstats: the publishes, plus the nodes' presence and channel-list calls;
# just over 1 if each message took one). These are
# deltas between scrapes taken as the load generator's measured window starts and ends
# (loadgen --on-window: GET /metrics on both nodes and redis-cli INFO, in parallel),
# divided by the chat publishes the nodes counted between the same scrapes
# (pushloop_publishes_total{source="chat"}); they include the nodes' steady background
# (the channel list read every second, presence refreshes).
#
# Exits non-zero if any run failed verification.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

RUNS=${RUNS:-3}
SECS=${SECS:-5}
LAT_SECS=${LAT_SECS:-5}
SUBS=${SUBS:-1000}
RATE=${RATE:-1000}
WINDOW=${WINDOW:-16}
SERVER_CPU=${SERVER_CPU:-0}
REDIS_CPU=${REDIS_CPU:-$SERVER_CPU}
LOAD_CPU=${LOAD_CPU:-1}
SETTLE=${SETTLE:-1}
DRAIN=${DRAIN:-10}
KEEP_LOGS=${KEEP_LOGS:-0}
QUIET_WAIT=${QUIET_WAIT:-0}

REL=target/release
SERVER=${PUSHLOOP_BIN:-$REL/pushloop}
LOADGEN=$REL/loadgen
REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_CLI=${REDIS_CLI:-redis-cli}
CLK_TCK=$(getconf CLK_TCK)
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/pushloop-redis-bench.XXXXXX")
RESULTS=$LOGS/results.tsv
FAILS=0
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
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
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

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

# Starts a redis-server on a free port with a temporary --dir. Sets RPID and RPORT.
start_redis() {
    local tag=$1 dir=$LOGS/redis.$1
    mkdir -p "$dir"
    RPORT=$(free_port)
    taskset -c "$REDIS_CPU" "$REDIS_SERVER" --port "$RPORT" --bind 127.0.0.1 --save '' \
        --appendonly no --dir "$dir" >"$LOGS/redis.$tag.log" 2>&1 &
    RPID=$!
    PIDS+=("$RPID")
    for _ in $(seq 100); do
        [[ $("$REDIS_CLI" -p "$RPORT" PING 2>/dev/null) == PONG ]] && return 0
        kill -0 "$RPID" 2>/dev/null || break
        sleep 0.1
    done
    echo "redis-server did not start:" >&2
    cat "$LOGS/redis.$tag.log" >&2
    exit 1
}

# Starts a chat-mode node, further arguments to pushloop; waits until /readyz says 200
# (with --redis: connected to Redis). Sets SPID and ADDR.
start_node() {
    local log=$LOGS/server.$1.log
    shift
    taskset -c "$SERVER_CPU" "$SERVER" --mode chat --listen 127.0.0.1:0 \
        --max-connections $((SUBS + 1000)) "$@" >"$log" 2>&1 &
    SPID=$!
    PIDS+=("$SPID")
    ADDR=
    for _ in $(seq 100); do
        if [[ -z $ADDR ]]; then
            ADDR=$(sed -n 's#^pushloop listening on ws://\([^/ ]*\)/ws.*#\1#p' "$log" | head -n1 || true)
        fi
        if [[ -n $ADDR && $(curl -s -o /dev/null -w '%{http_code}' "http://$ADDR/readyz") == 200 ]]; then
            return 0
        fi
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.1
    done
    echo "pushloop did not start (or get ready):" >&2
    cat "$log" >&2
    exit 1
}

# The scrape the load generator runs as its window starts and ends (--on-window):
# scrape.sh TAG REDIS_PORT|- ADDR... EDGE. Everything in parallel, to keep the moments close.
cat >"$LOGS/scrape.sh" <<EOF
#!/usr/bin/env bash
tag=\$1 port=\$2
shift 2
edge=\${!#}
dir=$LOGS
i=0
for addr in "\${@:1:\$#-1}"; do
    curl -s "http://\$addr/metrics" >"\$dir/\$tag.\$edge.node\$i.prom" &
    i=\$((i + 1))
done
if [[ \$port != - ]]; then
    $REDIS_CLI -p "\$port" INFO stats commandstats >"\$dir/\$tag.\$edge.redis" &
fi
wait
EOF
chmod +x "$LOGS/scrape.sh"

# Sum of metric line $1 (exact name with labels) over the files $2...
metric_sum() {
    local name=$1
    shift
    awk -v n="$name" '$1 == n { s += $2 } END { printf "%.0f", s }' "$@"
}
# $1 / $2 with 3 decimals, or - if $1 is - or $2 is 0.
per_msg() { awk -v a="$1" -v n="$2" 'BEGIN { if (a != "-" && n > 0) printf "%.3f", a / n; else print "-" }'; }
redis_commands() { tr -d '\r' <"$1" | sed -n 's/^total_commands_processed://p'; }
redis_fcalls() { tr -d '\r' <"$1" | sed -n 's/^cmdstat_fcall:calls=\([0-9]*\).*/\1/p'; }

# One run: $1 scenario, $2 run, $3 single|pair, then the loadgen arguments.
run_once() {
    local name=$1 run=$2 kind=$3
    shift 3
    local tag=$name.$run out=$LOGS/$name.$run.out err=$LOGS/$name.$run.err
    local busy rc=0 pids=() urls=() port=- t0=0 t1=0 pid
    busy=$(machine_busy)
    local deadline=$((SECONDS + QUIET_WAIT))
    while [[ $busy -gt 10 && $SECONDS -lt $deadline ]]; do busy=$(machine_busy); done
    if [[ $kind == pair ]]; then
        start_redis "$tag"
        port=$RPORT
        pids+=("$RPID")
        for node in a b; do
            start_node "$tag.$node" --redis "redis://127.0.0.1:$RPORT"
            pids+=("$SPID")
            urls+=(--url "$ADDR")
        done
    else
        start_node "$tag"
        pids+=("$SPID")
        urls+=(--url "$ADDR")
    fi
    local addrs=()
    for ((i = 1; i < ${#urls[@]}; i += 2)); do addrs+=("${urls[i]}"); done
    for pid in "${pids[@]}"; do t0=$((t0 + $(cpu_ticks "$pid"))); done
    local spids=()
    for pid in "${pids[@]}"; do spids+=(--server-pid "$pid"); done
    # In the background, so that a signal to this script is handled at once.
    taskset -c "$LOAD_CPU" "$LOADGEN" "$@" "${urls[@]}" "${spids[@]}" --settle "$SETTLE" --drain "$DRAIN" \
        --on-window "$LOGS/scrape.sh $tag $port ${addrs[*]}" >"$out" 2>"$err" &
    local lpid=$!
    PIDS+=("$lpid")
    wait "$lpid" || rc=$?
    stop_pid "$lpid"
    for pid in "${pids[@]}"; do t1=$((t1 + $(cpu_ticks "$pid"))); done
    for pid in "${pids[@]}"; do stop_pid "$pid"; done
    local result delivered cpu_us pubs=0 rt=- cmds=- rcmds=- fcalls=- rt_per=- cmds_per=- rcmds_per=- fcalls_per=-
    result=$(grep '^RESULT' "$out" | tail -n1 || true)
    delivered=$(field deliveries "$result")
    cpu_us=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="${delivered:-0}" \
        'BEGIN { printf "%.3f", (n > 0 ? d / hz * 1e6 / n : 0) }')
    local starts=("$LOGS/$tag.start.node"*.prom) ends=("$LOGS/$tag.end.node"*.prom)
    if [[ -s ${starts[0]} && -s ${ends[0]} ]]; then
        local chat='pushloop_publishes_total{source="chat"}'
        pubs=$(($(metric_sum "$chat" "${ends[@]}") - $(metric_sum "$chat" "${starts[@]}")))
        if [[ $kind == pair ]]; then
            rt=$(($(metric_sum pushloop_broker_round_trips_total "${ends[@]}") - \
                $(metric_sum pushloop_broker_round_trips_total "${starts[@]}")))
            cmds=$(($(metric_sum pushloop_broker_commands_total "${ends[@]}") - \
                $(metric_sum pushloop_broker_commands_total "${starts[@]}")))
            local r0 r1
            r0=$(redis_commands "$LOGS/$tag.start.redis" || true)
            r1=$(redis_commands "$LOGS/$tag.end.redis" || true)
            [[ -n $r0 && -n $r1 ]] && rcmds=$((r1 - r0 - 1))
            r0=$(redis_fcalls "$LOGS/$tag.start.redis" || true)
            r1=$(redis_fcalls "$LOGS/$tag.end.redis" || true)
            [[ -n $r1 ]] && fcalls=$((r1 - ${r0:-0}))
            rt_per=$(per_msg "$rt" "$pubs")
            cmds_per=$(per_msg "$cmds" "$pubs")
            rcmds_per=$(per_msg "$rcmds" "$pubs")
            fcalls_per=$(per_msg "$fcalls" "$pubs")
        fi
    fi
    if [[ -z $result || $rc -ne 0 ]]; then
        FAILS=$((FAILS + 1))
        echo "  FAILED: $name run $run (exit $rc); last lines of its output:" >&2
        tail -n 15 "$err" "$out" >&2 || true
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$name" "$run" "$rc" "$(field deliveries_per_s "$result")" "$(field p50_us "$result")" \
        "$(field p99_us "$result")" "$(field p999_us "$result")" "$(field server_cpu_pct "$result")" \
        "$cpu_us" "$rt_per" "$cmds_per" "$rcmds_per" "$(field errors "$result")" \
        "$(field lost "$result")/$(field dup "$result")/$(field reorder "$result")" "$busy" \
        "$(field msgs_per_s "$result")" "$pubs" "$fcalls_per" >>"$RESULTS"
    printf '  %-12s run %s: %10s dlv/s  %7s pub/s  p50 %8s  p99 %8s  p99.9 %8s us  srv %3s%%  %7s us cpu/dlv  rt/msg %s cmds/msg %s redis/msg %s fcall/msg %s (of %s publishes)  err %s lost/dup/reorder %s  busy %s%%\n' \
        "$name" "$run" "$(field deliveries_per_s "$result")" "$(field msgs_per_s "$result")" \
        "$(field p50_us "$result")" "$(field p99_us "$result")" "$(field p999_us "$result")" \
        "$(field server_cpu_pct "$result")" "$cpu_us" "$rt_per" "$cmds_per" "$rcmds_per" "$fcalls_per" "$pubs" \
        "$(field errors "$result")" "$(field lost "$result")/$(field dup "$result")/$(field reorder "$result")" "$busy"
}

echo "== build"
cargo build --release -p pushloop -p pushloop-tools 2>&1 | tail -n 2
command -v "$REDIS_SERVER" >/dev/null || { echo "no $REDIS_SERVER (apt-get install redis-server)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), nodes on core $SERVER_CPU," \
    "redis on core $REDIS_CPU, load on core $LOAD_CPU, $RUNS runs, $SUBS subscribers, $RATE msgs/s," \
    "-w $WINDOW, $("$REDIS_SERVER" --version | cut -d' ' -f1-3), $(date -u '+%Y-%m-%d %H:%M UTC')"
: >"$RESULTS"

# name | single|pair | loadgen arguments.
SCENARIOS=(
    "lat_single|single|broadcast -c $SUBS -p 1 -s 64 --rate $RATE -t $LAT_SECS"
    "lat_pair|pair|broadcast -c $SUBS -p 1 -s 64 --rate $RATE -t $LAT_SECS"
    "peak_single|single|broadcast -c $SUBS -p 1 -s 64 -w $WINDOW -t $SECS"
    "peak_pair|pair|broadcast -c $SUBS -p 1 -s 64 -w $WINDOW -t $SECS"
)
for run in $(seq "$RUNS"); do
    echo "== round $run of $RUNS"
    order=("${SCENARIOS[@]}")
    if ((run % 2 == 0)); then
        order=()
        for ((i = ${#SCENARIOS[@]} - 1; i >= 0; i--)); do order+=("${SCENARIOS[i]}"); done
    fi
    for spec in "${order[@]}"; do
        IFS='|' read -r name kind args <<<"$spec"
        read -ra argv <<<"$args"
        run_once "$name" "$run" "$kind" "${argv[@]}"
    done
done

echo
echo "== medians over $RUNS runs ($SUBS subscribers; pair: two nodes + Redis, single: one node without Redis)"
awk -F'\t' -v rate="$RATE" '
    function median(list,   n, a, i, j, t) {
        n = split(list, a, " ")
        if (n == 0) return "-"
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2)
    }
    {
        if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 }
        # Medians over the successful runs only (a failed run is counted below).
        if ($3 == 0) for (c = 4; c <= 18; c++) if ($c != "" && $c != "-") col[$1, c] = col[$1, c] " " $c
        if ($3 != 0) failed[$1]++
        errs[$1] += $13
        split($14, ldr, "/"); lost[$1] += ldr[1]; dup[$1] += ldr[2]; reord[$1] += ldr[3]
    }
    END {
        printf "%-12s %10s %8s %9s %9s %9s %5s %10s %7s %8s %9s %9s %6s %s\n", "scenario", "dlv/s", "pub/s", "p50 us", "p99 us", "p99.9 us", "srv%", "cpu us/dlv", "rt/msg", "cmds/msg", "redis/msg", "fcall/msg", "failed", "errors lost/dup/reorder (all runs)"
        for (i = 1; i <= k; i++) {
            s = order[i]
            for (c = 4; c <= 18; c++) m[s, c] = median(col[s, c])
            printf "%-12s %10.0f %8.0f %9s %9s %9s %5s %10s %7s %8s %9s %9s %6d %d %d/%d/%d\n", s, m[s, 4], m[s, 16], m[s, 5], m[s, 6], m[s, 7], m[s, 8], m[s, 9], m[s, 10], m[s, 11], m[s, 12], m[s, 18], failed[s] + 0, errs[s], lost[s], dup[s], reord[s]
        }
        print "(srv%: both nodes and redis-server summed, in the window; cpu us/dlv: the same over the whole run;"
        print " rt/msg, cmds/msg: Redis pipelines and commands of both nodes per published message; redis/msg: the"
        print " total_commands_processed of Redis per message (commands inside its functions too); fcall/msg: FCALLs)"
        print ""
        print "== ratios (pair / single node, medians)"
        ratio = "%-44s pair %10s   single %10s   ratio %s\n"
        split("lat_ peak_", kinds, " ")
        for (x = 1; x <= 2; x++) {
            p = kinds[x] "pair"; q = kinds[x] "single"
            if (!((p in seen) && (q in seen))) continue
            what = (x == 1 ? "at " rate " msgs/s" : "flat out")
            if (x == 1) {
                printf ratio, "p50 latency " what " (us)", m[p, 5], m[q, 5], r(m[p, 5], m[q, 5])
                printf ratio, "p99 latency " what " (us)", m[p, 6], m[q, 6], r(m[p, 6], m[q, 6])
                printf ratio, "p99.9 latency " what " (us)", m[p, 7], m[q, 7], r(m[p, 7], m[q, 7])
            } else {
                printf ratio, "deliveries/s " what, m[p, 4], m[q, 4], r(m[p, 4], m[q, 4])
            }
            printf ratio, "server cpu per delivery " what " (us)", m[p, 9], m[q, 9], r(m[p, 9], m[q, 9])
            printf "%-44s %s round trips, %s commands (Redis counted %s FCALLs, %s commands in all)\n", "per published message " what ":", m[p, 10], m[p, 11], m[p, 18], m[p, 12]
        }
    }
    function r(a, b) { return (a != "-" && b != "-" && b + 0 > 0 ? sprintf("%.2f", a / b) : "-") }
' "$RESULTS"

busiest=$(awk -F'\t' '$15 > m { m = $15 } END { print m + 0 }' "$RESULTS")
if [[ $busiest -gt 15 ]]; then
    echo "warning: the machine was up to ${busiest}% busy before some runs (other processes): figures are noisy"
fi
if [[ $FAILS -gt 0 ]]; then
    echo "$FAILS run(s) FAILED"
    exit 1
fi
echo "all runs passed verification"
