#!/usr/bin/env bash
# Make sure Debian's Chromium is installed: the dashboard's browser test
# (tests_py/test_dashboard_browser.py) drives it with Playwright for Python,
# whose own browser download is not used.
set -euo pipefail

CHROMIUM="${QUEUERT_CHROMIUM:-/usr/bin/chromium}"
if [[ -x "$CHROMIUM" ]]; then
    echo "ensure-chromium: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
    exit 0
fi
echo "ensure-chromium: installing chromium with apt"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq chromium >/dev/null 2>&1 || {
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
}
"$CHROMIUM" --version
