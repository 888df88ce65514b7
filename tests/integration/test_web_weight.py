# SPDX-License-Identifier: MIT
"""The web chat's weight (issue #16, point 3): what the build makes of the pages' files
(cmake/FbWebAssets.cmake: the DSFR subset, content-hashed names, gzip and Brotli made at build
time) and how the daemon serves them (io/http_encoding.c, io/http_server.c: Content-Encoding
negotiated from Accept-Encoding, ETag and 304, immutable hashed names, the page revalidated).

The HTTP tests speak raw HTTP/1.1 to the real daemon serving the build tree's files; the browser
test measures a first and a second visit in Debian's Chromium, as a user would make them, and
prints the figures. See docs/internals/WEB.md, "Weight"."""
import gzip
import hashlib
import json
import os
import re
import socket
import time

import pytest

from browser import Checks, artifacts_dir, chromium, new_context
from conftest import BINARY

# The build tree's web files, which a daemon run from its build tree serves by default.
WEB = os.path.join(os.path.dirname(os.path.abspath(BINARY)), "web") if BINARY else None
HASHED = re.compile(r"^/assets/(?P<stem>[^/]+)\.(?P<hash>[0-9a-f]{16})(?P<ext>\.[a-z0-9]+)$")
IMMUTABLE = "public, max-age=31536000, immutable"
# The first visit's budget: the issue asks for under 300 KiB (it was 1.39 MiB).
BUDGET = 300 * 1024


def http(port, path, method="GET", headers=None, timeout=10):
    """One raw HTTP/1.1 request; returns (status, {lower-case name: value}, body)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            data += c
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *fields = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for f in fields:
        k, _, v = f.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    status = int(status_line.split()[1])
    if method != "HEAD" and "content-length" in hdrs:
        assert len(body) == int(hdrs["content-length"]), (path, hdrs, len(body))
    return status, hdrs, body


def page_assets(port):
    """The /assets/ URLs the chat's page links."""
    status, hdrs, body = http(port, "/")
    assert status == 200, status
    return re.findall(r'(?:href|src)="(/assets/[^"]+)"', body.decode())


def built(url_path):
    """The build tree's file behind a URL of the page (/ or /assets/...)."""
    rel = "index.html" if url_path == "/" else url_path.lstrip("/")
    return os.path.join(WEB, "static", rel)


# -- What the page links ----------------------------------------------------------------------


def test_page_links_only_hashed_immutable_assets(daemon):
    status, hdrs, body = http(daemon.port, "/")
    assert status == 200
    # The page itself changes under its name: revalidated at every visit.
    assert hdrs["cache-control"] == "no-cache"
    assert hdrs["etag"].startswith('"')
    assert hdrs["vary"] == "Accept-Encoding"
    html = body.decode()
    assert "/dsfr/" not in html, "the chat's page links the DSFR under its unhashed names"
    assets = page_assets(daemon.port)
    kinds = {os.path.splitext(a)[1] for a in assets}
    assert {".css", ".js", ".svg"} <= kinds, assets
    assert any("/dsfr.min." in a for a in assets) and any("/chat." in a for a in assets), assets
    # A name's hash is its content's: a new content is a new name, so a year of caching is safe.
    for a in assets:
        m = HASHED.match(a)
        assert m, f"{a} has no content hash in its name"
        status, hdrs, body = http(daemon.port, a)
        assert status == 200, a
        assert hdrs["cache-control"] == IMMUTABLE, (a, hdrs)
        assert hashlib.sha256(body).hexdigest()[:16] == m["hash"], a
    # The style sheets' fonts and icons are hashed and immutable too.
    css = [a for a in assets if a.endswith(".css")]
    refs = set()
    for a in css:
        refs.update(re.findall(r"url\((/assets/[^)]+)\)", http(daemon.port, a)[2].decode()))
    assert any(r.endswith(".woff2") for r in refs), refs
    assert not any(r.endswith(".woff") for r in refs), "WOFF fallbacks are not shipped"
    for r in sorted(refs):
        m = HASHED.match(r)
        assert m, r
        status, hdrs, body = http(daemon.port, r)
        assert status == 200 and hdrs["cache-control"] == IMMUTABLE, (r, status, hdrs)
        assert hashlib.sha256(body).hexdigest()[:16] == m["hash"], r
    # The DSFR's script and its 356 kB of icon classes are gone; what is left of the DSFR is
    # the subset, still served under its usual name for the /stats page.
    assert http(daemon.port, "/dsfr/dsfr.module.min.js")[0] == 404
    assert http(daemon.port, "/dsfr/utility/icons/icons.min.css")[0] == 404
    status, hdrs, _ = http(daemon.port, "/dsfr/dsfr.min.css")
    assert status == 200 and "max-age=86400" in hdrs["cache-control"]


