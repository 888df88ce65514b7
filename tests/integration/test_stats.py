# SPDX-License-Identifier: MIT
"""The public impact figures (docs/internals/STATS.md) against the real daemon, its router and a
real redis-server: scripted web-chat conversations of the friche dialog (some complete the
questionnaire, rate it, mark steps done), then /stats.json says exactly what they did, a second
daemon on the same Redis with a higher threshold suppresses the small counts, /metrics carries
the figures, and a real headless Chromium (Playwright for Python, browser.py) renders /stats:
every figure on the page matches /stats.json, the charts are there, axe-core is satisfied; the
screenshots go to the build directory (test-artifacts/browser/, or $FB_ARTIFACTS_DIR), their
paths printed."""
import html
import json
import math
import os
import re
import shutil
import signal
import time
import urllib.request
from urllib.parse import urljoin

import yaml

from browser import Checks, WAIT_MS, artifacts_dir, check_axe, chromium, new_context
from test_webchat import Chat

SOURCE = os.environ.get("FB_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
STEPS_CATALOGUE = os.path.join(SOURCE, "dialogs", "catalogues", "friche-etapes.yaml")


def step_titles(path=STEPS_CATALOGUE):
    """{"etapes.<id>": titre} of the friche dialog's steps catalogue."""
    with open(path, encoding="utf-8") as f:
        cat = yaml.safe_load(f)
    return {f"{cat['catalogue']}.{i['id']}": i["titre"] for i in cat["items"]}

# The friche dialog (the default) from the commune to the roadmap (as the transcript
# tests/transcripts/friche-avis-une-fois.yaml walks it).
QUESTIONS = ["la commune", "industriel", "5000 m2", "pas de bâtiment", "10 ans", "à la commune",
             "soupçonnée", "PLUi", "aucun", "activité", "idée", "aucun"]


def answer(chat, text):
    """Says text and waits for the bot's answer to it."""
    last = chat.last_seq()
    chat.say(text)
    chat.wait_for(lambda f: any(s > last + 1 and e["from"] == "bot" for s, e in chat.entries.items()),
                  what=f"the bot's answer to {text!r}")


def project(daemon, commune, note=None, steps=(), complete=True):
    chat = Chat(daemon)
    chat.wait_bot("Dans quelle commune")
    answer(chat, commune)
    if complete:
        for text in QUESTIONS:
            answer(chat, text)
        chat.wait_bot("Votre feuille de route est enregistrée")
        if note is not None:
            # the rating comes after the reply to the next message (issue #16, point 5)
            answer(chat, "merci")
            chat.wait_bot("Je donne mon avis")
            answer(chat, str(note))
            answer(chat, "non merci")
            chat.wait_bot("Merci pour votre avis")
        for n in steps:
            answer(chat, f"étape {n} faite")
            chat.wait_bot("C'est noté")
    chat.close()
    return chat


def get_json(daemon, path):
    with urllib.request.urlopen(daemon.url(path), timeout=10) as r:
        assert r.status == 200
        return json.loads(r.read())


# ---- the /stats page in Chromium ----

MISSING = object()  # at()'s "no such path" (None is a JSON null: a suppressed count)


def at(doc, path):
    """The value at "a.b[3].c" in doc, MISSING when absent."""
    v = doc
    for part in path.split("."):
        m = re.fullmatch(r"([^\[]+)(?:\[(\d+)\])?", part)
        if not m or v is MISSING or v is None:
            return MISSING
        v = v.get(m[1], MISSING) if isinstance(v, dict) else MISSING
        if m[2] is not None:
            i = int(m[2])
            v = v[i] if isinstance(v, list) and i < len(v) else MISSING
    return v


def is_count(v):
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def count_paths(doc):
    """Every path of a count in doc (numbers and nulls), as the page names them."""
    out = []

    def walk(v, p):
        if isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, f"{p}[{i}]")
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{p}.{k}" if p else k)
        elif is_count(v):
            out.append(p)

    for k in ("territories", "conversations", "sites_studied", "projects_recurrent",
              "steps_done", "escalations", "reminders", "avis", "monthly"):
        walk(doc.get(k), k)
    return out


