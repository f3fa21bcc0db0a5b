#!/usr/bin/env bash
# Builds every Go program of the project into the git-ignored .build/bin/, from the Go module proxy.
# Does nothing for a binary that is current. Run by `npm run build:go` and `npm run e2e`.
#
# Every directory test/e2e/<name>/ that holds both a go.mod and a `targets` file is a Go module of its
# own (its own pinned go.mod and go.sum, shared with no other Go code). A new module plugs in by adding
# those two files; this script does not change. Each line of `targets` that is not blank or a # comment:
#
#   <binary> <package> <tags> <ldflags...>
#
#   binary   file name under .build/bin/
#   package  import path of the main package, resolved in that module (`go build <package>`)
#   tags     comma-separated build tags, or - for none
#   ldflags  the rest of the line, passed as one -ldflags value (e.g. -s -w -X pkg.var=value)
#
# Every binary is built with CGO_ENABLED=0, -trimpath and -mod=readonly (go.sum must already be
# complete: `go mod tidy` in the module after changing go.mod). A binary is current when
# .build/stamps/<binary> holds the hash of its module's go.mod, go.sum and *.go files, its targets line
# and `go version`: then it prints "<binary>: current". Otherwise it prints "<binary>: built in Ns".
# Any failure exits non-zero, so `npm run e2e` fails instead of skipping when Go cannot build.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=$root/.build/bin
stamps=$root/.build/stamps
mkdir -p "$bin" "$stamps"

if ! command -v go >/dev/null; then
  echo "build.sh: go not found; the end-to-end suite needs Go >= 1.26 and the Go module proxy" >&2
  exit 1
fi
goversion=$(go version)

stamp_of() { # <module dir> <targets line>
  {
    (cd "$1" && find . \( -name '*.go' -o -name go.mod -o -name go.sum \) -type f -print0 |
      LC_ALL=C sort -z | xargs -0 sha256sum)
    printf '%s\n%s\n' "$2" "$goversion"
  } | sha256sum | cut -d' ' -f1
}

for dir in "$root"/test/e2e/*/; do
  dir=${dir%/}
  [[ -f $dir/go.mod && -f $dir/targets ]] || continue
  while read -r name pkg tags ldflags; do
    [[ -z $name || $name == \#* ]] && continue
    stamp=$(stamp_of "$dir" "$name $pkg $tags $ldflags")
    if [[ -x $bin/$name && -f $stamps/$name && $(<"$stamps/$name") == "$stamp" ]]; then
      echo "$name: current"
      continue
    fi
    [[ $tags == - ]] && tags=
    echo "$name: building $pkg in ${dir#"$root"/}"
    start=$SECONDS
    rm -f "$stamps/$name"
    (cd "$dir" && CGO_ENABLED=0 go build -mod=readonly -trimpath -tags="$tags" -ldflags="$ldflags" \
      -o "$bin/$name" "$pkg")
    echo "$stamp" >"$stamps/$name"
    echo "$name: built in $((SECONDS - start))s"
  done <"$dir/targets"
done