# -- Content-Encoding ------------------------------------------------------------------------

# (Accept-Encoding, the coding expected): br preferred, q honoured, q=0 refuses, identity last.
NEGOTIATION = [
    (None, None),
    ("gzip, deflate, br, zstd", "br"),
    ("br", "br"),
    ("gzip", "gzip"),
    ("x-gzip", "gzip"),
    ("deflate", None),
    ("identity", None),
    ("br;q=0, gzip", "gzip"),
    ("gzip;q=0, br;q=0", None),
    ("br;q=0, gzip;q=0, identity;q=0", None),  # nothing acceptable: identity all the same
    ("gzip;q=1, br;q=0.5", "gzip"),
    ("gzip;q=0.5, br;q=0.5", "br"),
    ("gzip;q=0.4, identity;q=0.9", None),
    ("*", "br"),
    ("*;q=0.5, br;q=0", "gzip"),
    ("BR;Q=1", "br"),
]


@pytest.mark.parametrize("what", ["page", "style sheet", "script"])
def test_content_encoding_is_negotiated(daemon, what):
    path = "/" if what == "page" else next(a for a in page_assets(daemon.port)
                                           if a.endswith(".css" if what == "style sheet" else ".js"))
    _, _, plain = http(daemon.port, path)
    assert plain == open(built(path), "rb").read()
    br = open(built(path) + ".br", "rb").read()
    gz = open(built(path) + ".gz", "rb").read()
    assert gzip.decompress(gz) == plain
    print(f"# {what} {path}: {len(plain)} bytes, gzip {len(gz)}, br {len(br)}")
    assert len(br) < len(gz) < len(plain)
    for accept, want in NEGOTIATION:
        headers = {"Accept-Encoding": accept} if accept is not None else {}
        status, hdrs, body = http(daemon.port, path, headers=headers)
        assert status == 200
        assert hdrs.get("content-encoding") == want, (accept, hdrs)
        assert hdrs["vary"] == "Accept-Encoding", (accept, hdrs)
        assert body == {"br": br, "gzip": gz, None: plain}[want], accept
        # HEAD says the same, with no body.
        status, hhdrs, hbody = http(daemon.port, path, method="HEAD", headers=headers)
        assert status == 200 and hbody == b"", accept
        assert hhdrs.get("content-encoding") == want and hhdrs["content-length"] == str(len(body))
        assert hhdrs["etag"] == hdrs["etag"], accept
    # Each coding is its own representation, with its own ETag.
    etags = {http(daemon.port, path, headers={"Accept-Encoding": a})[1]["etag"]
             for a in ("br", "gzip", "identity")}
    assert len(etags) == 3, etags


def test_etag_revalidation_answers_304(daemon):
    for path in ["/"] + page_assets(daemon.port):
        for accept in ("br", "gzip", None):
            headers = {"Accept-Encoding": accept} if accept else {}
            status, hdrs, _ = http(daemon.port, path, headers=headers)
            assert status == 200
            etag = hdrs["etag"]
            status, h304, body = http(daemon.port, path, headers={**headers, "If-None-Match": etag})
            assert status == 304 and body == b"", (path, accept, status)
            assert h304["etag"] == etag and h304["vary"] == "Accept-Encoding"
            assert h304["cache-control"] == hdrs["cache-control"]
            assert "content-encoding" not in h304
            # A list holding it, or a weak form of it, matches too (RFC 9110's weak comparison).
            assert http(daemon.port, path, headers={**headers, "If-None-Match": f'"x", W/{etag}'})[0] == 304
            # Another coding's ETag, or another version's, is not this representation: 200
            # (files with no variant, the PNG icon, have one representation for every coding).
            other = "identity" if accept else "gzip"
            if os.path.exists(built(path) + ".gz"):
                assert http(daemon.port, path, headers={"Accept-Encoding": other,
                                                        "If-None-Match": etag})[0] == 200
            assert http(daemon.port, path, headers={**headers, "If-None-Match": '"0-0"'})[0] == 200