def as_text(v):
    """A JSON value as JavaScript's String() writes it (the page writes counts as integers)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def expected(doc, p):
    """The text the page must show for the value at p."""
    v = at(doc, p)
    if p == "generated_at":
        return v[:10]
    if p == "advisor_response.median_seconds":
        if v is None:
            return "pas encore de données" if doc["advisor_response"]["samples"] == 0 else "trop peu de données"
        if v >= 3600:
            return f"{math.floor(v / 3600)} h {math.floor((v % 3600) / 60):02d} min"
        return f"{math.ceil(v / 60)} min"
    return f"< {doc['threshold']}" if v is None else as_text(v)


CHARTS = """(l) => l.map((f) => {
    const svg = f.querySelector("svg[role=img]");
    const ids = svg ? (svg.getAttribute("aria-labelledby") || "").split(" ") : [];
    const texts = ids.map((id) => (document.getElementById(id) || {}).textContent || "");
    return {svg: !!svg, bars: svg ? svg.querySelectorAll("rect").length : 0, texts,
            table: !!f.querySelector("table caption"), width: svg ? svg.getBoundingClientRect().width : 0};
})"""


# Each chart's visible labels (under the bars): their boxes in the page and the size their text is
# drawn at (the SVG scales with its width, its text too).
LABELS = """() => Array.from(document.querySelectorAll("figure.fb-chart svg")).map((svg) => {
    const scale = svg.getScreenCTM().a;
    return Array.from(svg.querySelectorAll(".fb-chart__label"))
        .filter((t) => getComputedStyle(t).display !== "none" && t.getBoundingClientRect().width > 0)
        .map((t) => {
            const r = t.getBoundingClientRect();
            return {text: t.textContent, left: r.left, right: r.right, top: r.top, bottom: r.bottom,
                    px: parseFloat(getComputedStyle(t).fontSize) * scale};
        });
})"""


def check_chart_labels(checks, page, where, months):
    """At the page's current size: in every chart, no two visible labels' boxes overlap, their text
    is drawn at 10 px or more, a monthly chart shows at least 6 of its labels (the current month's
    among them), the ratings' chart its 5."""
    charts = page.evaluate(LABELS)
    overlaps, small = [], []
    for c, labels in enumerate(charts):
        for i, a in enumerate(labels):
            if a["px"] < 10:
                small.append(f"chart {c}: {a['text']!r} at {a['px']:.1f} px")
            for b in labels[i + 1:]:
                if a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]:
                    overlaps.append(f"chart {c}: {a['text']!r} [{a['left']:.1f}, {a['right']:.1f}] and "
                                    f"{b['text']!r} [{b['left']:.1f}, {b['right']:.1f}]")
    print(f"# {where}: labels " + "; ".join(
        ", ".join(f"{a['text']} {a['left']:.0f}–{a['right']:.0f} ({a['px']:.1f} px)" for a in labels[:3]) + " …"
        for labels in charts[:1]))
    checks.ok(len(charts) == 7 and all(len(l) >= 6 for l in charts[:6]) and len(charts[6]) == 5,
              f"{where}: the monthly charts show 6 labels or more, the ratings' chart 5",
              [len(l) for l in charts])
    current = months[-1]
    checks.ok(all(l and l[-1]["text"].startswith(current) for l in charts[:6]),
              f"{where}: the current month's label is shown ({current})", [l[-1]["text"] for l in charts[:6] if l])
    checks.ok(not overlaps, f"{where}: no two chart labels overlap", "\n".join(overlaps))
    checks.ok(not small, f"{where}: chart labels are drawn at 10 px or more", "\n".join(small))


MONTHS = ["janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc."]


