#!/usr/bin/env bash
# End-to-end benchmark on loopback: cycast, and Icecast 2 in the same run when it is installed
# (scripts/install-bench-deps.sh), each fed by the same real-time MP3 source and measured by the
# same load generator (cycast-load). Prints a markdown table, cycast beside Icecast.
#
# Scenarios, each on a freshly started server:
#   steady  BENCH_LISTENERS listeners joining at BENCH_RAMP/s, then BENCH_DURATION s of steady
#           play: answered, underruns, resyncs, server CPU seconds per delivered GB, RSS.
#   storm   BENCH_STORM_BASE listeners playing, then BENCH_STORM_JOIN more joining at
#           BENCH_STORM_RATE/s: their time to first audio byte (p50/p99), accept-queue depth and
#           listen overflows while they join, and whether the ones already playing noticed.
#   engines cycast alone, the steady scenario once per fan-out engine, back to back:
#           fanout.engine = "send" then "io_uring", then both again with every listener asking
#           for ICY metadata (BENCH_ENGINES_ICY=0 skips those). A second table compares them.
#           BENCH_ENGINES lists the runs, each ENGINE[,VAR=value...]: the variables go to cycast's
#           environment, e.g. "send io_uring io_uring,CYCAST_URING_TASKRUN=coop".
#
# Load generators: each load (the steady listeners, the storm's playing listeners, its joiners)
# is split over BENCH_GENERATORS cycast-load processes (auto: one per 10,000 listeners), each
# with its share of the listeners and of the joins per second, so every share ramps over the
# same time. Their reports are merged: counts summed; TTFB percentiles exact over every
# listener's sample (--ttfb-samples); server CPU taken once, from the first process's steady
# phase, per GB delivered to all processes over that time (see merge_load).
#   https   BENCH_HTTPS_LISTENERS listeners, the steady scenario for BENCH_HTTPS_DURATION s, on
#           cycast plain HTTP, cycast's own HTTPS, Icecast's own HTTPS (<ssl>1</ssl>) and nginx
#           terminating TLS in front of cycast (nginx's CPU and memory counted with cycast's);
#           then the join storm over HTTPS on cycast (BENCH_STORM_*: its handshake storm). A
#           certificate for localhost is made at run time (openssl); cycast-load checks it.
#
# Quick run:  BENCH_LISTENERS=1000 BENCH_DURATION=10 BENCH_STORM_BASE=500 BENCH_STORM_JOIN=500 make bench
# Engines:    BENCH_SCENARIOS=engines BENCH_LISTENERS=5000 BENCH_DURATION=30 ./scripts/bench.sh
# HTTPS:      BENCH_SCENARIOS=https ./scripts/bench.sh
# Everything the script starts is stopped when it exits; every step has a time limit.
set -euo pipefail
cd "$(dirname "$0")/.."

LISTENERS=${BENCH_LISTENERS:-10000}      # steady: listeners
RAMP=${BENCH_RAMP:-500}                  # steady: joins per second
DURATION=${BENCH_DURATION:-60}           # steady: seconds of play after the ramp
STORM_BASE=${BENCH_STORM_BASE:-5000}     # storm: listeners already playing
STORM_BASE_RAMP=${BENCH_STORM_BASE_RAMP:-500}
STORM_JOIN=${BENCH_STORM_JOIN:-2500}     # storm: listeners joining
STORM_RATE=${BENCH_STORM_RATE:-500}      # storm: joins per second
STORM_TAIL=${BENCH_STORM_TAIL:-20}       # storm: seconds allowed after the last join starts
SETTLE=${BENCH_SETTLE:-5}                # seconds between a ramp's end and the next step
PREBUFFER=${BENCH_PREBUFFER:-2}          # modelled player prebuffer, seconds
VERIFY_EVERY=${BENCH_VERIFY_EVERY:-10}   # frame-chain check on every Nth listener
ICY=${BENCH_ICY:-0}                      # 1: listeners ask for ICY metadata
ENGINES_ICY=${BENCH_ENGINES_ICY:-1}      # engines: 1 also runs the engines with ICY listeners; only: just those
ENGINES=${BENCH_ENGINES:-send io_uring}  # engines: the runs, each ENGINE[,VAR=value...]
PERF=${BENCH_PERF:-0}                    # 1: perf record -g the server for 15 s of each steady phase
SCENARIOS=${BENCH_SCENARIOS:-steady,storm,https}
ICECAST=${BENCH_ICECAST:-auto}           # auto: when installed; 0: never; 1: required
NGINX=${BENCH_NGINX:-auto}               # https: nginx in front of cycast; auto: when installed
HTTPS_LISTENERS=${BENCH_HTTPS_LISTENERS:-5000}  # https: listeners per server
HTTPS_DURATION=${BENCH_HTTPS_DURATION:-30}      # https: seconds of play after the ramp
SHARDS=${BENCH_SHARDS:-0}                # cycast shards, 0: one per core
RING_MB=${BENCH_RING_MB:-20}             # cycast buffer.size_mb
QUEUE_SIZE=${BENCH_QUEUE_SIZE:-524288}   # slow-listener limit, both servers
BURST_SIZE=${BENCH_BURST_SIZE:-65536}    # burst on connect, both servers
FILE=${BENCH_FILE:-music/01-morning-tone.mp3}
PORT=${BENCH_PORT:-18000}                # cycast sources PORT, listeners PORT+1, HTTPS PORT+2;
                                         # nginx PORT+3; Icecast PORT+100, its HTTPS PORT+101
OUT=${BENCH_OUT:-target/bench/$(date +%Y%m%d-%H%M%S)}
GENERATORS=${BENCH_GENERATORS:-auto}    # load generator processes per load; auto: 1 per 10,000 listeners
BUILD=${BENCH_BUILD:-1}
TABLE_ONLY=${BENCH_TABLE_ONLY:-0}         # 1: only print the table of the results in BENCH_OUT

RELEASE=${CARGO_TARGET_DIR:-target}/release      # where cargo puts the release binaries
CYCAST=${BENCH_CYCAST:-$RELEASE/cycast}   # another build of cycast to measure (A/B of two commits)
LOAD=${BENCH_LOAD:-$RELEASE/cycast-load}
ICECAST_PORT=$((PORT + 100))
TLS_PORT=$((PORT + 2))
NGINX_PORT=$((PORT + 3))
ICECAST_TLS_PORT=$((ICECAST_PORT + 1))
PASSWORD=hackme

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
# ceil(a / b) for positive numbers, integer or not.
ceil_div() { awk -v a="$1" -v b="$2" 'BEGIN { q = a / b; r = int(q); if (r < q) r++; print r }'; }

