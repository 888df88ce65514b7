#!/bin/sh
# SPDX-License-Identifier: MIT
#
# docs/exemples.md: three friche conversations as a person reads them, generated from the golden
# transcripts by `frichebot test --markdown` (so the wording shown to reviewers is exactly what
# the engine says).
#   tools/exemples.sh FRICHEBOT            rewrite docs/exemples.md
#   tools/exemples.sh FRICHEBOT --check    fail when docs/exemples.md is not up to date
set -eu
bin=$1
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
transcripts="tests/transcripts/friche-rurale-proprietaire-injoignable.yaml
tests/transcripts/friche-icpe-ville-moyenne.yaml
tests/transcripts/friche-commerces-centre-ville.yaml"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
# shellcheck disable=SC2086 # the list is split on purpose
"$bin" test --markdown $transcripts >"$tmp"
if [ "${2:-}" = "--check" ]; then
    if ! cmp -s "$tmp" docs/exemples.md; then
        echo "docs/exemples.md n'est pas à jour : lancez « make exemples »" >&2
        diff -u docs/exemples.md "$tmp" | head -40 >&2 || true
        exit 1
    fi
    echo "docs/exemples.md est à jour"
else
    cp "$tmp" docs/exemples.md
    echo "docs/exemples.md écrit"
fi
