#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs `frichebot check` on every broken dialog of a corpus directory and compares what it prints
# on stderr with the sibling .expected file, exactly. Runs from inside the directory so that file
# names in messages are the bare names the expectations use.
#   check_corpus.sh FRICHEBOT DIR
set -u
bin=${1:?usage: check_corpus.sh FRICHEBOT DIR}
dir=${2:?usage: check_corpus.sh FRICHEBOT DIR}
cd "$dir" || exit 2
pass=0
fail=0
for f in *.yaml; do
  [ -f "$f.expected" ] || { echo "$f: no $f.expected"; fail=$((fail + 1)); continue; }
  # No communes index, as in the unit tests: a commune question then needs one.
  got=$(FRICHEBOT_GEO=/nonexistent "$bin" check "$f" 2>&1 >/dev/null)
  rc=$?
  if [ $rc -ne 1 ]; then
    echo "$f: exit status $rc, expected 1"
    fail=$((fail + 1))
  elif [ "$got" != "$(cat "$f.expected")" ]; then
    echo "$f: output differs from $f.expected:"
    printf '%s\n' "$got" | diff "$f.expected" - | sed 's/^/    /'
    fail=$((fail + 1))
  else
    pass=$((pass + 1))
  fi
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ] && [ $pass -gt 0 ]
