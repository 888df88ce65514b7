# SPDX-License-Identifier: MIT
"""The roadmap as a person meets it (issue #16), in Debian's Chromium at 1280×800 and 390×844:
a friche conversation in the web chat ends with the short summary and « la feuille de route
complète » as a link; the link opens the roadmap page (DSFR, lang=fr, landmarks, headings, every
step with why, first action and status, the contacts, the funding, the sources as links, no
serious axe-core violation); the page prints to a PDF with Chromium (the way to a PDF: the
browser prints the page with its print stylesheet, the daemon renders no PDF), whose text holds
the steps. Screenshots and the PDF go to the test artifacts (browser.artifacts_dir())."""
import json
import os
import re
import zlib

import pytest

from browser import Checks, artifacts_dir, check_axe, chromium, new_context
from test_browser import (AFTER_ROADMAP, FRICHE, FRICHE_WALK, SIZES, answer, history,
                          wait_online, wait_question)

# The walk of test_browser.py, every answer in this one tab.
WALK = [dict(s, how="enter") if s["how"] == "other-tab" else s for s in FRICHE_WALK]

PAGE_FACTS = """() => ({
    lang: document.documentElement.lang,
    title: document.title,
    h1: Array.from(document.querySelectorAll("h1")).map((h) => h.innerText.trim()),
    h2: Array.from(document.querySelectorAll("h2")).map((h) => h.innerText.trim()),
    h3: Array.from(document.querySelectorAll("main h3")).map((h) => h.innerText.trim()),
    landmarks: ["header[role=banner]", "main[role=main]", "footer[role=contentinfo]", ".fr-skiplinks a"]
        .filter((s) => document.querySelector(s) !== null),
    links: Array.from(document.querySelectorAll("main a[href^='http']")).length,
    text: document.querySelector("main").innerText,
    print: Array.from(document.styleSheets).some((s) => {
        try { return Array.from(s.cssRules).some((r) => r.media && r.media.mediaText.includes("print")); }
        catch (e) { return false; }
    }),
    width: document.documentElement.scrollWidth,
})"""


def pdf_text(data):
    """The text of a PDF written by Chromium (Skia): every content stream's shown strings, read
    through the ToUnicode map of the font in use. Enough to check what the PDF says, no more."""
    objs = {}
    for m in re.finditer(rb"(\d+) 0 obj(.*?)endobj", data, re.S):
        body = m.group(2)
        s = re.search(rb"stream\r?\n(.*?)\r?\nendstream", body, re.S)
        stream = None
        if s:
            stream = s.group(1)
            if b"/FlateDecode" in body[:s.start()]:
                try:
                    stream = zlib.decompress(stream)
                except zlib.error:
                    stream = None
        objs[int(m.group(1))] = (body[:s.start()] if s else body, stream)

    def cmap(stream):
        out = {}
        for block in re.findall(rb"beginbfchar(.*?)endbfchar", stream, re.S):
            for a, b in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
                out[int(a, 16)] = bytes.fromhex(b.decode()).decode("utf-16-be", "replace")
        for block in re.findall(rb"beginbfrange(.*?)endbfrange", stream, re.S):
            for a, b, c in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
                start, dst = int(a, 16), int(c, 16)
                for i in range(int(b, 16) - start + 1):
                    out[start + i] = chr(dst + i)
        return out

    fonts = {}  # font object -> its map
    for n, (d, _) in objs.items():
        t = re.search(rb"/ToUnicode (\d+) 0 R", d)
        if t and objs.get(int(t.group(1)), (None, None))[1]:
            fonts[n] = cmap(objs[int(t.group(1))][1])
    names = {}  # resource name -> font object
    for d, _ in objs.values():
        for block in re.findall(rb"/Font\s*<<(.*?)>>", d, re.S):
            for name, n in re.findall(rb"/(\S+?) (\d+) 0 R", block):
                names[name] = int(n)
    text = []
    for d, stream in objs.values():
        if not stream or b" Tf" not in stream:
            continue
        current = {}
        for tok in re.finditer(rb"/(\S+) [\d.]+ Tf|\[(.*?)\]\s*TJ|<([0-9A-Fa-f]*)>\s*Tj|(ET)", stream, re.S):
            if tok.group(1):
                current = fonts.get(names.get(tok.group(1)), {})
                continue
            if tok.group(4):
                text.append(" ")
                continue
            hexes = re.findall(rb"<([0-9A-Fa-f]*)>", tok.group(2)) if tok.group(2) is not None else [tok.group(3)]
            for h in hexes:
                h = h.decode()
                text.append("".join(current.get(int(h[i:i + 4], 16), "") for i in range(0, len(h) - 3, 4)))
    return "".join(text)


