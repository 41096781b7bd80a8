#!/bin/bash
# CPU the dead-air detector costs: the ingest threads' CPU time (schedstat, ns) while one
# 128 kb/s stereo MP3 source streams in real time, with silence.seconds = 15 (every frame
# decoded and measured) and 0 (detector off), on one release cycast:
#   scripts/dead-air-cpu.sh [SECONDS]      (default 60)
# The source is ffmpeg sending pink noise (loud, dense: the decoder's costly case) with -re.
set -euo pipefail
secs=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CARGO_TARGET_DIR:-$root/target}/release/cycast
work=$(mktemp -d)
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
mkdir "$work/empty"
# CPU nanoseconds of the ingest executor's threads (glommio names them cycast-ingest-N).
ingest_ns() {
  local total=0 task
  for task in /proc/$server/task/*; do
    if grep -q '^cycast-ingest' "$task/comm"; then
      total=$((total + $(cut -d' ' -f1 "$task/schedstat")))
    fi
  done
  echo $total
}
ffmpeg -nostdin -v error -f lavfi \
  -i "anoisesrc=color=pink:amplitude=0.3:sample_rate=44100:duration=$secs" \
  -ac 2 -c:a libmp3lame -b:a 128k -f mp3 "$work/noise.mp3"
for seconds in 15 0; do
  cat > "$work/bench.hcl" <<HCL
server {
  shards = 1
}
playlist {
  directory = "$work/empty"
}
silence {
  seconds = $seconds
}
HCL
  "$bin" --config "$work/bench.hcl" --host 127.0.0.1 --listen-port 0 --source-port 0 \
    2>"$work/server.log" &
  server=$!
  until grep -q 'sources=' "$work/server.log"; do sleep 0.1; done
  source_addr=$(grep -o 'sources=[0-9.:]*' "$work/server.log" | head -1 | cut -d= -f2)
  before=$(ingest_ns)
  ffmpeg -nostdin -v error -re -i "$work/noise.mp3" -c copy -content_type audio/mpeg \
    -f mp3 "icecast://source:hackme@$source_addr/stream"
  after=$(ingest_ns)
  kill "$server"; wait "$server" 2>/dev/null || true; server=
  python3 -c "ns=$after-$before
print('silence.seconds=%-3s ingest cpu_s=%.3f over %ss = %.2f %% of a core' % ('$seconds', ns/1e9, $secs, ns/1e7/$secs))"
done
