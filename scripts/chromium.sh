#!/usr/bin/env bash
# Prints the path of a headless-capable Chromium for the browser tests, installing Debian's
# chromium package when none is there (needs root + apt-get; Playwright's own browser download
# is not used: it cannot reach its CDN here, and Debian's build is kept current by apt).
set -euo pipefail
for c in /usr/bin/chromium /usr/bin/chromium-browser; do
  [ -x "$c" ] && { echo "$c"; exit 0; }
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Chromium from Debian packages (once)..." >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  [ -x /usr/bin/chromium ] && { echo /usr/bin/chromium; exit 0; }
fi
echo "Chromium not found: install it (Debian: apt-get install chromium)." >&2
exit 1