def test_stale_or_linked_variants_are_not_served(redis, make_daemon, tmp_path):
    """A .gz or .br older than its file (the file edited after the build) is never sent, nor one
    that is a symbolic link; the file is, uncompressed, or the other variant when it is sound."""
    static = tmp_path / "static"
    (static / "assets").mkdir(parents=True)
    (static / "index.html").write_text("<!doctype html><title>Assistant friches</title>\n")
    css = static / "assets" / "edited.css"
    css.write_text("body { color: red; }\n" * 50)
    (static / "assets" / "edited.css.gz").write_bytes(gzip.compress(b"body { color: blue; }\n" * 50))
    (static / "assets" / "edited.css.br").write_bytes(b"stale brotli")
    old = time.time() - 3600
    os.utime(static / "assets" / "edited.css.gz", (old, old))
    os.utime(static / "assets" / "edited.css.br", (old, old))
    fresh = static / "assets" / "fresh.css"
    fresh.write_text("p { margin: 0; }\n" * 50)
    (static / "assets" / "fresh.css.gz").write_bytes(gzip.compress(fresh.read_bytes()))
    (tmp_path / "elsewhere.br").write_bytes(b"outside the directory")
    os.symlink(tmp_path / "elsewhere.br", static / "assets" / "fresh.css.br")
    d = make_daemon(redis.address, extra=f'web:\n  static_dir: "{static}"\n')
    for accept in ("br", "gzip", "gzip, br"):
        status, hdrs, body = http(d.port, "/assets/edited.css", headers={"Accept-Encoding": accept})
        assert status == 200 and "content-encoding" not in hdrs, (accept, hdrs)
        assert body == css.read_bytes()
    # fresh.css.br is a link, so refused; its sound .gz is the next best.
    status, hdrs, body = http(d.port, "/assets/fresh.css", headers={"Accept-Encoding": "br, gzip"})
    assert status == 200 and hdrs.get("content-encoding") == "gzip", hdrs
    assert gzip.decompress(body) == fresh.read_bytes()
    status, hdrs, body = http(d.port, "/assets/fresh.css", headers={"Accept-Encoding": "br"})
    assert "content-encoding" not in hdrs and body == fresh.read_bytes()
    # Everything under /assets/ is immutable: the build only puts hashed names there.
    assert hdrs["cache-control"] == IMMUTABLE


# -- In Chromium -----------------------------------------------------------------------------

# Every request of the page, with what went over the wire (CDP's encodedDataLength: headers and
# body as received), its status and Content-Encoding.
def record(cdp):
    reqs = {}

    def sent(e):
        if not e["request"]["url"].startswith("data:"):
            reqs[e["requestId"]] = {"url": e["request"]["url"], "bytes": 0, "status": None,
                                    "encoding": None, "cached": False}

    def received(e):
        r = reqs.get(e["requestId"])
        if r is not None:
            h = {k.lower(): v for k, v in e["response"]["headers"].items()}
            r.update(status=e["response"]["status"], encoding=h.get("content-encoding"),
                     cached=e["response"].get("fromDiskCache", False) or
                     e["response"].get("fromMemoryCache", False))

    def finished(e):
        r = reqs.get(e["requestId"])
        if r is not None:
            r["bytes"] = e["encodedDataLength"]

    cdp.on("Network.requestWillBeSent", sent)
    cdp.on("Network.responseReceived", received)
    cdp.on("Network.loadingFinished", finished)
    return reqs


