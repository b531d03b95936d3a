#!/usr/bin/env bash
# Re-vendor the dashboard's chart library from the npm registry (run by hand to upgrade it).
# The file is committed so a server needs no build step and no network at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${1:-4.5.1}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack -q "chart.js@$VERSION" >/dev/null && tar xzf chart.js-*.tgz)
cp "$tmp/package/dist/chart.umd.min.js" serving/static/vendor/chart.umd.min.js
cp "$tmp/package/LICENSE.md" serving/static/vendor/chart.js.LICENSE.md
echo "vendored chart.js $VERSION into serving/static/vendor/"
