#!/usr/bin/env bash
# Installs the real clients tests/interop.rs drives: libshout's `shout` and ezstream (sources),
# Liquidsoap (source with metadata), Prometheus (scrapes /metrics), curl and ffmpeg (listeners).
# Idempotent: apt-get runs only when something is missing, and installs only that.
set -euo pipefail

# program -> Debian package
declare -A wanted=(
    [shout]=libshout-tools
    [ezstream]=ezstream
    [liquidsoap]=liquidsoap
    [prometheus]=prometheus
    [curl]=curl
    [ffmpeg]=ffmpeg
    [ffprobe]=ffmpeg
)
missing=()
for program in "${!wanted[@]}"; do
    command -v "$program" >/dev/null 2>&1 || missing+=("${wanted[$program]}")
done
[ ${#missing[@]} -gt 0 ] || exit 0

packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
echo "installing interoperability test dependencies: $packages"
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
apt_get() {
    # Other installers may run beside this one; wait for the dpkg lock instead of failing.
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 "$@"
}
apt_get update -qq
# The tests start these programs themselves: the packaged services (prometheus, liquidsoap,
# ezstream) must not start, hold ports or survive the install.
# An existing policy (container images often have one) is left as it was.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    echo exit 101 | $sudo_cmd tee /usr/sbin/policy-rc.d >/dev/null
    $sudo_cmd chmod +x /usr/sbin/policy-rc.d
    trap '$sudo_cmd rm -f /usr/sbin/policy-rc.d' EXIT
fi
# shellcheck disable=SC2086
apt_get install -y -qq --no-install-recommends $packages >/dev/null
