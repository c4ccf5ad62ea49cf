#!/bin/sh
# Builds ui/dist from the lockfile (npm ci):
#   ui/dist/app   the web app (ui/app, Vite + TypeScript) the control plane serves at /
#   ui/dist       the bare noVNC viewer page the proxy serves (`zigral proxy --web ui/dist`)
# Running the appliance needs none of node_modules: only these static files.
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
npx tsc --noEmit -p .
rm -rf dist
mkdir -p dist/novnc
cp viewer/index.html viewer/viewer.js viewer/viewer.css dist/
cp -R node_modules/@novnc/novnc/core node_modules/@novnc/novnc/vendor dist/novnc/
cp node_modules/@novnc/novnc/LICENSE.txt dist/novnc/
npx vite build --logLevel warn
echo "ui/dist built ($(find dist -type f | wc -l) files; the app: $(du -sk dist/app | cut -f1) KiB)"
