#!/usr/bin/env bash
# Runs N `cycast-load --hls` clients for SECONDS through the nginx edge cache of
# deploy/nginx/hls-cdn.conf, in front of a cycast fed in real time by `cycast-load source`, and
# reports how many requests reached cycast (its cycast_hls_requests_total) per playlist
# refresh and per segment, beside what the clients fetched and whether they stalled.
# Everything listens on 127.0.0.1 and lives in a temporary directory removed at exit.
#
# Usage: scripts/hls-cdn.sh [N] [SECONDS]       (defaults: 200 clients, 60 s)
# Binaries: $BIN_DIR (default target/release, built with `cargo build --release --bins`
# when missing). Needs nginx, curl and python3. Not part of `make test`.
set -euo pipefail

clients="${1:-200}"
seconds="${2:-60}"
for tool in nginx curl python3; do
    command -v "$tool" >/dev/null || { echo "hls-cdn.sh needs $tool" >&2; exit 1; }
done
source "$(dirname "$0")/lib/station.sh"
listen_port="$(free_port)"
source_port="$(free_port)"
edge_port="$(free_port)"

cat >"$work/cycast.hcl" <<EOF
playlist {
  directory = "/nonexistent"
}
EOF
start_cycast "$work/cycast.hcl" --host 127.0.0.1 --listen-port "$listen_port" --source-port "$source_port"

# The edge: the example site with its paths and ports moved into the temporary directory.
mkdir -p "$work/snippets" "$work/tmp" "$work/cache"
# Started as root, nginx's workers run as another user: let them into the cache.
chmod 755 "$work"
chmod 777 "$work/tmp" "$work/cache"
cp "$here/deploy/nginx/snippets/cycast-hls-cache.conf" "$work/snippets/"
sed -e "s|/etc/nginx/snippets|$work/snippets|" \
    -e "s|/var/cache/nginx/cycast-hls|$work/cache|" \
    -e "s|127.0.0.1:8001|127.0.0.1:$listen_port|" \
    -e "s|listen 8080;|listen 127.0.0.1:$edge_port;|" \
    -e "s|listen \[::\]:8080;||" \
    "$here/deploy/nginx/hls-cdn.conf" >"$work/site.conf"
cat >"$work/nginx.conf" <<EOF
daemon off;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $work/tmp;
  proxy_temp_path $work/tmp;
  include $work/site.conf;
}
EOF
nginx -p "$work" -e "$work/error.log" -c "$work/nginx.conf" >/dev/null 2>&1 &
pids+=($!)

start_source "$((seconds + 60))"

# Players start three segments from the live edge: wait until the edge lists three.
edge="http://127.0.0.1:$edge_port/stream/index.m3u8"
for _ in $(seq 300); do
    [ "$(curl -s "$edge" | grep -c '^#EXTINF' || true)" -ge 3 ] && break
    sleep 0.1
done
[ "$(curl -s "$edge" | grep -c '^#EXTINF' || true)" -ge 3 ] || {
    echo "the edge never listed three segments; cycast log:" >&2
    cat "$work/cycast.log" "$work/error.log" >&2; curl -si "$edge" | head -5 >&2
    exit 1
}

origin_count() {
    curl -s "http://127.0.0.1:$listen_port/metrics" |
        awk -v kind="kind=\"$1\"" '/^cycast_hls_requests_total/ && index($0, kind) { sum += $NF } END { print sum + 0 }'
}
before_playlists="$(origin_count playlist)"
before_segments="$(origin_count segment)"
# Sequence number of the newest segment a playlist lists.
newest() {
    curl -s "$edge" | awk -F: '/^#EXT-X-MEDIA-SEQUENCE:/ { seq = $2 } /^#EXTINF/ { n++ } END { print seq + n - 1 }'
}
first_newest="$(newest)"
cpu_before="$(awk '{print $14 + $15}' "/proc/$cycast_pid/stat")"

"$bin_dir/cycast-load" --hls --url "$edge" --listeners "$clients" --duration "$seconds" \
    --ramp "$((clients > 100 ? clients / 5 : 20))" --quiet --json >"$work/report.json"

after_playlists="$(origin_count playlist)"
after_segments="$(origin_count segment)"
last_newest="$(newest)"
cpu_after="$(awk '{print $14 + $15}' "/proc/$cycast_pid/stat")"

python3 - "$work/report.json" <<EOF
import json, os, sys
r = json.load(open(sys.argv[1]))
seconds = float(r["duration_s"])
origin_playlists = $after_playlists - $before_playlists
origin_segments = $after_segments - $before_segments
# Distinct segments the clients could fetch: the three each starts behind the live edge,
# plus every one published during the run.
distinct = 3 + $last_newest - $first_newest
tick = os.sysconf("SC_CLK_TCK")
print(f"{r['clients']} clients for {seconds:.0f} s through nginx ({r['url']})")
print(f"  clients fetched {r['playlist_requests']} playlists and {r['segments']} segments "
      f"({r['bytes'] / 1e6:.1f} MB); errors: {r['playlist_errors']} playlist, "
      f"{r['segment_errors']} segment, {r['bad_segments']} bad, {r['timestamp_breaks']} timestamp breaks")
print(f"  stalls {r['stalls']} on {r['clients_with_stalls']} clients, underruns {r['underruns']}, "
      f"{r['clients_playing']} players playing")
print(f"  cycast saw {origin_playlists} playlist requests ({origin_playlists / seconds:.2f}/s; "
      f"the cached playlist lives 1 s) and {origin_segments} segment requests for "
      f"{distinct} distinct segments ({origin_segments / max(distinct, 1):.2f} per segment)")
print(f"  each origin request served {r['playlist_requests'] / max(origin_playlists, 1):.1f} client "
      f"playlist reloads and {r['segments'] / max(origin_segments, 1):.1f} client segment fetches")
print(f"  cycast CPU during the run: {($cpu_after - $cpu_before) / tick:.2f} s")
for e in r["first_errors"]:
    print(f"  {e}")
EOF
