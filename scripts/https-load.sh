#!/usr/bin/env bash
# N plain listeners, then N HTTPS listeners (rustls client in cycast-load, TLS 1.3, ECDSA P-256
# certificate made here), on one cycast fed in real time, back to back; prints cycast's CPU per
# delivered GB, RSS, TTFB and handshake times for each. Everything listens on 127.0.0.1 and
# lives in a temporary directory removed at exit.
#
# Usage: scripts/https-load.sh [N] [SECONDS] [RAMP]   (defaults: 5000 listeners, 40 s, 500/s)
# Binaries: $BIN_DIR (default target/release, built when missing). Not part of `make test`.
set -euo pipefail

listeners="${1:-5000}"
seconds="${2:-40}"
ramp="${3:-500}"
source "$(dirname "$0")/lib/station.sh"
source "$(dirname "$0")/lib/cert.sh"
ulimit -n "$(ulimit -Hn)"

make_localhost_cert "$work"
listen_port="$(free_port)"
source_port="$(free_port)"
tls_port="$(free_port)"
cat >"$work/cycast.hcl" <<EOF
server {
  host = "127.0.0.1"
  listen_port = $listen_port
  source_port = $source_port
  listen_backlog = 4096
}
limits {
  queue_size = 524288
  burst_size = 65536
}
playlist { directory = "/nonexistent" }
advanced { access_log = "" }
tls {
  port = $tls_port
  certificate = "$work/cert.pem"
  key = "$work/key.pem"
}
EOF
start_cycast "$work/cycast.hcl"
start_source "$((2 * seconds + 120))"
sleep 2

common=(--listeners "$listeners" --ramp "$ramp" --duration "$seconds" --prebuffer 2
    --verify-every 10 --pid "$cycast_pid" --quiet --json)
"$bin_dir/cycast-load" --url "http://127.0.0.1:$listen_port/stream" "${common[@]}" >"$work/plain.json"
"$bin_dir/cycast-load" --url "https://localhost:$tls_port/stream" --ca-file "$work/cert.pem" \
    "${common[@]}" >"$work/https.json"

python3 - "$work/plain.json" "$work/https.json" <<'PY'
import json, sys
plain, https = (json.load(open(p)) for p in sys.argv[1:3])
print("| | plain HTTP | HTTPS |")
print("|---|---:|---:|")
def both(name, get):
    print(f"| {name} | {get(plain)} | {get(https)} |")
both("listeners answered", lambda r: f"{r['connects']['answered_200']:,} of {r['listeners']:,}")
both("underruns / resyncs", lambda r: f"{r['quality']['underruns']} / {r['quality']['resyncs']}")
both("TTFB p50 / p99 ms (ramp)", lambda r: f"{r['ttfb']['p50_ms']:.1f} / {r['ttfb']['p99_ms']:.1f}")
both("handshake p50 / p99 ms", lambda r: "-" if not r.get("handshake") else
     f"{r['handshake']['p50_ms']:.1f} / {r['handshake']['p99_ms']:.1f}")
both("server CPU, share of a core", lambda r: f"{r['server']['cpu_share']:.3f}")
both("server CPU s per GB", lambda r: f"{r['server']['cpu_seconds_per_gb']:.2f}")
both("server RSS peak MB", lambda r: f"{r['server']['rss_peak_mb']:.1f}")
ratio = https["server"]["cpu_seconds_per_gb"] / plain["server"]["cpu_seconds_per_gb"]
print(f"\nHTTPS / plain, CPU s per GB: {ratio:.2f}")
PY
