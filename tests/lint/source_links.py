#!/usr/bin/env python3
"""Every source a user is sent to points to the page that says it (issue #16).

A catalogue's `source`, a knowledge-base answer's `source` and `lien`, name where a fact comes
from: a bare domain ("https://www.example.fr", path "/" or nothing) or a repository's root
("https://github.com/owner/repo", or its /tree/<branch> with nothing after) make the reader
search for it, and a root says nothing about which page was read. Repository roots are refused
in every value of these files (an `action` or a `lien` too); a bare domain only in sources (a
contact's `lien` may be the organisation's own site, docs/friche.md).

A catalogue named PREFIX-sources.yaml (dialogs/catalogues/friche-sources.yaml) gives each address
its title and organisation, which the roadmap page shows instead of the raw address
({{ sources(...) }}, issue #16): when it exists, every http(s) address in the values of the other
PREFIX-*.yaml catalogues must be the `source` of one of its items. Its own `source` values are
the addresses it names, not citations: the rules above do not apply to them.

Reads the YAML line by line (no dependency): only `key: value` lines, comments ignored, which is
how the catalogues are written (one scalar per line). Prints FILE:LINE: message for each
offence and exits 1 when there is any.

    source_links.py DIR...        scan DIR/catalogues/*.yaml and DIR/connaissances/*.yaml
    source_links.py --self-test   check the checker on made-up lines
"""
import pathlib
import re
import sys
from urllib.parse import urlsplit

URL = re.compile(r"https?://[^\s\"'<>`)\]]+")
KEY = re.compile(r"^\s*(?:-\s+)?([a-z_]+):\s*(.*)$")
FORGES = {"github.com", "www.github.com", "gitlab.com", "framagit.org", "git.sr.ht",
          "codeberg.org", "bitbucket.org"}
SOURCE_KEYS = {"catalogues": {"source"}, "connaissances": {"source", "lien"}}


def problem(url, strict):
    """Why URL is not a specific page, or None."""
    url = url.rstrip(".,;:!?")
    parts = urlsplit(url)
    host = parts.hostname or ""
    segs = [s for s in parts.path.split("/") if s]
    if host in FORGES:
        if len(segs) <= 2 or (len(segs) <= 4 and segs[2] == "tree"):
            return "repository root: link the file (blob/<commit>/<path>)"
        return None
    if strict and not segs and not parts.query:
        return "bare domain: link the page that says it"
    return None


def check_line(kind, line):
    """The problems of one line of a file of KIND ("catalogues" or "connaissances")."""
    if line.lstrip().startswith("#"):
        return []
    m = KEY.match(line)
    if not m:
        return []
    key, value = m.groups()
    strict = key in SOURCE_KEYS[kind]
    out = []
    for url in URL.findall(value):
        why = problem(url, strict)
        if why:
            out.append(f"{key}: {url}: {why}")
    return out


def named_urls(text):
    """The addresses a names catalogue (PREFIX-sources.yaml) names: its `source` values."""
    out = set()
    for line in text.splitlines():
        m = KEY.match(line)
        if m and not line.lstrip().startswith("#") and m.group(1) == "source":
            out.update(u.rstrip(".,;:!?") for u in URL.findall(m.group(2)))
    return out


def unnamed(line, named):
    """The problems of a catalogue line whose addresses must all be in the set `named`."""
    if line.lstrip().startswith("#"):
        return []
    m = KEY.match(line)
    if not m:
        return []
    key, value = m.groups()
    return [f"{key}: {u}: no title in the sources catalogue (add it there, with its "
            f"organisation)" for u in (u.rstrip(".,;:!?") for u in URL.findall(value))
            if u not in named]


def names_file(f):
    """PREFIX-sources.yaml for catalogue f = PREFIX-x.yaml, or None."""
    if "-" not in f.stem:
        return None
    return f.with_name(f.stem.split("-", 1)[0] + "-sources.yaml")


def scan(dirs):
    bad = 0
    for d in dirs:
        for kind in SOURCE_KEYS:
            for f in sorted(pathlib.Path(d, kind).glob("*.yaml")):
                names = names_file(f) if kind == "catalogues" else None
                is_names = names is not None and names == f
                named = (named_urls(names.read_text(encoding="utf-8"))
                         if names is not None and names.exists() and not is_names else None)
                for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
                    msgs = [] if is_names else check_line(kind, line)
                    if named is not None:
                        msgs += unnamed(line, named)
                    for msg in msgs:
                        print(f"{f}:{n}: {msg}")
                        bad += 1
    return bad


def self_test():
    cases = [
        ("catalogues", '    source: "https://github.com/betagouv/urbanvitaliz (_ressources/EPF.md)"', 1),
        ("catalogues", '    source: "https://github.com/o/r/tree/main"', 1),
        ("catalogues", '    source: "https://github.com/o/r/blob/abc/x.md ; https://www.a.fr/p.html"', 0),
        ("catalogues", '    source: "Arrêté du 16 mai 2005 ; https://www.eaufrance.fr (carte)"', 1),
        ("catalogues", '    source: "https://www.eaufrance.fr/"', 1),
        ("catalogues", '    lien: "https://www.eaufrance.fr"', 0),
        ("catalogues", '    action: "voir https://gitlab.com/o/r."', 1),
        ("catalogues", '  # source: "https://github.com/o/r"', 0),
        ("connaissances", '    lien: "https://www.service-public.fr"', 1),
        ("connaissances", '    lien: "https://www.service-public.fr/particuliers/vosdroits/F1"', 0),
        ("connaissances", '  - source: "https://x.fr?id=3"', 0),
    ]
    failed = 0
    for kind, line, want in cases:
        got = len(check_line(kind, line))
        if got != want:
            print(f"self-test: {kind} {line!r}: {got} problems, expected {want}")
            failed += 1
    named = named_urls('  - id: a\n    source: "https://a.fr/p"\n    # source: "https://c.fr/q"\n')
    for line, want in [
        ('    source: "Loi ; https://a.fr/p ; voir https://a.fr/p."', 0),
        ('    lien: "https://b.fr/q (chercher)"', 1),
        ('    action: "https://a.fr/p https://c.fr/q https://a.fr/px"', 2),
        ('  # source: "https://b.fr/q"', 0),
    ]:
        cases.append(("names", line, want))
        got = len(unnamed(line, named))
        if got != want:
            print(f"self-test: names {line!r}: {got} unnamed, expected {want}")
            failed += 1
    print(f"self-test: {len(cases) - failed}/{len(cases)} cases")
    return failed


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(1 if self_test() else 0)
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    n = scan(sys.argv[1:])
    if n:
        print(f"{n} source link(s) to fix")
    sys.exit(1 if n else 0)