case "$ICECAST" in
    auto) if command -v icecast2 >/dev/null 2>&1; then ICECAST=1; else ICECAST=0; fi ;;
    1) command -v icecast2 >/dev/null 2>&1 || die "BENCH_ICECAST=1 but icecast2 is not installed (scripts/install-bench-deps.sh)" ;;
    0) ;;
    *) die "BENCH_ICECAST must be auto, 0 or 1" ;;
esac
case "$NGINX" in
    auto) if command -v nginx >/dev/null 2>&1; then NGINX=1; else NGINX=0; fi ;;
    1) command -v nginx >/dev/null 2>&1 || die "BENCH_NGINX=1 but nginx is not installed (scripts/install-bench-deps.sh)" ;;
    0) ;;
    *) die "BENCH_NGINX must be auto, 0 or 1" ;;
esac
HTTPS=0
case ",$SCENARIOS," in *,https,*) HTTPS=1 ;; esac
if [ "$HTTPS" = 1 ] && [ "$TABLE_ONLY" != 1 ] && ! command -v openssl >/dev/null 2>&1; then
    # Asked for by name: an error; only in the default list: left out, with a notice.
    [ -n "${BENCH_SCENARIOS:-}" ] \
        && die "the https scenario makes its certificate with openssl, which is not installed (scripts/install-bench-deps.sh)"
    echo "bench: openssl is not installed (scripts/install-bench-deps.sh); skipping the https scenario" >&2
    SCENARIOS=${SCENARIOS//,https/}
    HTTPS=0
fi
[ -f "$FILE" ] || die "$FILE: no such file (BENCH_FILE)"
case "$GENERATORS" in
    auto) ;;
    *[!0-9]* | '' | 0) die "BENCH_GENERATORS must be auto or a positive number" ;;
esac

# Load generator processes for a load of $1 listeners.
generators_for() {
    if [ "$GENERATORS" = auto ]; then ceil_div "$1" 10000; else echo "$GENERATORS"; fi
}

# Every listener is a descriptor on both ends; ask for plenty.
want_fds=$((LISTENERS + STORM_BASE + STORM_JOIN + 2 * HTTPS_LISTENERS + 1024))
[ "$want_fds" -lt 65536 ] && want_fds=65536
ulimit -Hn "$want_fds" 2>/dev/null || true
ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((LISTENERS + 64)) ]; then
    echo "bench: open-files limit $(ulimit -n) is below BENCH_LISTENERS; connects will fail" >&2
fi
# The server holds every listener; each generator only its share (cycast-load raises its soft
# limit to the hard one).
for n in "$LISTENERS" "$STORM_BASE" "$STORM_JOIN"; do
    g=$(generators_for "$n")
    if [ "$(ulimit -Hn)" -lt $(($(ceil_div "$n" "$g") + 64)) ]; then
        echo "bench: open-files hard limit $(ulimit -Hn) is below $n listeners over $g load generator(s); raise BENCH_GENERATORS" >&2
    fi
done

if [ "$BUILD" = 1 ] && [ "$TABLE_ONLY" != 1 ]; then
    say "building release binaries"
    cargo build --release --quiet --bin cycast --bin cycast-load
fi
if [ ! -x "$CYCAST" ] || [ ! -x "$LOAD" ]; then
    die "missing $CYCAST or $LOAD (run with BENCH_BUILD=1)"
fi

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TMP=$(mktemp -d /tmp/cycast-bench.XXXXXX)
chmod 755 "$TMP"
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 50); do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Forgets a process that has ended, so cleanup never signals a recycled id.
forget() {
    local pid keep=()
    for pid in "${PIDS[@]}"; do [ "$pid" = "$1" ] || keep+=("$pid"); done
    PIDS=("${keep[@]}")
}

# Stops one process this script started, by its id, within a bounded time.
stop() {
    local pid=$1
    if kill -TERM "$pid" 2>/dev/null; then
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    forget "$pid"
}

# Waits until `url` delivers audio bytes (the source is on), at most about 10 s.
wait_audio() {
    local url=$1 n
    for _ in $(seq 1 14); do
        n=$(curl -s -m 0.5 -o /dev/null -w '%{size_download}' "$url" 2>/dev/null || true)
        [ "${n:-0}" -gt 1000 ] 2>/dev/null && return 0
        sleep 0.25
    done
    return 1
}

# ---- servers -------------------------------------------------------------------------------

mkdir -p "$TMP/empty"
cat >"$TMP/cycast.hcl" <<EOF
server {
  host = "127.0.0.1"
  source_port = $PORT
  listen_port = $((PORT + 1))
  source_password = "$PASSWORD"
  shards = $SHARDS
  listen_backlog = 4096
}
buffer { size_mb = $RING_MB }
limits {
  queue_size = $QUEUE_SIZE
  burst_size = $BURST_SIZE
  max_listeners = 0
}
playlist { directory = "$TMP/empty" }
advanced {
  verbose_logging = false
  access_log = ""
}
EOF

# The same server once per fan-out engine, for the engines scenario.
for engine in send io_uring; do
    { cat "$TMP/cycast.hcl"; printf 'fanout { engine = "%s" }\n' "$engine"; } >"$TMP/cycast-$engine.hcl"
done
CYCAST_CONFIG="$TMP/cycast.hcl"

# The https scenario: a certificate for localhost made now, cycast with its TLS port, Icecast
# with a TLS listen-socket, nginx terminating TLS in front of cycast's plain port.
ice_tls_socket=""
ice_tls_cert=""
if [ "$HTTPS" = 1 ] && [ "$TABLE_ONLY" != 1 ]; then
    # shellcheck source=scripts/lib/cert.sh
    source scripts/lib/cert.sh
    make_localhost_cert "$TMP"
    { cat "$TMP/cycast.hcl"
      printf 'tls {\n  port = %s\n  certificate = "%s"\n  key = "%s"\n}\n' "$TLS_PORT" "$TMP/cert.pem" "$TMP/key.pem"
    } >"$TMP/cycast-tls.hcl"
    ice_tls_socket="<listen-socket><port>$ICECAST_TLS_PORT</port><bind-address>127.0.0.1</bind-address><ssl>1</ssl></listen-socket>"
    ice_tls_cert="<ssl-certificate>$TMP/cert-key.pem</ssl-certificate>"
    mkdir -p "$TMP/nginx"
    cat >"$TMP/nginx/nginx.conf" <<EOF
daemon off;
worker_processes $( [ "$SHARDS" -gt 0 ] && echo "$SHARDS" || echo auto );
worker_rlimit_nofile $want_fds;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections $((2 * HTTPS_LISTENERS + 1024)); }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  server {
    listen 127.0.0.1:$NGINX_PORT ssl reuseport backlog=4096;
    server_name localhost;
    ssl_certificate $TMP/cert.pem;
    ssl_certificate_key $TMP/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://127.0.0.1:$((PORT + 1));
      proxy_buffering off;
      proxy_read_timeout 600s;
    }
  }
}
EOF
fi

