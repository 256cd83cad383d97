#!/usr/bin/env bash
# Installs what the browser and real-client tests need, only when it is missing:
#   - Debian's Chromium at /usr/bin/chromium (tests/test_browser.py, tests/test_conformance.py
#     drive it with playwright's executable_path; playwright's own browser download is never used);
#   - the npm `eventsource` package in tests/node/node_modules (tests/test_conformance.py).
# Safe to run again: a second run installs nothing. Exits non-zero when an install fails.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

if [ ! -x /usr/bin/chromium ]; then
    echo "install-browser-deps: installing chromium"
    apt_install chromium
fi
# Debian's wrapper script prints a harmless shell warning on stderr; the exit status counts.
/usr/bin/chromium --version >/dev/null 2>&1

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "install-browser-deps: installing nodejs and npm"
    apt_install nodejs npm
fi

if [ ! -d tests/node/node_modules/eventsource ]; then
    echo "install-browser-deps: installing tests/node (npm ci)"
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd tests/node && node --input-type=module -e 'await import("eventsource")')
echo "install-browser-deps: chromium, node $(node --version) and tests/node are ready"
