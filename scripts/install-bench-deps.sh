#!/usr/bin/env bash
# Installs what the end-to-end benchmark (scripts/bench.sh) compares cycast with: Debian's
# Icecast 2 (`icecast2`, linked with OpenSSL for its own TLS), nginx (TLS termination in front
# of cycast) and the openssl CLI (the https scenario's certificate). Their packaged services are
# neither configured nor started: the benchmark runs its own Icecast and nginx with loopback-only
# configs in a temporary directory.
# Idempotent: installs only what is missing, so repeated runs cost nothing.
set -euo pipefail

missing=()
command -v icecast2 >/dev/null 2>&1 || [ -x /usr/bin/icecast2 ] || missing+=(icecast2)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ ${#missing[@]} -eq 0 ] && exit 0

sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
echo "installing benchmark dependencies: ${missing[*]}"
$sudo_cmd apt-get -o DPkg::Lock::Timeout=600 update -qq
# Keep the packages' init scripts from starting a system-wide Icecast or nginx.
echo exit 101 | $sudo_cmd tee /usr/sbin/policy-rc.d >/dev/null
$sudo_cmd chmod +x /usr/sbin/policy-rc.d
trap '$sudo_cmd rm -f /usr/sbin/policy-rc.d' EXIT
# The icecast2 package asks (debconf) whether to configure passwords; answer no.
echo "icecast2 icecast2/icecast-setup boolean false" | $sudo_cmd debconf-set-selections 2>/dev/null || true
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
# Some package versions enable the services anyway; make sure they are not running.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    for service in icecast2 nginx; do
        $sudo_cmd systemctl disable --now "$service" >/dev/null 2>&1 || true
    done
fi
for tool in icecast2 nginx openssl; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || { echo "$tool did not install" >&2; exit 1; }
done