mkdir -p "$TMP/icecast-log"
if [ "$(id -u)" -eq 0 ]; then
    ice_user=$(id -un icecast2 2>/dev/null || echo nobody)
    ice_group=$(id -gn "$ice_user" 2>/dev/null || echo nogroup)
    chown "$ice_user:$ice_group" "$TMP/icecast-log"
    changeowner="<changeowner><user>$ice_user</user><group>$ice_group</group></changeowner>"
else
    changeowner=""
fi
cat >"$TMP/icecast.xml" <<EOF
<icecast>
  <location>loopback</location>
  <admin>bench@localhost</admin>
  <limits>
    <clients>$((LISTENERS + STORM_BASE + STORM_JOIN + HTTPS_LISTENERS + 100))</clients>
    <sources>4</sources>
    <queue-size>$QUEUE_SIZE</queue-size>
    <client-timeout>30</client-timeout>
    <header-timeout>15</header-timeout>
    <source-timeout>10</source-timeout>
    <burst-on-connect>1</burst-on-connect>
    <burst-size>$BURST_SIZE</burst-size>
  </limits>
  <authentication>
    <source-password>$PASSWORD</source-password>
    <relay-password>$PASSWORD</relay-password>
    <admin-user>admin</admin-user>
    <admin-password>$PASSWORD-admin</admin-password>
  </authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket>
    <port>$ICECAST_PORT</port>
    <bind-address>127.0.0.1</bind-address>
  </listen-socket>
  $ice_tls_socket
  <fileserve>1</fileserve>
  <paths>
    <basedir>/usr/share/icecast2</basedir>
    <logdir>$TMP/icecast-log</logdir>
    <webroot>/usr/share/icecast2/web</webroot>
    <adminroot>/usr/share/icecast2/admin</adminroot>
    $ice_tls_cert
  </paths>
  <logging>
    <accesslog>access.log</accesslog>
    <errorlog>error.log</errorlog>
    <loglevel>2</loglevel>
    <logsize>100000</logsize>
  </logging>
  <security>
    <chroot>0</chroot>
    $changeowner
  </security>
</icecast>
EOF

SERVER_PID=""
SOURCE_PID=""
NGINX_PID=""
CLIENT_TLS=()   # cycast-load's TLS flags for LISTEN_URL
ALSO_PIDS=()    # cycast-load's --also-pid flags: processes counted with the server

# Waits until something accepts on 127.0.0.1:$1 while process $2 lives.
wait_port() {
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# Starts server $1 and its source; sets SERVER_PID, LISTEN_URL, CLIENT_TLS and ALSO_PIDS.
# cycast | icecast: plain HTTP. cycast-tls | icecast-tls: the same server, listeners on its
# HTTPS port. nginx-tls: cycast, listeners through nginx terminating TLS in front of it.
start_server() {
    CLIENT_TLS=()
    ALSO_PIDS=()
    case "$1" in
        cycast-tls | nginx-tls) start_plain_server cycast "$2" || return 1 ;;
        icecast-tls) start_plain_server icecast "$2" || return 1 ;;
        *) start_plain_server "$1" "$2"; return ;;
    esac
    CLIENT_TLS=(--ca-file "$TMP/cert.pem")
    case "$1" in
        cycast-tls) LISTEN_URL="https://localhost:$TLS_PORT/stream" ;;
        icecast-tls) LISTEN_URL="https://localhost:$ICECAST_TLS_PORT/stream" ;;
        nginx-tls)
            nginx -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" >"$OUT/nginx-$2.log" 2>&1 &
            NGINX_PID=$!
            PIDS+=("$NGINX_PID")
            wait_port "$NGINX_PORT" "$NGINX_PID" \
                || { echo "bench: nginx did not start: $(tail -3 "$TMP/nginx/error.log")" >&2; return 1; }
            local worker
            for worker in $NGINX_PID $(pgrep -P "$NGINX_PID"); do ALSO_PIDS+=(--also-pid "$worker"); done
            LISTEN_URL="https://localhost:$NGINX_PORT/stream"
            ;;
    esac
    # Audio over TLS, checked against the certificate, before the listeners come.
    local n
    n=$(curl -s -m 2 --cacert "$TMP/cert.pem" -o /dev/null -w '%{size_download}' "$LISTEN_URL" 2>/dev/null || true)
    [ "${n:-0}" -gt 1000 ] 2>/dev/null \
        || { echo "bench: $1: no audio at $LISTEN_URL; skipping" >&2; return 1; }
}
SERVER_ENV=()   # VAR=value for cycast's environment (an engines run)

# Starts server $1 (cycast|icecast) and its source; sets SERVER_PID, LISTEN_URL.
start_plain_server() {
    local name=$1 source_url
    case "$name" in
        cycast)
            env "${SERVER_ENV[@]}" "$CYCAST" --config "$CYCAST_CONFIG" >"$OUT/$name-$2-server.log" 2>&1 &
            SERVER_PID=$!
            source_url="http://source:$PASSWORD@127.0.0.1:$PORT/stream"
            LISTEN_URL="http://127.0.0.1:$((PORT + 1))/stream"
            ;;
        icecast)
            icecast2 -c "$TMP/icecast.xml" >"$OUT/$name-$2-server.log" 2>&1 &
            SERVER_PID=$!
            source_url="http://source:$PASSWORD@127.0.0.1:$ICECAST_PORT/stream"
            LISTEN_URL="http://127.0.0.1:$ICECAST_PORT/stream"
            ;;
    esac
    PIDS+=("$SERVER_PID")
    local port=${LISTEN_URL##*:}
    port=${port%%/*}
    wait_port "$port" "$SERVER_PID" || kill -0 "$SERVER_PID" 2>/dev/null \
        || die "$name exited at start: $(tail -5 "$OUT/$name-$2-server.log")"
    # A server just started may turn the first source away; try a few times.
    for _ in 1 2 3 4 5; do
        "$LOAD" source --url "$source_url" --file "$FILE" --loop >>"$OUT/$name-$2-source.log" 2>&1 &
        SOURCE_PID=$!
        PIDS+=("$SOURCE_PID")
        wait_audio "$LISTEN_URL" && return 0
        stop "$SOURCE_PID"
        sleep 1
    done
    echo "bench: $name: no audio at $LISTEN_URL ($(tail -1 "$OUT/$name-$2-source.log")); skipping $name $2" >&2
    return 1
}

stop_server() {
    if [ -n "$NGINX_PID" ]; then
        stop "$NGINX_PID"
        NGINX_PID=""
    fi
    stop "$SOURCE_PID"
    stop "$SERVER_PID"
    # Let the closed connections leave the kernel's tables before the next server starts.
    sleep 2
}

# CPU ticks of every thread of $1: "tid name utime stime" lines.
thread_ticks() {
    local t
    for t in /proc/"$1"/task/*; do
        [ -r "$t/stat" ] || continue
        printf '%s %s %s\n' "${t##*/}" "$(tr ' ' _ <"$t/comm")" "$(sed 's/^.*) //' "$t/stat" | awk '{print $12, $13}')"
    done
}

