# SPDX-License-Identifier: MIT
"""The public impact figures (docs/internals/STATS.md) against the real daemon, its router and a
real redis-server: scripted web-chat conversations of the friche dialog (some complete the
questionnaire, rate it, mark steps done), then /stats.json says exactly what they did, a second
daemon on the same Redis with a higher threshold suppresses the small counts, /metrics carries
the figures, and a real headless Chromium (tests/browser/stats.mjs) renders /stats: every figure
on the page matches /stats.json, the charts are there, axe-core is satisfied; the screenshots go
to the build directory (test-artifacts/browser/, or $FB_ARTIFACTS_DIR), their paths printed."""
import html
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import yaml

from test_browser import artifacts_dir
from test_webchat import Chat

SOURCE = os.environ.get("FB_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(SOURCE, "tests", "browser", "stats.mjs")
STEPS_CATALOGUE = os.path.join(SOURCE, "dialogs", "catalogues", "friche-etapes.yaml")


def step_titles(path=STEPS_CATALOGUE):
    """{"etapes.<id>": titre} of the friche dialog's steps catalogue."""
    with open(path, encoding="utf-8") as f:
        cat = yaml.safe_load(f)
    return {f"{cat['catalogue']}.{i['id']}": i["titre"] for i in cat["items"]}

# The friche dialog (the default) from the commune to the rating (as the transcript
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
        chat.wait_bot("Je donne mon avis")
        if note is not None:
            answer(chat, str(note))
            answer(chat, "non merci")
            chat.wait_bot("Votre feuille de route est enregistrée")
        for n in steps:
            answer(chat, f"étape {n} faite")
            chat.wait_bot("C'est noté")
    chat.close()
    return chat


def get_json(daemon, path):
    with urllib.request.urlopen(daemon.url(path), timeout=10) as r:
        assert r.status == 200
        return json.loads(r.read())


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
    node = shutil.which("node")
    assert node, "node is not installed: run deploy/install-deps.sh test"
    out = artifacts_dir()
    for daemon, name in ((d, "all"), (d5, "suppressed")):
        sub = os.path.join(out, f"stats-{name}")
        proc = subprocess.run([node, SCRIPT, "--url", daemon.url("/"), "--out", sub], cwd=SOURCE,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=600)
        print(proc.stdout)
        assert proc.returncode == 0, f"stats.mjs failed ({name}):\n{proc.stdout}"
        assert "not ok" not in proc.stdout
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
