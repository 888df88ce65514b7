#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs clang-tidy (config: .clang-tidy) over the daemon and adapter sources, using the compile
# commands of the build directory given as $1. Any finding fails, including a function of more
# than 150 lines (readability-function-size in .clang-tidy).
set -u
build=${1:?usage: tidy.sh BUILD_DIR}
cd "$(dirname "$0")/../.." || exit 2
files=$(find daemon adapters -name '*.c' | sort)
# Sanitizer flags in the compile database are meaningless to clang-tidy and gcc-only warning
# flags upset it: drop them.
out=$(clang-tidy -p "$build" --quiet \
  --extra-arg=-Wno-unknown-warning-option --extra-arg=-Wno-unused-command-line-argument \
  $files 2>&1)
rc=$?
echo "$out" | grep -vE '^[0-9]+ warnings? (and [0-9]+ errors? )?generated|^Suppressed|^Use -header-filter|^$' || true
if [ $rc -ne 0 ]; then
  echo "clang-tidy: findings above"
  exit 1
fi
echo "clang-tidy: clean"