netstat_counters() {
    nstat -asz TcpExtListenOverflows TcpExtListenDrops TcpExtTCPReqQFullDrop TcpExtSyncookiesSent 2>/dev/null \
        | awk 'NR > 1 && NF >= 2 { print $1, $2 }'
}

# Samples the accept queues (Recv-Q) of the listening sockets on port $1 every 50 ms into $2.
sample_accept_queue() {
    local port=$1 out=$2
    while :; do
        printf '%s %s\n' "$(date +%s.%N)" \
            "$(ss -Hltn "sport = :$port" | awk '{ printf "%s/%s ", $2, $3 }')" >>"$out"
        sleep 0.05
    done
}

# Load generator processes running, by result name: "pid pid ...".
declare -A LOAD_PIDS=()

# Starts the load named $2 in the background: $3 listeners joining at $4 per second over the
# generators_for processes, each with its share and the rest of the arguments, within $1
# seconds. One process writes $OUT/$2.json and .log; several write $2.gN.json and .log each,
# merged into $2.json by finish_load.
start_load() {
    local limit=$1 label=$2 listeners=$3 ramp=$4 count g n r out
    shift 4
    count=$(generators_for "$listeners")
    LOAD_PIDS[$label]=""
    for ((g = 1; g <= count; g++)); do
        # The first listeners % count processes take one more.
        n=$((listeners / count + (g <= listeners % count ? 1 : 0)))
        [ "$n" -gt 0 ] || continue
        r=$(awk -v r="$ramp" -v n="$n" -v t="$listeners" 'BEGIN { printf "%.6g", r * n / t }')
        out=$label
        [ "$count" = 1 ] || out=$label.g$g
        timeout -k 5 "$limit" "$LOAD" --listeners "$n" --ramp "$r" --ttfb-samples "$@" \
            >"$OUT/$out.json" 2>"$OUT/$out.log" &
        LOAD_PIDS[$label]+=" $!"
        PIDS+=("$!")
    done
}

# Waits for the load named $1 and, when it ran in several processes, merges their reports.
finish_load() {
    local label=$1 pid failed=0
    for pid in ${LOAD_PIDS[$label]}; do
        wait "$pid" || failed=1
        forget "$pid"
    done
    unset "LOAD_PIDS[$label]"
    [ "$failed" = 0 ] || echo "bench: $label: a load generator failed (see $OUT/$label*.log)" >&2
    local parts=("$OUT/$label".g*.json)
    [ -e "${parts[0]}" ] && merge_load "$OUT/$label.json" "${parts[@]}"
    return 0
}

# Merges the reports $2... of one load's generators into $1.
merge_load() {
    python3 - "$@" <<'PY'
import json, math, sys

out, parts = sys.argv[1], []
for name in sys.argv[2:]:
    try:
        with open(name) as f:
            parts.append(json.load(f))
    except (OSError, ValueError) as e:
        print(f"bench: {name}: {e}; left out of the merge", file=sys.stderr)
if not parts:
    sys.exit(0)

def total(key, *path):
    vals = []
    for p in parts:
        d = p
        for k in path:
            d = (d or {}).get(k)
        vals.append((d or {}).get(key) if path else p.get(key))
    return [v for v in vals if v is not None]

def nearest_rank(sorted_us, pct):
    rank = max(1, min(len(sorted_us), math.ceil(pct / 100 * len(sorted_us))))
    return sorted_us[rank - 1] / 1000

m = dict(parts[0])
m["generators"] = len(parts)
m["listeners"] = sum(total("listeners"))
m["ramp_per_s"] = sum(total("ramp_per_s"))
m["run_seconds"] = max(total("run_seconds"))
m["nofile_limit"] = min(total("nofile_limit"))
m["connects"] = {k: sum(total(k, "connects")) for k in parts[0]["connects"]}
for key in ("other_statuses", "connect_errors"):
    acc = {}
    for p in parts:
        for k, v in p.get(key, []):
            acc[k] = acc.get(k, 0) + v
    m[key] = sorted(acc.items())
samples = [p.get("ttfb_samples_us") for p in parts]
m.pop("ttfb_samples_us", None)
if all(s is not None for s in samples):
    every = sorted(us for s in samples for us in s)
    m["ttfb"] = {"count": len(every),
                 "p50_ms": nearest_rank(every, 50) if every else None,
                 "p99_ms": nearest_rank(every, 99) if every else None,
                 "max_ms": every[-1] / 1000 if every else None,
                 "merge": "exact"}
else:
    m["ttfb"] = {"count": sum(total("count", "ttfb")),
                 **{k: max(total(k, "ttfb"), default=None) for k in ("p50_ms", "p99_ms", "max_ms")},
                 "merge": "max of the generators"}
t = {k: sum(total(k, "throughput")) for k in ("total_bytes", "aggregate_mbit_s", "steady_bytes")}
t["steady_seconds"] = parts[0]["throughput"]["steady_seconds"]
t["bitrate_kbps"] = next(iter(total("bitrate_kbps", "throughput")), None)
t["slowest_kbps"] = min(total("slowest_kbps", "throughput"), default=None)
t["slowest_ratio"] = min(total("slowest_ratio", "throughput"), default=None)
m["throughput"] = t
m["quality"] = {k: (max if k == "max_gap_ms" else sum)(total(k, "quality")) for k in parts[0]["quality"]}
# Server CPU once: the first process's steady phase, per GB delivered to every process in it
# (each process's steady delivery rate times that phase's length).
server = parts[0].get("server")
if server:
    secs = t["steady_seconds"]
    rate = sum(p["throughput"]["steady_bytes"] / p["throughput"]["steady_seconds"]
               for p in parts if p["throughput"]["steady_seconds"] > 0)
    gb = rate * secs / 1e9
    server = dict(server, cpu_seconds_per_gb=server["cpu_seconds"] / gb if gb > 0 else None)
m["server"] = server
cpu = total("client_cpu_seconds")
m["client_cpu_seconds"] = sum(cpu) if cpu else None
m["client_cpu_seconds_each"] = cpu
with open(out, "w") as f:
    json.dump(m, f)
PY
}

icy_flag=()
[ "$ICY" = 1 ] && icy_flag=(--icy)

