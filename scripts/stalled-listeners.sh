#!/usr/bin/env bash
# Measures what listeners that never read cost: N clients connect to /stream and never read
# while a source streams 128 kbps in real time. Every second it prints the server sockets'
# send buffers and queued bytes (`ss -tm`), the system's TCP memory (/proc/net/sockstat, all
# processes), and the listener count, until every stalled listener has been dropped.
#
#   scripts/stalled-listeners.sh [N]      (default 2000; loopback only)
#
# CYCAST_BIN picks the binary (default target/release/cycast, else target/debug/cycast);
# EXTRA_LIMITS adds lines to the limits block (e.g. 'send_buffer = 131072').
set -euo pipefail

N=${1:-2000}
LISTEN_PORT=${LISTEN_PORT:-18400}
SOURCE_PORT=${SOURCE_PORT:-18401}
cd "$(dirname "$0")/.."
BIN=${CYCAST_BIN:-}
if [ -z "$BIN" ]; then
  BIN=target/release/cycast
  [ -x "$BIN" ] || BIN=${CARGO_TARGET_DIR:-target}/debug/cycast
fi
[ -x "$BIN" ] || { echo "no cycast binary; build it or set CYCAST_BIN" >&2; exit 1; }
command -v ss >/dev/null || { echo "ss (iproute2) is needed" >&2; exit 1; }
[ "$(ulimit -n)" -ge $((2 * N + 100)) ] || ulimit -n $((2 * N + 100))

WORK=$(mktemp -d)
cleanup() {
  [ -n "${CLIENTS:-}" ] && kill "$CLIENTS" 2>/dev/null || true
  [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/cycast.hcl" <<EOF
server { mount_point = "/stream" }
limits {
  max_listeners = 0
  ${EXTRA_LIMITS:-}
}
playlist { directory = "$WORK/no-music" }
EOF

"$BIN" --config "$WORK/cycast.hcl" --host 127.0.0.1 \
  --listen-port "$LISTEN_PORT" --source-port "$SOURCE_PORT" 2>"$WORK/cycast.log" &
SERVER=$!
for _ in $(seq 50); do
  ss -tlnH "( sport = :$LISTEN_PORT )" | grep -q . && break
  sleep 0.1
done

tcp_mem_pages() { awk '/^TCP:/ { for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat; }
BASE_PAGES=$(tcp_mem_pages)
PAGE_KB=$(( $(getconf PAGESIZE) / 1024 ))

# The source (real-time 128 kbps MP3 frames) and the N stalled clients, in one process.
python3 - "$N" "$LISTEN_PORT" "$SOURCE_PORT" >"$WORK/clients.log" 2>&1 <<'EOF' &
import socket, sys, time
n, lport, sport = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
src = socket.create_connection(("127.0.0.1", sport))
src.sendall(b"SOURCE /stream HTTP/1.0\r\nAuthorization: Basic c291cmNlOmhhY2ttZQ==\r\n"
            b"Content-Type: audio/mpeg\r\n\r\n")
frame = bytes([0xFF, 0xFB, 0x90, 0x64]) + bytes(413)   # 128 kbps, 44.1 kHz, 417 bytes
start, sent = time.monotonic(), 0
def feed_until(t):
    global sent
    while start + sent * 1152 / 44100 < t:
        src.sendall(frame)
        sent += 1
feed_until(time.monotonic() + 2)          # a burst's worth in the ring first
time.sleep(2)
clients = []
for _ in range(n):
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # small window: measure our side
    c.connect(("127.0.0.1", lport))
    c.sendall(b"GET /stream HTTP/1.0\r\nUser-Agent: stalled\r\n\r\n")
    clients.append(c)
    feed_until(time.monotonic())
print("connected", n, flush=True)
while True:
    feed_until(time.monotonic())
    time.sleep(0.05)
EOF
CLIENTS=$!

until grep -q connected "$WORK/clients.log" 2>/dev/null; do
  kill -0 "$CLIENTS" 2>/dev/null || { cat "$WORK/clients.log"; exit 1; }
  sleep 0.1
done
T0=$(date +%s.%N)
printf '%6s %9s %10s %12s %12s %14s\n' secs listeners sockets max_tb_B queued_B tcp_mem_delta_kB
# max_tb_B: largest send buffer among sockets holding data; queued_B: sum of their w.
PEAK_QUEUED=0 PEAK_PAGES=0 MAX_TB=0
while :; do
  NOW=$(date +%s.%N)
  ELAPSED=$(awk -v a="$T0" -v b="$NOW" 'BEGIN { printf "%.1f", b - a }')
  read -r SOCKS TB QUEUED < <(ss -tmnH state established "( sport = :$LISTEN_PORT )" |
    grep -o 'skmem:([^)]*)' |
    awk -F'[(),]' '{ n++; b = 0; w = 0
                      for (i = 2; i <= NF; i++) { if ($i ~ /^tb/) b = substr($i, 3) + 0; if ($i ~ /^w/) w = substr($i, 2) + 0 }
                      # A socket not yet handed to the fan-out has the kernel default size but holds nothing.
                      q += w; if (w > 0 && b > tb) tb = b } END { print n + 0, tb + 0, q + 0 }')
  PAGES=$(( $(tcp_mem_pages) - BASE_PAGES ))
  LISTENERS=$(curl -s "http://127.0.0.1:$LISTEN_PORT/api/stats" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["total_listeners"])' 2>/dev/null || echo '?')
  printf '%6s %9s %10s %12s %12s %14s\n' "$ELAPSED" "$LISTENERS" "$SOCKS" "$TB" "$QUEUED" $((PAGES * PAGE_KB))
  [ "$QUEUED" -gt "$PEAK_QUEUED" ] && PEAK_QUEUED=$QUEUED
  [ "$PAGES" -gt "$PEAK_PAGES" ] && PEAK_PAGES=$PAGES
  [ "$TB" -gt "$MAX_TB" ] && MAX_TB=$TB
  [ "$LISTENERS" = 0 ] && break
  if awk -v e="$ELAPSED" 'BEGIN { exit !(e > 300) }'; then echo "not all dropped after 300 s"; break; fi
  sleep 1
done
echo "peak: largest send buffer $MAX_TB B, $PEAK_QUEUED B queued on $N sockets" \
  "($((PEAK_QUEUED / N)) B each), TCP memory +$((PEAK_PAGES * PAGE_KB)) kB; all dropped after $ELAPSED s"
