#!/usr/bin/env bash
# Copies the dashboard's browser libraries from node_modules (installed from the npm
# registry by `npm ci`, versions pinned in package.json / package-lock.json) into
# dashboard/static/dashboard/vendor/, each with its LICENSE. The copies are committed,
# so the app runs without node; run this after changing a version, then collectstatic.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules/uplot ] || npm ci --no-audit --no-fund
target=dashboard/static/dashboard/vendor/uplot
mkdir -p "$target"
cp node_modules/uplot/dist/uPlot.esm.js node_modules/uplot/dist/uPlot.min.css "$target/"
cp node_modules/uplot/LICENSE "$target/LICENSE"
version=$(node -p 'require("./node_modules/uplot/package.json").version')
echo "uPlot $version (MIT), from the npm registry: package-lock.json" > "$target/VERSION"
echo "copied uPlot $version into $target"