# Steady scenario on server $1; results are named after $2 (default: the server).
run_steady() {
    local name=$1 label=${2:-$1}
    local tag=steady
    [ "$label" = "$name" ] || tag="$label-steady"
    start_server "$name" "$tag" || { stop_server; return 0; }
    local ramp_s
    ramp_s=$(ceil_div "$LISTENERS" "$RAMP")
    local total=$((ramp_s + DURATION))
    say "$name steady: $LISTENERS listeners at $RAMP/s, $total s"
    local args=(--url "$LISTEN_URL" "${CLIENT_TLS[@]}" --duration "$total" --prebuffer "$PREBUFFER"
        --verify-every "$VERIFY_EVERY" "${icy_flag[@]}" --json --pid "$SERVER_PID" "${ALSO_PIDS[@]}")
    echo "$LOAD --listeners $LISTENERS --ramp $RAMP ${args[*]}   (over $(generators_for "$LISTENERS") process(es))" \
        >"$OUT/$label-steady.cmd"
    start_load $((total + 60)) "$label-steady" "$LISTENERS" "$RAMP" "${args[@]}"
    local perf=""
    if [ "$PERF" = 1 ]; then
        # A profile of the steady phase; the perf run's own CPU makes its figures not for comparing.
        ( sleep $((ramp_s + SETTLE)) && exec perf record -g -F 999 -p "$SERVER_PID" \
            -o "$OUT/$label-steady.perf.data" -- sleep 15 ) >"$OUT/$label-steady.perf.log" 2>&1 &
        perf=$!
        PIDS+=("$perf")
    fi
    finish_load "$label-steady"
    if [ -n "$perf" ]; then
        wait "$perf" 2>/dev/null || true
        forget "$perf"
    fi
    stop_server
}

# The steady scenario with each fan-out engine in turn (cycast only), plain and with ICY.
run_engines() {
    local icy_runs=(0) icy engine variant saved=("${icy_flag[@]}")
    case "$ENGINES_ICY" in
        1) icy_runs+=(1) ;;
        only) icy_runs=(1) ;;
    esac
    for icy in "${icy_runs[@]}"; do
        icy_flag=()
        [ "$icy" = 1 ] && icy_flag=(--icy)
        for variant in $ENGINES; do
            engine=${variant%%,*}
            case "$engine" in send | io_uring) ;; *) die "BENCH_ENGINES: unknown engine $engine" ;; esac
            SERVER_ENV=()
            local label="engine-$engine" assignment
            if [ "$variant" != "$engine" ]; then
                IFS=, read -ra SERVER_ENV <<<"${variant#*,}"
                for assignment in "${SERVER_ENV[@]}"; do label="$label-${assignment#*=}"; done
            fi
            [ "$icy" = 1 ] && label="$label-icy"
            # A variant listed again (to interleave repeats) gets its own results.
            local base=$label repeat=1
            while grep -q "^$label	" "$OUT/engines.txt" 2>/dev/null; do
                repeat=$((repeat + 1))
                label=$base-$repeat
            done
            CYCAST_CONFIG="$TMP/cycast-$engine.hcl"
            printf '%s\t%s\t%s\n' "$label" "${variant//,/ }" "$icy" >>"$OUT/engines.txt"
            run_steady cycast "$label"
            grep -m1 'is not available' "$OUT/cycast-${label}-steady-server.log" >&2 || true
        done
    done
    SERVER_ENV=()
    icy_flag=("${saved[@]}")
    CYCAST_CONFIG="$TMP/cycast.hcl"
}

