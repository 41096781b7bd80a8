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
source "$(dirname "$0")/lib/station.sh"
listen_port="$(free_port)"
source_port="$(free_port)"
printf 'playlist {\n  directory = "/nonexistent"\n}\n' >"$work/cycast.hcl"
start_cycast "$work/cycast.hcl" --host 127.0.0.1 --listen-port "$listen_port" --source-port "$source_port"
start_source "$((2 * seconds + 120))"
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