def metric(daemon, route, status):
    _, _, body = daemon.request("/metrics")
    m = re.search(rf'frichebot_http_requests_total{{route="{route}",status="{status}"}} (\d+)',
                  body.decode())
    return int(m.group(1)) if m else 0


def visit(page, url):
    page.goto(url)
    page.wait_for_selector("#fb-messages > li.fb-msg--bot", timeout=30000)
    page.wait_for_load_state("networkidle")
    # The fonts load once text is laid out in them; wait until the document has them all.
    page.evaluate("() => document.fonts.ready.then(() => true)")


def test_first_visit_weighs_under_300_kib(redis, make_daemon):
    d = make_daemon(redis.address)
    url = d.url("/")
    checks = Checks("weight")
    with chromium() as browser:
        ctx = new_context(browser, viewport={"width": 390, "height": 844})
        page = ctx.new_page()
        cdp = ctx.new_cdp_session(page)
        cdp.send("Network.enable")
        reqs = record(cdp)
        visit(page, url)
        first = [r for r in reqs.values() if r["url"].startswith("http")]
        total = sum(r["bytes"] for r in first)
        timing = page.evaluate("""() => performance.getEntriesByType("navigation")
            .concat(performance.getEntriesByType("resource"))
            .map((e) => ({name: e.name, transfer: e.transferSize, encoded: e.encodedBodySize,
                          decoded: e.decodedBodySize}))""")
        decoded = sum(t["decoded"] for t in timing)
        encoded = sum(t["encoded"] for t in timing)
        print(f"# first visit: {len(first)} requests, {total} bytes transferred "
              f"({total / 1024:.1f} KiB; bodies {encoded} bytes encoded, {decoded} decoded)")
        for r in sorted(first, key=lambda r: -r["bytes"]):
            print(f"#   {r['status']} {r['encoding'] or '-':5} {r['bytes']:7} {r['url']}")
        checks.ok(total < BUDGET, f"the first visit transfers under 300 KiB ({total / 1024:.1f} KiB)")
        checks.ok(all(r["status"] == 200 for r in first), "every request answered 200",
                  json.dumps(first, indent=1))
        # What is text goes compressed; the fonts are WOFF2, compressed already.
        text = [r for r in first if not r["url"].endswith((".woff2", ".png", "/ws"))]
        checks.ok(text and all(r["encoding"] in ("br", "gzip") for r in text),
                  "every text resource arrives compressed (br or gzip)",
                  json.dumps([(r["url"], r["encoding"]) for r in text], indent=1))
        checks.ok(any(r["encoding"] == "br" for r in text), "Chromium gets Brotli")
        checks.ok(decoded > 2 * encoded, "compression at least halves the bodies",
                  f"{encoded} encoded, {decoded} decoded")
        checks.ok(all("/assets/" in r["url"] for r in first if r["url"] != url),
                  "every file the page loads is a hashed /assets/ name",
                  json.dumps([r["url"] for r in first], indent=1))

        # A second visit: the page is revalidated (304), every asset comes from the cache.
        page_304 = metric(d, "web_page", 304)
        assets_200 = metric(d, "web_assets", 200)
        reqs.clear()
        visit(page, url)
        second = [r for r in reqs.values() if r["url"].startswith("http")]
        total2 = sum(r["bytes"] for r in second)
        print(f"# second visit: {len(second)} requests, {total2} bytes transferred")
        for r in second:
            print(f"#   {r['status']} cached={r['cached']} {r['bytes']:7} {r['url']}")
        checks.ok(metric(d, "web_page", 304) == page_304 + 1,
                  "the second visit revalidates the page: one 304")
        checks.ok(metric(d, "web_assets", 200) == assets_200 and
                  metric(d, "web_assets", 304) == 0,
                  "the second visit asks the server for no asset (immutable, from the cache)")
        checks.ok(total2 < 2048, f"the second visit transfers under 2 KiB ({total2} bytes)")
        shot = os.path.join(artifacts_dir(), "weight-390.png")
        page.screenshot(path=shot, full_page=True)
        print(f"# screenshot: {shot}")
        ctx.close()
    checks.assert_all(f"\n--- daemon log ---\n{d.read_log()}")
