#!/usr/bin/env bash
# Rebuilds the web console's bundle (crates/dmq-metadata/ui/) from its source (console/):
# installs the pinned npm packages of console/package-lock.json (Preact, htm, uPlot, esbuild),
# checks the metrics parser, bundles and minifies with esbuild, and copies index.html and the
# icon. The bundle is committed, so `cargo build` never needs Node.js; run this after changing
# anything under console/ and commit both.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$REPO/console"
OUT="$REPO/crates/dmq-metadata/ui"
command -v npm >/dev/null 2>&1 || { echo "build-console: npm is needed (Node 18+)" >&2; exit 1; }
cd "$SRC"
npm ci --no-audit --no-fund --loglevel=error >&2
node --test src/prom.test.mjs >&2
mkdir -p "$OUT"
./node_modules/.bin/esbuild src/main.js --bundle --minify --format=esm --target=es2020 \
    --legal-comments=none --outfile="$OUT/app.js" --log-level=warning
cp index.html favicon.svg "$OUT/"
ls -l "$OUT" >&2