run_storm() {
    local name=$1 label=${2:-$1}
    local tag=storm
    [ "$label" = "$name" ] || tag="$label"
    start_server "$name" "$tag" || { stop_server; return 0; }
    local port=${LISTEN_URL##*:}
    port=${port%%/*}
    local base_ramp_s join_s
    base_ramp_s=$(ceil_div "$STORM_BASE" "$STORM_BASE_RAMP")
    join_s=$(ceil_div "$STORM_JOIN" "$STORM_RATE")
    local join_total=$((join_s + STORM_TAIL))
    local base_total=$((base_ramp_s + SETTLE + join_total + 5))
    say "$name storm: $STORM_BASE playing, then $STORM_JOIN joining at $STORM_RATE/s"
    start_load $((base_total + 60)) "$label-storm-base" "$STORM_BASE" "$STORM_BASE_RAMP" \
        --url "$LISTEN_URL" "${CLIENT_TLS[@]}" --duration "$base_total" --prebuffer "$PREBUFFER" \
        --verify-every "$VERIFY_EVERY" "${icy_flag[@]}" --quiet --json
    sleep $((base_ramp_s + SETTLE))
    netstat_counters >"$OUT/$label-storm-netstat-before.txt"
    thread_ticks "$SERVER_PID" >"$OUT/$label-storm-threads-before.txt"
    sample_accept_queue "$port" "$OUT/$label-storm-acceptq.txt" &
    local sampler=$!
    PIDS+=("$sampler")
    local args=(--url "$LISTEN_URL" "${CLIENT_TLS[@]}" --duration "$join_total" --prebuffer "$PREBUFFER"
        --verify-every "$VERIFY_EVERY" "${icy_flag[@]}" --json --pid "$SERVER_PID" "${ALSO_PIDS[@]}")
    echo "$LOAD --listeners $STORM_JOIN --ramp $STORM_RATE ${args[*]}   (over $(generators_for "$STORM_JOIN") process(es), while $STORM_BASE listeners joined at $STORM_BASE_RAMP/s play)" >"$OUT/$label-storm.cmd"
    # The joiners' ramp ends after join_s; samples then cover the storm itself.
    ( sleep "$join_s"; thread_ticks "$SERVER_PID" >"$OUT/$label-storm-threads-after.txt"; \
      netstat_counters >"$OUT/$label-storm-netstat-after.txt" ) &
    local snap=$!
    PIDS+=("$snap")
    start_load $((join_total + 60)) "$label-storm" "$STORM_JOIN" "$STORM_RATE" "${args[@]}"
    finish_load "$label-storm"
    wait "$snap" 2>/dev/null || true
    forget "$snap"
    stop "$sampler"
    finish_load "$label-storm-base"
    stop_server
}

# The https scenario: the steady scenario with HTTPS_LISTENERS listeners on cycast plain, cycast
# HTTPS, Icecast HTTPS and nginx -> cycast, then the join storm over HTTPS on cycast. Every
# cycast run uses the configuration with the TLS port, so only the listeners' protocol differs.
run_https() {
    local saved_listeners=$LISTENERS saved_duration=$DURATION
    LISTENERS=$HTTPS_LISTENERS
    DURATION=$HTTPS_DURATION
    CYCAST_CONFIG="$TMP/cycast-tls.hcl"
    run_steady cycast https-cycast-plain
    run_steady cycast-tls https-cycast-tls
    [ "$ICECAST" = 1 ] && run_steady icecast-tls https-icecast-tls
    [ "$NGINX" = 1 ] && run_steady nginx-tls https-nginx-tls
    run_storm cycast-tls https-cycast-tls
    CYCAST_CONFIG="$TMP/cycast.hcl"
    LISTENERS=$saved_listeners
    DURATION=$saved_duration
}

servers=(cycast)
[ "$ICECAST" = 1 ] && servers+=(icecast)
[ "$TABLE_ONLY" = 1 ] && SCENARIOS=""
[ "$TABLE_ONLY" = 1 ] || cat >"$OUT/settings.txt" <<EOF
date: $(date -u +%Y-%m-%dT%H:%MZ)
machine: $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1e6 }' /proc/meminfo) RAM, Linux $(uname -r)
cycast: $("$CYCAST" --version 2>/dev/null | head -1) (${BENCH_REVISION:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src 2>/dev/null || echo ', src modified')})
icecast: $( [ "$ICECAST" = 1 ] && icecast2 -v 2>/dev/null | head -1 || echo 'not run')
source: $FILE, looped, real time
steady: BENCH_LISTENERS=$LISTENERS BENCH_RAMP=$RAMP BENCH_DURATION=$DURATION
https: BENCH_HTTPS_LISTENERS=$HTTPS_LISTENERS BENCH_HTTPS_DURATION=$HTTPS_DURATION, nginx: $( [ "$NGINX" = 1 ] && nginx -v 2>&1 | sed 's/^nginx version: //' || echo 'not run')
storm: BENCH_STORM_BASE=$STORM_BASE BENCH_STORM_BASE_RAMP=$STORM_BASE_RAMP BENCH_STORM_JOIN=$STORM_JOIN BENCH_STORM_RATE=$STORM_RATE BENCH_STORM_TAIL=$STORM_TAIL
load generators: BENCH_GENERATORS=$GENERATORS (steady: $(generators_for "$LISTENERS"), storm: $(generators_for "$STORM_BASE") playing + $(generators_for "$STORM_JOIN") joining); several are merged: counts summed, TTFB percentiles over every listener's sample, server CPU from the first one's steady phase per GB delivered to all
player: BENCH_PREBUFFER=$PREBUFFER BENCH_VERIFY_EVERY=$VERIFY_EVERY BENCH_ICY=$ICY
load average at start: $(cut -d' ' -f1-3 /proc/loadavg)
servers: queue size $QUEUE_SIZE, burst $BURST_SIZE; cycast ring ${RING_MB} MiB, shards $SHARDS
EOF

for scenario in ${SCENARIOS//,/ }; do
    for name in "${servers[@]}"; do
        case "$scenario" in
            steady) run_steady "$name" ;;
            storm) run_storm "$name" ;;
            engines) [ "$name" = cycast ] && run_engines ;;
            https) [ "$name" = cycast ] && run_https ;;
            *) die "unknown scenario $scenario (BENCH_SCENARIOS: steady,storm,engines,https)" ;;
        esac
    done
done

python3 - "$OUT" "$RING_MB" >"$OUT/table.md" <<'PY'
import json, os, sys

out, ring_mb = sys.argv[1], float(sys.argv[2])
ring_bytes_mb = ring_mb * 1024 * 1024 / 1e6

def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def get(d, *path):
    for p in path:
        if d is None:
            return None
        d = d.get(p) if isinstance(d, dict) else None
    return d

def lines(name):
    try:
        with open(os.path.join(out, name)) as f:
            return [l.split() for l in f if l.strip()]
    except OSError:
        return []

def netstat_delta(server):
    before = dict((k, int(v)) for k, v in lines(f"{server}-storm-netstat-before.txt"))
    after = dict((k, int(v)) for k, v in lines(f"{server}-storm-netstat-after.txt"))
    if not after:
        return None
    return {k[6:]: after[k] - before.get(k, 0) for k in after}

def accept_queue_max(server):
    best = None
    for row in lines(f"{server}-storm-acceptq.txt"):
        for q in row[1:]:
            recv = int(q.split("/")[0])
            best = recv if best is None else max(best, recv)
    return best

def thread_cpu(server):
    """CPU seconds per thread name over the storm's join phase."""
    hz = os.sysconf("SC_CLK_TCK")
    before = {r[0]: (r[1], int(r[2]) + int(r[3])) for r in lines(f"{server}-storm-threads-before.txt")}
    after = {r[0]: (r[1], int(r[2]) + int(r[3])) for r in lines(f"{server}-storm-threads-after.txt")}
    per = {}
    for tid, (name, ticks) in after.items():
        per[name] = per.get(name, 0) + (ticks - before.get(tid, (name, 0))[1]) / hz
    return per

servers = [s for s in ("cycast", "icecast") if load(f"{s}-steady.json") or load(f"{s}-storm.json")]
steady = {s: load(f"{s}-steady.json") for s in servers}
storm = {s: load(f"{s}-storm.json") for s in servers}
base = {s: load(f"{s}-storm-base.json") for s in servers}

def generators(d):
    """Load generator processes and the CPU seconds they used (each, when several)."""
    if d is None:
        return None
    each = d.get("client_cpu_seconds_each")
    if each:
        return f"{len(each)}, " + " + ".join(f"{c:.2f}" for c in each)
    cpu = d.get("client_cpu_seconds")
    return "1" if cpu is None else f"1, {cpu:.2f}"

def fmt(v, digits=1):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"

rows = []
def row(label, values, ratio=False, digits=1):
    cells = [fmt(values.get(s), digits) for s in servers]
    if len(servers) == 2:
        a, b = values.get("cycast"), values.get("icecast")
        r = a / b if ratio and a is not None and b not in (None, 0) else None
        cells.append("" if r is None else f"{r:.3f}" if r < 0.1 else f"{r:.2f}")
    rows.append((label, cells))

def each(fn):
    return {s: fn(s) for s in servers}

n_steady = each(lambda s: get(steady[s], "listeners"))
if any(steady.values()):
    row("**steady** listeners (joins/s)", each(lambda s: None if steady[s] is None else f"{steady[s]['listeners']:,} ({steady[s]['ramp_per_s']:g}/s)"))
    row("answered 200", each(lambda s: get(steady[s], "connects", "answered_200")))
    row("refused / closed early / pending", each(lambda s: None if steady[s] is None else "{refused} / {closed_early} / {pending}".format(**steady[s]["connects"])))
    row("underruns (listeners)", each(lambda s: None if steady[s] is None else f"{steady[s]['quality']['underruns']} ({steady[s]['quality']['listeners_with_underruns']})"))
    row("resyncs (frames checked)", each(lambda s: None if steady[s] is None else f"{steady[s]['quality']['resyncs']} ({steady[s]['quality']['frames_verified']:,})"))
    row("stalls > 1 s / max gap ms", each(lambda s: None if steady[s] is None else f"{steady[s]['quality']['stalls']} / {steady[s]['quality']['max_gap_ms']:.0f}"))
    row("slowest listener / bitrate", each(lambda s: get(steady[s], "throughput", "slowest_ratio")), digits=3)
    row("TTFB p50 ms (during ramp)", each(lambda s: get(steady[s], "ttfb", "p50_ms")), ratio=True)
    row("TTFB p99 ms (during ramp)", each(lambda s: get(steady[s], "ttfb", "p99_ms")), ratio=True)
    row("steady phase s / delivered GB", each(lambda s: None if steady[s] is None else f"{steady[s]['throughput']['steady_seconds']:.0f} / {steady[s]['throughput']['steady_bytes'] / 1e9:.2f}"))
    row("server CPU, share of one core", each(lambda s: get(steady[s], "server", "cpu_share")), ratio=True, digits=3)
    row("**server CPU s per GB**", each(lambda s: get(steady[s], "server", "cpu_seconds_per_gb")), ratio=True, digits=2)
    row("server RSS end MB", each(lambda s: get(steady[s], "server", "rss_end_mb")), ratio=True)
    row("server RSS peak MB", each(lambda s: get(steady[s], "server", "rss_peak_mb")), ratio=True)
    row("load generators: processes, CPU s", each(lambda s: generators(steady[s])))
if any(storm.values()):
    nd = each(netstat_delta)
    tc = each(thread_cpu)
    row("**storm** joiners (joins/s) over playing", each(lambda s: None if storm[s] is None else f"{storm[s]['listeners']:,} ({storm[s]['ramp_per_s']:g}/s) over {get(base[s], 'listeners') or 0:,}"))
    row("joiners answered 200", each(lambda s: get(storm[s], "connects", "answered_200")))
    row("joiners refused / pending at end", each(lambda s: None if storm[s] is None else "{refused} / {pending}".format(**storm[s]["connects"])))
    row("**join TTFB p50 ms**", each(lambda s: get(storm[s], "ttfb", "p50_ms")), ratio=True)
    row("**join TTFB p99 ms**", each(lambda s: get(storm[s], "ttfb", "p99_ms")), ratio=True)
    row("join TTFB max ms", each(lambda s: get(storm[s], "ttfb", "max_ms")), ratio=True)
    row("playing listeners: underruns / closed early", each(lambda s: None if base[s] is None else f"{base[s]['quality']['underruns']} / {base[s]['connects']['closed_early']}"))
    row("accept queue max (Recv-Q)", each(accept_queue_max))
    row("listen overflows / SYN drops", each(lambda s: None if nd[s] is None else f"{nd[s].get('ListenOverflows', 0)} / {nd[s].get('ListenDrops', 0)}"))
    row("server CPU s while joining", each(lambda s: sum(tc[s].values()) if tc[s] else None), digits=2)
    row("  by thread", each(lambda s: ", ".join(f"{k} {v:.2f}" for k, v in sorted(tc[s].items(), key=lambda kv: -kv[1]) if v >= 0.01) or None))

header = ["", *servers] + (["cycast / Icecast"] if len(servers) == 2 else [])
if rows:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for label, cells in rows:
        print("| " + " | ".join([label, *cells]) + " |")

# The engines scenario: the runs of BENCH_ENGINES side by side, plain and ICY listeners, as
# engines.txt lists them (label, engine and cycast's environment, ICY); older results: the two
# engines.
runs = [(r[0], r[1], r[2] == "1") for r in (l.split("\t") for l in open(os.path.join(out, "engines.txt")).read().splitlines())] \
    if os.path.exists(os.path.join(out, "engines.txt")) \
    else [(f"engine-{e}{v}", e, v == "-icy") for v in ("", "-icy") for e in ("send", "io_uring")]
runs = [(label, e, icy, load(f"{label}-steady.json")) for label, e, icy in runs]
runs = [r for r in runs if r[3]]
if runs:
    print()
    seen = {}
    cols = []
    for _, e, v, _ in runs:
        seen[(e, v)] = seen.get((e, v), 0) + 1
        cols.append(f"{e}{' ICY' if v else ''}{f' #{seen[(e, v)]}' if seen[(e, v)] > 1 else ''}")
    print("| fan-out engine | " + " | ".join(cols) + " |")
    print("|" + "|".join(["---"] + ["---:"] * len(cols)) + "|")
    def erow(label, fn):
        print(f"| {label} | " + " | ".join(fmt(fn(d)) for *_, d in runs) + " |")
    erow("listeners answered", lambda d: f"{d['connects']['answered_200']:,} of {d['listeners']:,}")
    erow("underruns / resyncs", lambda d: f"{d['quality']['underruns']} / {d['quality']['resyncs']}")
    erow("TTFB p99 ms (during ramp)", lambda d: get(d, "ttfb", "p99_ms"))
    erow("delivered GB (steady)", lambda d: f"{d['throughput']['steady_bytes'] / 1e9:.2f}")
    erow("server CPU, share of one core", lambda d: f"{get(d, 'server', 'cpu_share'):.3f}")
    erow("**server CPU s per GB**", lambda d: f"{get(d, 'server', 'cpu_seconds_per_gb'):.3f}")
    erow("server RSS peak MB", lambda d: get(d, "server", "rss_peak_mb"))
    erow("load generators: processes, CPU s", generators)
    print()
    # Each variant's mean over its runs (BENCH_ENGINES may list a variant more than once).
    per_gb = {}
    for _, e, v, d in runs:
        g = get(d, "server", "cpu_seconds_per_gb")
        if g:
            per_gb.setdefault((e, v), []).append(g)
    for (e, v), values in per_gb.items():
        base = per_gb.get(("send", v))
        if e == "send" or not base:
            continue
        ga, gb = sum(values) / len(values), sum(base) / len(base)
        r = ga / gb
        kind = "ICY listeners" if v else "plain listeners"
        runs_note = f"; means of {len(values)} and {len(base)} runs" if len(values) + len(base) > 2 else ""
        print(f"- {e} CPU s per GB at most 0.85x send's ({kind}): {'met' if r <= 0.85 else 'missed'} "
              f"(ratio {r:.3f}: {ga:.3f} against {gb:.3f}{runs_note})")

# The https scenario: cycast plain, cycast HTTPS, Icecast HTTPS, nginx -> cycast, then the
# handshake storm on cycast HTTPS.
hruns = [("https-cycast-plain", "cycast HTTP"), ("https-cycast-tls", "cycast HTTPS"),
         ("https-icecast-tls", "Icecast HTTPS"), ("https-nginx-tls", "nginx TLS -> cycast")]
hruns = [(label, title, load(f"{label}-steady.json")) for label, title in hruns]
hruns = [r for r in hruns if r[2]]
hstorm, hbase = load("https-cycast-tls-storm.json"), load("https-cycast-tls-storm-base.json")
def ms_pair(t):
    return "-" if not t or t.get("p99_ms") is None else f"{t['p50_ms']:,.1f} / {t['p99_ms']:,.1f}"
if hruns:
    print()
    print("| HTTPS scenario | " + " | ".join(t for _, t, _ in hruns) + " |")
    print("|" + "|".join(["---"] + ["---:"] * len(hruns)) + "|")
    def hrow(label, fn):
        print(f"| {label} | " + " | ".join(fmt(fn(d)) for *_, d in hruns) + " |")
    hrow("listeners answered", lambda d: f"{d['connects']['answered_200']:,} of {d['listeners']:,}")
    hrow("refused / closed early / pending", lambda d: "{refused} / {closed_early} / {pending}".format(**d["connects"]))
    hrow("underruns (listeners) / resyncs", lambda d: f"{d['quality']['underruns']} ({d['quality']['listeners_with_underruns']}) / {d['quality']['resyncs']}")
    hrow("TTFB p50 / p99 ms (during ramp)", lambda d: ms_pair(d.get("ttfb")))
    hrow("handshake p50 / p99 ms", lambda d: ms_pair(d.get("handshake")))
    hrow("delivered GB (steady)", lambda d: f"{d['throughput']['steady_bytes'] / 1e9:.2f}")
    hrow("server CPU, share of one core", lambda d: None if not d.get("server") else f"{d['server']['cpu_share']:.3f}")
    hrow("**server CPU s per GB**", lambda d: None if not get(d, "server", "cpu_seconds_per_gb") else f"{d['server']['cpu_seconds_per_gb']:.2f}")
    hrow("server RSS peak MB", lambda d: get(d, "server", "rss_peak_mb"))
    hrow("load generator CPU s", lambda d: d.get("client_cpu_seconds"))
    if hstorm:
        print()
        print("| HTTPS handshake storm on cycast | |")
        print("|---|---:|")
        print(f"| joiners (joins/s) over HTTPS listeners playing | {hstorm['listeners']:,} ({hstorm['ramp_per_s']:g}/s) over {get(hbase, 'listeners') or 0:,} |")
        print(f"| joiners answered / refused / pending | {hstorm['connects']['answered_200']:,} / {hstorm['connects']['refused']} / {hstorm['connects']['pending']} |")
        print(f"| **join TTFB p50 / p99 ms** | {ms_pair(hstorm.get('ttfb'))} |")
        print(f"| join TTFB max ms | {fmt(get(hstorm, 'ttfb', 'max_ms'))} |")
        print(f"| join handshake p50 / p99 ms | {ms_pair(hstorm.get('handshake'))} |")
        print(f"| joiners: underruns | {hstorm['quality']['underruns']} |")
        print(f"| playing listeners: underruns / closed early | {'-' if not hbase else str(hbase['quality']['underruns']) + ' / ' + str(hbase['connects']['closed_early'])} |")
        print(f"| accept queue max (Recv-Q) | {fmt(accept_queue_max('https-cycast-tls'))} |")
        tcs = thread_cpu("https-cycast-tls")
        print(f"| server CPU s while joining | {fmt(sum(tcs.values()) if tcs else None, 2)} |")
    print()
    by = {label: d for label, _, d in hruns}
    def per_gb(label):
        return get(by.get(label), "server", "cpu_seconds_per_gb")
    tls_, plain_, ice_, ngx_ = (per_gb(l) for l in ("https-cycast-tls", "https-cycast-plain", "https-icecast-tls", "https-nginx-tls"))
    if tls_ and plain_:
        r = tls_ / plain_
        print(f"- cycast HTTPS CPU s per GB at most 1.6x cycast plain HTTP: {'met' if r <= 1.6 else 'missed'} (ratio {r:.2f})")
    if tls_ and ice_:
        r = tls_ / ice_
        print(f"- cycast HTTPS CPU s per GB at most 1/3 of Icecast HTTPS: {'met' if r <= 1 / 3 else 'missed'} (ratio {r:.2f})")
    if tls_ and ngx_:
        print(f"- cycast HTTPS CPU s per GB against nginx TLS in front of cycast: ratio {tls_ / ngx_:.2f}")
    if hstorm:
        p99 = get(hstorm, "ttfb", "p99_ms")
        underruns = hstorm["quality"]["underruns"] + (hbase["quality"]["underruns"] if hbase else 0)
        ok = p99 is not None and p99 < 150 and hstorm["connects"]["answered_200"] == hstorm["listeners"]
        print(f"- HTTPS handshake storm join TTFB p99 under 150 ms: {'met' if ok else 'missed'} (p99 {fmt(p99)} ms, {hstorm['connects']['answered_200']:,} of {hstorm['listeners']:,} answered)")
        print(f"- HTTPS handshake storm zero underruns: {'met' if underruns == 0 else 'missed'} ({underruns})")

# Targets of the benchmark, judged on the cycast figures.
print()
c, i = steady.get("cycast"), steady.get("icecast")
def verdict(ok):
    return "met" if ok else "missed"
if c:
    q, k = c["quality"], c["connects"]
    ok = k["answered_200"] == c["listeners"] and q["underruns"] == 0 and q["resyncs"] == 0 and k["closed_early"] == 0
    print(f"- {c['listeners']:,} listeners all answered, zero underruns and resyncs: {verdict(ok)} "
          f"({k['answered_200']:,} answered, {q['underruns']} underruns, {q['resyncs']} resyncs, {k['closed_early']} closed early)")
st = storm.get("cycast")
if st:
    p99 = st["ttfb"]["p99_ms"]
    ok = p99 is not None and p99 < 100 and st["connects"]["answered_200"] == st["listeners"]
    print(f"- join storm TTFB p99 under 100 ms: {verdict(ok)} (p99 {fmt(p99)} ms, {st['connects']['answered_200']:,} of {st['listeners']:,} answered)")
if c and i and get(c, "server", "cpu_seconds_per_gb") and get(i, "server", "cpu_seconds_per_gb"):
    r = c["server"]["cpu_seconds_per_gb"] / i["server"]["cpu_seconds_per_gb"]
    print(f"- CPU s per GB at most 1/3 of Icecast's: {verdict(r <= 1 / 3)} (ratio {r:.2f})")
if c and c.get("server"):
    limit = ring_bytes_mb + 64
    peak = c["server"]["rss_peak_mb"]
    print(f"- RSS at most ring + 64 MB ({limit:.0f} MB): {verdict(peak <= limit)} (peak {peak:.1f} MB)")
PY

echo
cat "$OUT/settings.txt"
echo
cat "$OUT/table.md"
echo
echo "results: $OUT"
