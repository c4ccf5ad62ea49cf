#!/bin/sh
# Builds the static viewer into ui/dist: the noVNC client (npm @novnc/novnc, pinned in
# package-lock.json) plus our small viewer page. Serve it with `zigral proxy --web ui/dist`.
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
rm -rf dist
mkdir -p dist/novnc
cp viewer/index.html viewer/viewer.js viewer/viewer.css dist/
cp -R node_modules/@novnc/novnc/core node_modules/@novnc/novnc/vendor dist/novnc/
cp node_modules/@novnc/novnc/LICENSE.txt dist/novnc/
echo "ui/dist built ($(find dist -type f | wc -l) files)"
