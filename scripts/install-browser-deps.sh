#!/usr/bin/env bash
# Installs what tests/browser.rs drives: Debian's Chromium, Node.js and playwright-core (which
# controls that Chromium over CDP and never downloads a browser of its own), and hls.js, which
# one test plays the HLS output with. Versions are pinned in tests/browser/package-lock.json.
# Idempotent: installs only what is missing, so repeated runs cost nothing.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# Screenshots need a font with Latin glyphs even on minimal images.
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)

if [ ${#missing[@]} -gt 0 ]; then
    echo "installing browser test dependencies: ${missing[*]}"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
    echo "playwright-core needs Node.js 20 or later; found $(node --version)" >&2
    exit 1
fi

modules="$here/tests/browser/node_modules"
if [ ! -f "$modules/playwright-core/package.json" ] || [ ! -f "$modules/hls.js/package.json" ]; then
    echo "installing playwright-core and hls.js (npm)"
    (cd "$here/tests/browser" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
