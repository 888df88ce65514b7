#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The include rule of docs/internals/LAYOUT.md, checked over every #include "..." of daemon/ and
# adapters/. Each folder names the folders it may include from; anything else is a finding.
#
#   tests/lint/layout.sh [SOURCE_DIR]     check the tree; exit 1 on any finding
#   tests/lint/layout.sh --self-test      prove that a wrong include is caught (a scratch tree)
set -u

# may_include FROM_FOLDER: the folders (under daemon/, or "include" for include/frichebot/, or
# "own" for the file's own adapter folder) that files of FROM_FOLDER may include from.
may_include() {
  case "$1" in
    common) echo "include common" ;;
    engine) echo "include common engine" ;;
    io) echo "include common io" ;;
    core) echo "include common io engine core" ;;
    features) echo "include common io engine core" ;;
    daemon) echo "include common io engine core features daemon" ;;
    adapter) echo "include common io own" ;;
    *) echo "" ;;
  esac
}

# folder_of FILE: the layer a source file belongs to.
folder_of() {
  case "$1" in
    daemon/common/*) echo common ;;
    daemon/engine/*) echo engine ;;
    daemon/io/*) echo io ;;
    daemon/core/*) echo core ;;
    daemon/features/*) echo features ;;
    daemon/*/*) echo unknown ;;
    daemon/*) echo daemon ;;
    adapters/*/*) echo adapter ;;
    *) echo unknown ;;
  esac
}

# target_of INCLUDED_NAME FILE: the layer an #include "NAME" of FILE points at.
target_of() {
  name=$1 file=$2
  case "$name" in
    frichebot/*) echo include ;;
    common/* | engine/* | io/* | core/* | features/*) echo "${name%%/*}" ;;
    */*) echo "path:$name" ;;
    *)
      # A bare name: a file beside the includer (adapters' own headers, daemon/*.h).
      dir=$(dirname "$file")
      case "$dir" in
        adapters/*) echo own ;;
        daemon) echo daemon ;;
        *) echo "bare:$name" ;;
      esac
      ;;
  esac
}

check_tree() {
  top=$1
  findings=0
  files=$(cd "$top" && find daemon adapters -name '*.[ch]' | sort)
  for f in $files; do
    from=$(folder_of "$f")
    if [ "$from" = unknown ]; then
      echo "$f: not in a folder of the layout (docs/internals/LAYOUT.md)"
      findings=$((findings + 1))
      continue
    fi
    allowed=$(may_include "$from")
    # shellcheck disable=SC2016
    grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$top/$f" | while IFS= read -r line; do
      n=${line%%:*}
      name=$(printf '%s\n' "$line" | sed 's/^[^"]*"\([^"]*\)".*/\1/')
      to=$(target_of "$name" "$f")
      ok=no
      # A file's own header (features/stats.c and features/stats.h) is always allowed: the rule
      # is about other modules, and features/ may not include one another.
      own=${f%.[ch]}.h
      [ "daemon/$name" = "$own" ] && ok=yes
      for a in $allowed; do [ "$a" = "$to" ] && ok=yes; done
      if [ $ok = no ]; then
        echo "$f:$n: #include \"$name\": $from/ may include only from: $allowed"
      fi
    done
  done
}

if [ "${1:-}" = "--self-test" ]; then
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/fb-layout.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT INT TERM
  mkdir -p "$tmp/daemon/engine" "$tmp/daemon/core" "$tmp/daemon/features" "$tmp/adapters/x"
  printf '#include "features/c.h"\n#include "core/router.h"\n' >"$tmp/daemon/features/c.c"
  printf '#include "engine/text.h"\n#include "frichebot/buf.h"\n' >"$tmp/daemon/engine/a.c"
  printf '#include "x.h"\n#include "io/redis.h"\n' >"$tmp/adapters/x/x.c"
  out=$(check_tree "$tmp")
  if [ -n "$out" ]; then echo "layout.sh --self-test: a clean tree was refused: $out"; exit 1; fi
  # The wrong includes, one at a time: each must be reported.
  for bad in 'daemon/engine/a.c:#include "io/redis.h"' 'daemon/core/b.c:#include "features/stats.h"' \
    'adapters/x/x.c:#include "core/router.h"' 'adapters/x/x.c:#include "../y/y.h"' \
    'daemon/engine/a.c:#include "../adapters/x/x.h"' \
    'daemon/features/c.c:#include "features/d.h"'; do
    f=${bad%%:*} inc=${bad#*:}
    cp "$tmp/$f" "$tmp/$f.orig" 2>/dev/null || : >"$tmp/$f.orig"
    printf '%s\n' "$inc" >>"$tmp/$f"
    out=$(check_tree "$tmp")
    case "$out" in
      *"$f"*) echo "caught: $f: $inc" ;;
      *) echo "layout.sh --self-test: $f: '$inc' was NOT caught"; exit 1 ;;
    esac
    mv "$tmp/$f.orig" "$tmp/$f"
    [ -s "$tmp/$f" ] || rm -f "$tmp/$f"
  done
  echo "layout.sh --self-test: every wrong include caught"
  exit 0
fi

top=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
out=$(check_tree "$top")
if [ -n "$out" ]; then
  printf '%s\n' "$out"
  echo "layout: $(printf '%s\n' "$out" | wc -l) include(s) break the rule of docs/internals/LAYOUT.md"
  exit 1
fi
echo "layout: every include follows docs/internals/LAYOUT.md"
