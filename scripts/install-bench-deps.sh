#!/usr/bin/env bash
# Installs what the end-to-end benchmark (scripts/bench.sh) compares cycast with: Debian's
# Icecast 2 (`icecast2`). Its packaged service is neither configured nor started: the benchmark
# runs its own Icecast with a loopback-only config in a temporary directory.
# Idempotent: does nothing when icecast2 is already installed.
set -euo pipefail

if command -v icecast2 >/dev/null 2>&1 || [ -x /usr/bin/icecast2 ]; then
    exit 0
fi

sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
echo "installing benchmark dependencies: icecast2"
$sudo_cmd apt-get update -qq
# Keep the package's init script from starting a system-wide Icecast.
echo exit 101 | $sudo_cmd tee /usr/sbin/policy-rc.d >/dev/null
$sudo_cmd chmod +x /usr/sbin/policy-rc.d
trap '$sudo_cmd rm -f /usr/sbin/policy-rc.d' EXIT
# The package asks (debconf) whether to configure passwords; answer no.
echo "icecast2 icecast2/icecast-setup boolean false" | $sudo_cmd debconf-set-selections 2>/dev/null || true
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends icecast2 >/dev/null
# Some package versions enable the service anyway; make sure it is not running.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $sudo_cmd systemctl disable --now icecast2 >/dev/null 2>&1 || true
fi
command -v icecast2 >/dev/null 2>&1 || { echo "icecast2 did not install" >&2; exit 1; }
