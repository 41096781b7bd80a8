# Shared set-up of the measuring scripts (sourced, not run): release binaries, a temporary
# directory removed at exit with everything started, free loopback ports, a cycast and a
# real-time source.
#
# After sourcing: $here (project root), $bin_dir, $work, and the functions below.

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
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

# A TCP port free on 127.0.0.1 now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_cycast CONFIG [ARGS...]: starts cycast (log in $work/cycast.log), sets $cycast_pid
# and waits until it answers on $listen_port.
start_cycast() {
    local config="$1"
    shift
    "$bin_dir/cycast" --config "$config" "$@" 2>"$work/cycast.log" &
    cycast_pid=$!
    pids+=("$cycast_pid")
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$listen_port/status-json.xsl" && return 0
        sleep 0.1
    done
    echo "cycast did not start; its log:" >&2
    cat "$work/cycast.log" >&2
    return 1
}

# start_source SECONDS: the demo track, looped in real time, to /stream on $source_port.
start_source() {
    "$bin_dir/cycast-load" source --url "http://source:hackme@127.0.0.1:$source_port/stream" \
        --file "$here/music/01-morning-tone.mp3" --loop --duration "$1" 2>"$work/source.log" &
    pids+=($!)
}