def squeeze(s):
    return re.sub(r"\s+", "", s.replace("\u00a0", " "))


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_roadmap_summary_page_and_pdf(redis, make_daemon, size):
    d = make_daemon(redis.address, start=False, idle_timeout_s=60,
                    extra=f'dialogs:\n  path: "{FRICHE}"\nweb:\n  messages_per_minute: 120\n')
    d.settings["server_extra"] = f'  public_url: "http://127.0.0.1:{d.port}"'
    d.start()
    out = artifacts_dir()
    checks = Checks(f"roadmap ({size})")
    problems = []
    with chromium() as browser:
        ctx = new_context(browser, viewport=SIZES[size], bypass_csp=True)
        page = ctx.new_page()
        page.on("pageerror", lambda e: problems.append(f"page error: {e.message}"))
        page.goto(d.url("/"))
        wait_online(page)
        wait_question(page, WALK[0]["question"])
        for i, step in enumerate(WALK):
            answer(checks, page, step, i + 1)
        wait_question(page, AFTER_ROADMAP)

        # The summary in the chat.
        summary = next((m for m in reversed(history(page)) if m["from"] == "bot" and "Pour commencer" in m["text"]),
                       None)
        checks.ok(summary is not None, f"{size}: the chat shows the roadmap's summary")
        text = summary["text"] if summary else ""
        print(f"# {size}: summary of {len(text)} characters")
        checks.ok(len(text) < 2500, f"{size}: the summary is short (under 2,500 characters)", len(text))
        for needle in ("Votre feuille de route – Saint-Dizier", "Étape 1 – ", "Étape 3 – ", "À contacter d'abord",
                       "Financements possibles"):
            checks.ok(needle in text, f"{size}: the summary says « {needle} »", text)
        checks.ok("Étape 4 – " not in text and "Pourquoi :" not in text, f"{size}: the summary stops at three steps",
                  text)
        link = page.locator("#fb-messages a", has_text="la feuille de route complète").last
        href = link.get_attribute("href") if link.count() else None
        checks.ok(bool(href) and re.search(r"/feuille-de-route/[0-9a-f]{48}$", href or ""),
                  f"{size}: « la feuille de route complète » is a link to the page", href)
        link.scroll_into_view_if_needed()
        shot = os.path.join(out, f"roadmap-{size}-chat-summary.png")
        page.screenshot(path=shot)
        print(f"# screenshot: {shot}")

        # The page, opened from the link (a new tab, as the chat opens links).
        with ctx.expect_page() as opened:
            link.click()
        rp = opened.value
        rp.on("pageerror", lambda e: problems.append(f"roadmap page error: {e.message}"))
        rp.wait_for_load_state("load")
        facts = rp.evaluate(PAGE_FACTS)
        checks.ok(rp.url == href, f"{size}: the link opens the page", rp.url)
        checks.ok(facts["lang"] == "fr", f"{size}: the page is in French (lang=fr)", facts["lang"])
        checks.ok(len(facts["landmarks"]) == 4, f"{size}: banner, main, contentinfo and a skip link",
                  facts["landmarks"])
        checks.ok(len(facts["h1"]) == 1 and facts["h1"][0].startswith("Votre feuille de route – Saint-Dizier"),
                  f"{size}: one h1, the site", facts["h1"])
        checks.ok(facts["h2"][:3] == ["Les étapes, dans l'ordre", "Vos interlocuteurs",
                                      "Les financements qui peuvent s'appliquer"],
                  f"{size}: h2 for the steps, the contacts, the funding", facts["h2"])
        checks.ok(len(facts["h3"]) >= 5 and all(h.startswith("Étape ") for h in facts["h3"]),
                  f"{size}: one h3 per step", facts["h3"])
        for needle in ("Statut : à faire", "Pourquoi : ", "Première action : ", "Validité : ", "vérifiée le 2026-",
                       "Annuaire : "):
            checks.ok(needle in facts["text"], f"{size}: the page says « {needle} »")
        checks.ok(facts["links"] >= 10, f"{size}: the sources are links", facts["links"])
        checks.ok(facts["print"], f"{size}: the page has a print stylesheet")
        checks.ok(facts["width"] <= SIZES[size]["width"], f"{size}: nothing wider than the screen", facts["width"])
        check_axe(checks, rp, f"on the roadmap page at {SIZES[size]['width']} px")
        shot = os.path.join(out, f"roadmap-{size}-page.png")
        rp.screenshot(path=shot, full_page=True)
        print(f"# screenshot: {shot}")

        # The PDF: Chromium prints the page (print media, the print stylesheet).
        pdf_path = os.path.join(out, f"roadmap-{size}.pdf")
        rp.pdf(path=pdf_path, format="A4", print_background=False)
        data = open(pdf_path, "rb").read()
        pages = len(re.findall(rb"/Type\s*/Page\b", data))
        print(f"# pdf: {pdf_path}, {len(data)} bytes, {pages} pages")
        checks.ok(data.startswith(b"%PDF-") and len(data) > 20000, f"{size}: the PDF is a real document",
                  len(data))
        checks.ok(pages >= 1, f"{size}: the PDF has pages", pages)
        words = squeeze(pdf_text(data))
        for h in facts["h3"][:3] + [facts["h3"][-1]]:
            checks.ok(squeeze(h) in words, f"{size}: the PDF's text holds « {h} »", words[:300])
        checks.ok("RépubliqueFrançaise" not in words, f"{size}: the PDF has the roadmap only (no header, no footer)")
        checks.ok(not problems, f"{size}: no page error", "\n".join(problems))
        ctx.close()
    checks.assert_all(f"\nscreenshots in {out}")
    print(json.dumps({"size": size, "summary_chars": len(text)}))