def check_stats_page(browser, url, out, name):
    """/stats of the daemon at url in Chromium: it loads with no console error (its
    Content-Security-Policy forbids inline script and style: none is used); every element carrying
    data-figure="PATH" shows the value at PATH in /stats.json ("< N" for a suppressed null, the
    median as text); every figure of /stats.json is on the page; the charts are SVG images with a
    title and a text alternative, each followed by its table; axe-core finds no serious or
    critical violation at 1280 and 360 px; the charts' labels do not overlap and read 10 px or more at
    1280 px and on a phone (390×844); full-page screenshots at 1280, 390 and 360 px in out."""
    os.makedirs(out, exist_ok=True)
    checks = Checks(name)
    problems = []
    ctx = new_context(browser, viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.on("pageerror", lambda e: problems.append(f"page error: {e.message}"))
    page.on("console", lambda m: problems.append(f"console error: {m.text}") if m.type == "error" else None)
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    stats_url = urljoin(url, "/stats")
    resp = page.goto(stats_url, timeout=WAIT_MS)
    checks.ok(resp is not None and resp.status == 200, "GET /stats answers 200", resp and resp.status)
    checks.ok(page.get_attribute("html", "lang") == "fr", "the page is in French")
    checks.ok(re.search("Statistiques d'impact", page.text_content("h1") or "") is not None,
              "the title says Statistiques d'impact")
    # The JSON, fetched after the page: both come from the same cached read.
    doc = page.request.get(urljoin(url, "/stats.json")).json()
    checks.ok(is_count(doc.get("threshold")) and doc.get("threshold") is not None
              and isinstance(doc.get("suppressed"), list), "/stats.json has the threshold and the suppressed list")

    shown = page.eval_on_selector_all("[data-figure]", "(l) => l.map((e) => [e.dataset.figure, e.textContent.trim()])")
    checks.ok(len(shown) > 40, f"the page carries its figures ({len(shown)})")
    wrong = [f"{p}: page {json.dumps(text, ensure_ascii=False)}, json "
             f"{'undefined' if at(doc, p) is MISSING else json.dumps(at(doc, p), ensure_ascii=False)}"
             for p, text in shown if at(doc, p) is MISSING or expected(doc, p) != text]
    checks.ok(not wrong, "every figure on the page matches /stats.json", "\n".join(wrong))
    on_page = {p for p, _ in shown}
    missing = [p for p in count_paths(doc) if p not in on_page]
    checks.ok(not missing, "every count of /stats.json is on the page", "\n".join(missing))
    checks.ok("advisor_response.median_seconds" in on_page, "the median advisor response time is on the page")
    # each step done is named on the page by its title (checked against /stats.json above)
    steps = doc["steps_done"]["by_step"]
    untitled = [p for p in (f"steps_done.by_step[{i}].title" for i in range(len(steps))) if p not in on_page]
    checks.ok(not untitled, f"every step done is shown by its title ({len(steps)})", "\n".join(untitled))
    checks.ok(all(isinstance(s.get("title"), str) and len(s["title"]) > 0 for s in steps),
              "every step of /stats.json has a title")

    charts = page.eval_on_selector_all("figure.fb-chart", CHARTS)
    checks.ok(len(charts) == 7, f"seven charts (six monthly series, the ratings): {len(charts)}")
    checks.ok(all(c["svg"] and c["width"] > 100 for c in charts), "every chart is a rendered SVG image")
    checks.ok(all(len(c["texts"]) == 2 and all(len(t) > 0 for t in c["texts"]) for c in charts),
              "every chart has a title and a text alternative")
    checks.ok(all(c["table"] for c in charts), "every chart is followed by its data table")
    # one bar per positive count of the seven charts (a suppressed or zero count has none)
    values = []
    for k, a in doc["monthly"].items():
        if k != "months":
            values.extend(a if isinstance(a, list) else [a])
    values.extend(doc["avis"]["distribution"].values())
    positive = sum(1 for v in values if is_count(v) and v is not None and v > 0)
    bars = sum(c["bars"] for c in charts)
    checks.ok(bars == positive, f"one bar per positive count ({bars} bars, {positive} counts)")
    inline = page.eval_on_selector_all("[style], script, style", "(l) => l.length")
    checks.ok(inline == 0, "no inline style or script", inline)

    months = [MONTHS[int(m[5:]) - 1] for m in doc["monthly"]["months"]]
    check_chart_labels(checks, page, "at 1280 px", months)
    shot = os.path.join(out, "stats-1280.png")
    page.screenshot(path=shot, full_page=True)
    print(f"# screenshot: {shot}")
    # A phone (issue #16: the month labels ran together at 390×844)
    page.set_viewport_size({"width": 390, "height": 844})
    check_chart_labels(checks, page, "at 390×844", months)
    phone = os.path.join(out, "stats-390x844.png")
    page.screenshot(path=phone, full_page=True)
    print(f"# screenshot: {phone}")
    chart = os.path.join(out, "stats-390x844-chart.png")
    page.locator("figure.fb-chart").first.screenshot(path=chart)
    print(f"# screenshot: {chart}")
    page.set_viewport_size({"width": 360, "height": 740})
    phone = os.path.join(out, "stats-360.png")
    page.screenshot(path=phone, full_page=True)
    print(f"# screenshot: {phone}")
    checks.ok(not problems, "no console error, page error or failed request", "\n".join(problems))
    ctx.close()

    # axe-core in a context that lets its script in (the page's CSP rightly refuses it).
    actx = new_context(browser, bypass_csp=True)
    apage = actx.new_page()
    for width in (1280, 360):
        apage.set_viewport_size({"width": width, "height": 740 if width == 360 else 900})
        apage.goto(stats_url)
        check_axe(checks, apage, f"at {width} px")
    actx.close()
    checks.assert_all()


def test_stats_follow_the_conversations(redis, make_daemon):
    extra = "stats:\n  min_count: 1\n  cache_seconds: 0\n"
    d = make_daemon(redis.address, idle_timeout_s=60, extra=extra)
    empty = get_json(d, "/stats.json")
    assert empty["conversations"] == 0 and empty["sites_studied"] == 0
    assert empty["advisor_response"] == {"median_seconds": None, "samples": 0}

    # Montbard (Côte-d'Or): completes, rates 4, marks step 1 done. Saint-Étienne (Loire): completes,
    # rates 5, marks steps 1 and 2 done. Montbard again: stops after the commune.
    project(d, "Montbard", note=4, steps=(1,))
    project(d, "42218", note=5, steps=(1, 2))
    project(d, "21425", complete=False)

    doc = get_json(d, "/stats.json")
    assert doc["threshold"] == 1 and doc["suppressed"] == []
    assert doc["conversations"] == 3
    assert doc["sites_studied"] == 2
    assert doc["territories"] == {"communes": 2, "epci": 2, "departements": 2}
    assert doc["projects_recurrent"] == 0  # all in one month
    assert doc["steps_done"]["total"] == 3
    assert sum(s["count"] for s in doc["steps_done"]["by_step"]) == 3
    assert max(s["count"] for s in doc["steps_done"]["by_step"]) == 2  # step 1, twice
    # each step keeps its ref and is named by the catalogue's title
    titles = step_titles()
    assert [s["title"] for s in doc["steps_done"]["by_step"]] == [
        titles[s["step"]] for s in doc["steps_done"]["by_step"]]
    assert doc["avis"] == {"count": 2, "distribution": {"1": 0, "2": 0, "3": 0, "4": 1, "5": 1}}
    assert doc["escalations"] == 0
    assert doc["reminders"] == {"sent": 0, "answered": 0}
    m = doc["monthly"]
    assert m["months"] == doc["period"]["months"] and len(m["months"]) == 12
    assert m["conversations"][11] == 3 and sum(m["conversations"]) == 3
    assert m["sites_studied"][11] == 2
    assert m["projects_active"][11] == 3
    assert m["steps_done"][11] == 3
    assert m["avis"][11] == 2

    # /metrics carries the same figures
    with urllib.request.urlopen(d.url("/metrics"), timeout=10) as r:
        metrics = r.read().decode()
    assert "frichebot_stats_sites_studied_total 2\n" in metrics
    assert 'frichebot_stats_territories_engaged{level="commune"} 2\n' in metrics
    assert 'frichebot_stats_avis_notes_total{note="4"} 1\n' in metrics

    # A second daemon on the same Redis with the default threshold (5): every count from 1 to 4
    # is null and listed, zeros and the counts of 5 and more are shown
    d5 = make_daemon(redis.address, idle_timeout_s=60)
    doc5 = get_json(d5, "/stats.json")
    assert doc5["threshold"] == 5
    assert doc5["territories"]["communes"] is None
    assert doc5["sites_studied"] is None
    assert doc5["avis"]["distribution"]["1"] == 0
    assert "territories.communes" in doc5["suppressed"]
    assert "monthly.conversations[11]" in doc5["suppressed"]
    with urllib.request.urlopen(d5.url("/stats"), timeout=10) as r:
        page = r.read().decode()
    assert 'data-figure="sites_studied">&lt; 5</p>' in page
    assert 'frichebot_stats_sites_studied_total' not in urllib.request.urlopen(
        d5.url("/metrics"), timeout=10).read().decode().replace("# HELP frichebot_stats_sites_studied_total", "").replace("# TYPE frichebot_stats_sites_studied_total", "")

    # The page in Chromium, on the first daemon (nothing suppressed) and on the second
    out = artifacts_dir()
    with chromium() as browser:
        for daemon, name in ((d, "all"), (d5, "suppressed")):
            sub = os.path.join(out, f"stats-{name}")
            check_stats_page(browser, daemon.url("/"), sub, f"stats ({name})")
            assert os.path.getsize(os.path.join(sub, "stats-1280.png")) > 0


def test_stats_step_titles_follow_a_dialog_reload(redis, make_daemon, tmp_path):
    """The steps on /stats are named by the served dialog's catalogue, HTML-escaped; after a
    SIGHUP that renames a step, the new title shows at once (the cached figures are dropped,
    even with a long cache), and /stats.json keeps the ref."""
    dialogs = tmp_path / "dialogs"
    shutil.copytree(os.path.join(SOURCE, "dialogs"), dialogs)
    extra = (f"dialogs:\n  path: \"{dialogs / 'friche.yaml'}\"\n"
             "stats:\n  min_count: 1\n  cache_seconds: 3600\n")
    d = make_daemon(redis.address, idle_timeout_s=60, extra=extra)
    project(d, "Montbard", note=4, steps=(1,))
    doc = get_json(d, "/stats.json")
    [entry] = doc["steps_done"]["by_step"]
    ref = entry["step"]
    old = step_titles()[ref]
    assert entry == {"step": ref, "title": old, "count": 1}

    catalogue = dialogs / "catalogues" / "friche-etapes.yaml"
    text = catalogue.read_text(encoding="utf-8")
    assert text.count(f'titre: "{old}"') == 1
    new = old + ' <b>vite</b> & "bien"'
    catalogue.write_text(text.replace(f'titre: "{old}"', "titre: " + json.dumps(new, ensure_ascii=False)),
                         encoding="utf-8")
    assert step_titles(str(catalogue))[ref] == new
    mark = len(d.read_log())
    d.send(signal.SIGHUP)
    end = time.monotonic() + 10
    while "dialog reloaded" not in d.log_since(mark):
        assert time.monotonic() < end, d.log_since(mark)
        time.sleep(0.05)
    doc = get_json(d, "/stats.json")
    assert doc["steps_done"]["by_step"] == [{"step": ref, "title": new, "count": 1}]
    with urllib.request.urlopen(d.url("/stats"), timeout=10) as r:
        page = r.read().decode()
    assert (f'<th scope="row" data-figure="steps_done.by_step[0].title">'
            f'{html.escape(new, quote=True).replace("&#x27;", "&#39;")}</th>') in page
    assert "<b>vite</b>" not in page
