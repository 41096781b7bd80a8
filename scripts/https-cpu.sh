#!/bin/bash
# Server CPU per delivered GB, plain HTTP against HTTPS, on one release cycast:
#   scripts/https-cpu.sh [LISTENERS] [SECONDS] [ENGINE]      (defaults 1000 30 send)
# One ffmpeg source (music/01-morning-tone.mp3, 128 kbps, real time), LISTENERS Python asyncio
# clients opened at 500/s; CPU from /proc/PID/stat over SECONDS after a 3 s settle.
set -euo pipefail
n=${1:-1000}; secs=${2:-30}; engine=${3:-send}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CARGO_TARGET_DIR:-$root/target}/release/cycast
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cd "$work"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key \
  -out ca.pem -days 2 -subj /CN=bench-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout key.pem \
  -out req.csr -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost' > ext
openssl x509 -req -in req.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 1 \
  -extfile ext 2>/dev/null
cat > bench.hcl <<HCL
server {
  shards = 2
}
fanout {
  engine = "$engine"
}
tls {
  port        = 18443
  certificate = "$work/cert.pem"
  key         = "$work/key.pem"
}
HCL
for mode in plain tls; do
  "$bin" --config bench.hcl --host 127.0.0.1 --listen-port 18001 --source-port 18000 2>server.log &
  server=$!
  sleep 1
  ffmpeg -nostdin -v error -re -stream_loop -1 -i "$root/music/01-morning-tone.mp3" -c copy \
    -content_type audio/mpeg -f mp3 icecast://source:hackme@127.0.0.1:18000/stream &
  source=$!
  sleep 2
  port=18001; [ "$mode" = tls ] && port=18443
  python3 "$root/scripts/https-listeners.py" 127.0.0.1 $port "$n" "$secs" $mode ca.pem \
    >client.out 2>client.err &
  client=$!
  until grep -q start client.out; do sleep 0.1; done
  before=$(awk '{print $14+$15}' /proc/$server/stat)
  until grep -q bytes client.out; do sleep 0.2; done
  after=$(awk '{print $14+$15}' /proc/$server/stat)
  bytes=$(awk '/bytes/{print $2}' client.out)
  python3 -c "c=($after-$before)/$(getconf CLK_TCK); g=$bytes/1e9
print('$mode engine=$engine listeners=$n cpu_s=%.2f GB=%.3f cpu_s_per_GB=%.2f' % (c, g, c/g))"
  kill $client $source $server 2>/dev/null || true
  wait 2>/dev/null || true
done
