#!/usr/bin/env bash
# Install a real atproto PLC + PDS (npm `@atproto/dev-env`) for the bluesky provider tests.
#
# The install lives outside the clone, under ${XDG_CACHE_HOME:-$HOME/.cache}/plexus/atproto,
# and is reused while the pinned manifest (scripts/peers/atproto-pds/package.json and its
# package-lock.json) is unchanged: the first run takes ~5 minutes (better-sqlite3 compiles
# from source against /usr's Node headers, npm's `nodedir`), later runs return at once.
#
#   scripts/peers/atproto-pds.sh            install if needed, print the install directory
#   scripts/peers/atproto-pds.sh --lock     re-resolve the manifest and refresh the lock file
#
# The tests (tests/providers/pds_helpers.py) find the install through the same directory
# and start scripts/peers/atproto-pds.mjs with it on NODE_PATH.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MANIFEST="$HERE/atproto-pds"
TARGET="${XDG_CACHE_HOME:-$HOME/.cache}/plexus/atproto"
STAMP="$TARGET/.installed"

command -v node >/dev/null 2>&1 || { echo "atproto-pds: node is not installed" >&2; exit 1; }
command -v npm >/dev/null 2>&1 || { echo "atproto-pds: npm is not installed" >&2; exit 1; }

digest() { cat "$MANIFEST/package.json" "$MANIFEST/package-lock.json" 2>/dev/null | sha256sum | cut -d' ' -f1; }

mkdir -p "$TARGET"
if [ "${1:-}" = "--lock" ]; then
    cp "$MANIFEST/package.json" "$TARGET/package.json"
    rm -rf "$TARGET/package-lock.json" "$TARGET/node_modules" "$STAMP"
    (cd "$TARGET" && npm install --no-audit --no-fund --loglevel=error)
    cp "$TARGET/package-lock.json" "$MANIFEST/package-lock.json"
    digest >"$STAMP"
    echo "$TARGET"
    exit 0
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(digest)" ] && [ -d "$TARGET/node_modules/@atproto/dev-env" ]; then
    echo "$TARGET"
    exit 0
fi

echo "==> installing @atproto/dev-env into $TARGET (first time: ~5 minutes)" >&2
cp "$MANIFEST/package.json" "$TARGET/package.json"
rm -f "$STAMP"
if [ -f "$MANIFEST/package-lock.json" ]; then
    cp "$MANIFEST/package-lock.json" "$TARGET/package-lock.json"
    (cd "$TARGET" && npm ci --no-audit --no-fund --loglevel=error)
else
    (cd "$TARGET" && npm install --no-audit --no-fund --loglevel=error)
    cp "$TARGET/package-lock.json" "$MANIFEST/package-lock.json"
fi
digest >"$STAMP"
echo "$TARGET"
