#!/bin/sh
# SPDX-License-Identifier: MIT
# Fails when a banned C function is used in the project's C files (docs/style.md section H, curl's
# banned list). An exception is allowed on one line with a comment: /* fb-lint: allow NAME */.
# Raw allocation functions are only allowed in daemon/common/alloc.c and the test support files.
set -u
cd "$(dirname "$0")/../.." || exit 2
status=0
files=$(find daemon adapters include bench tests -name '*.[ch]' 2>/dev/null | sort)
for fn in sprintf vsprintf strcpy strcat strncpy strtok atoi atol gets sscanf \
          malloc calloc realloc free strdup strndup; do
  for f in $files; do
    case "$fn:$f" in
      malloc:daemon/common/alloc.c|calloc:daemon/common/alloc.c|realloc:daemon/common/alloc.c|free:daemon/common/alloc.c) continue ;;
      *:tests/unit/*|*:tests/fuzz/*|*:bench/*) case $fn in malloc|calloc|realloc|free|strdup|strndup) continue ;; esac ;;
    esac
    # A call is the bare name followed by '(' and not preceded by an identifier character,
    # '.', '>' (member access) or an fb_ prefix.
    # Comment lines (starting with /*, * or //) do not call anything.
    hits=$(grep -nE "(^|[^A-Za-z0-9_.>])$fn[[:space:]]*\(" "$f" | grep -v "fb-lint: allow $fn" |
           grep -vE '^[0-9]+:[[:space:]]*(/\*|\*|//)' || true)
    if [ -n "$hits" ]; then
      echo "$hits" | sed "s|^|$f:|; s|\$|   <- banned: $fn|"
      status=1
    fi
  done
done
[ $status -eq 0 ] && echo "banned-function check: clean"
exit $status
