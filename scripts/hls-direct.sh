#!/usr/bin/env bash
# Serves the same audience twice from one cycast fed in real time: N `cycast-load --hls`
# players straight from cycast (no cache), then N Icecast-style stream listeners, back to back,
# and prints cycast's CPU seconds per delivered GB and RSS for each. Everything listens on
# 127.0.0.1 and lives in a temporary directory removed at exit.
#
# Usage: scripts/hls-direct.sh [N] [SECONDS]     (defaults: 2000 clients, 60 s)
# Binaries: $BIN_DIR (default target/release, built when missing). Not part of `make test`.
set -euo pipefail

clients="${1:-2000}"
seconds="${2:-60}"
here="$(cd "$(dirname "$0")/.." && pwd)"
bin_dir="${BIN_DIR:-$here/target/release}"
if [ ! -x "$bin_dir/cycast" ] || [ ! -x "$bin_dir/cycast-load" ]; then
    echo "building release binaries into $bin_dir" >&2
    (cd "$here" && cargo build --release --bins)
fi

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listen_port="$(free_port)"
source_port="$(free_port)"
printf 'playlist {\n  directory = "/nonexistent"\n}\n' >"$work/cycast.hcl"
"$bin_dir/cycast" --config "$work/cycast.hcl" --host 127.0.0.1 \
    --listen-port "$listen_port" --source-port "$source_port" 2>"$work/cycast.log" &
cycast_pid=$!
pids+=("$cycast_pid")
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$listen_port/status-json.xsl" && break
    sleep 0.1
done
"$bin_dir/cycast-load" source --url "http://source:hackme@127.0.0.1:$source_port/stream" \
    --file "$here/music/01-morning-tone.mp3" --loop --duration "$((2 * seconds + 120))" \
    2>"$work/source.log" &
pids+=($!)
playlist="http://127.0.0.1:$listen_port/stream/index.m3u8"
for _ in $(seq 300); do
    [ "$(curl -s "$playlist" | grep -c '^#EXTINF' || true)" -ge 3 ] && break
    sleep 0.1
done

ramp="$((clients > 100 ? clients / 5 : 20))"
"$bin_dir/cycast-load" --hls --url "$playlist" --listeners "$clients" --duration "$seconds" \
    --ramp "$ramp" --pid "$cycast_pid" --quiet --json >"$work/hls.json"
"$bin_dir/cycast-load" --url "http://127.0.0.1:$listen_port/stream" --listeners "$clients" \
    --duration "$seconds" --ramp "$ramp" --prebuffer 2 --pid "$cycast_pid" --quiet --json >"$work/stream.json"

python3 - "$work/hls.json" "$work/stream.json" <<'PY'
import json, sys
hls, stream = (json.load(open(p)) for p in sys.argv[1:3])
def row(name, r, faults):
    s = r.get("server") or {}
    print(f"| {name} | {s.get('cpu_share', 0):.3f} | {s.get('cpu_seconds_per_gb') or 0:.2f} | "
          f"{s.get('rss_peak_mb', 0):.1f} | {faults} |")
print("| audience | server CPU, share of a core | server CPU s per GB | RSS peak MB | faults |")
print("|---|---:|---:|---:|---|")
row(f"{hls['clients']} HLS players", hls,
    f"{hls['stalls']} stalls, {hls['underruns']} underruns, {hls['segment_errors']} segment errors")
q = stream["quality"]
row(f"{stream['listeners']} stream listeners", stream,
    f"{q.get('underruns', q)} underruns, {q.get('resyncs', '?')} resyncs")
PY
