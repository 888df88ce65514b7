# SPDX-License-Identifier: MIT
"""The web chat page in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright
for Python: browser.py), against the real daemon and a real Redis; see docs/webchat.md.

Steps: open the page and wait for the greeting; answer by typing and by clicking a button; reload
and see the same history, without duplicates; lose the connection (the daemon is stopped under
the page), send a message meanwhile, get it delivered exactly once after the daemon is back; the
same with Redis stopped (the page shows the server's "unavailable" notice and resends);
screenshots (full page, at 1280 px and at 360 px); axe-core finds no serious or critical
violation on the chat and personal-data pages; "Oublier mes données" erases the conversation.
The screenshots go to the build directory (next to the daemon binary, in test-artifacts/browser/,
or $FB_ARTIFACTS_DIR), and their paths are printed."""
import json
import os
import re
import shutil
import traceback
from urllib.parse import urljoin

import pytest

from browser import Checks, SOURCE, WAIT_MS, artifacts_dir, check_axe, chromium, new_context

# ---- what the page shows ----

HISTORY = """(items) => items.map((li) => ({
    seq: li.dataset.seq === undefined ? null : Number(li.dataset.seq),
    from: li.classList.contains("fb-msg--bot") ? "bot" : "user",
    id: li.dataset.id || null,
    pending: li.dataset.pending !== undefined,
    text: li.querySelector(".fb-msg__body").innerText.trim(),
    choices: Array.from(li.querySelectorAll(".fb-choices button")).map((b) => b.innerText.trim()),
}))"""


def history(page):
    """The messages on the page: [{seq, from, id, pending, text, choices}], in page order."""
    return page.eval_on_selector_all("#fb-messages > li.fb-msg", HISTORY)


def wait_online(page):
    page.wait_for_selector('#fb-status[data-state="online"]', timeout=WAIT_MS)


def user_ids(page):
    """The ids of the user's messages on the page."""
    return page.eval_on_selector_all("#fb-messages > li.fb-msg--user", "(l) => l.map((li) => li.dataset.id || '')")


def wait_reply(page, known):
    """Waits for the user's message that appeared since `known` (ids before sending) to be in the
    server's history (it has a seq) with a bot message after it; returns the history."""
    handle = page.wait_for_function("""(ids) => {
        const l = Array.from(document.querySelectorAll("#fb-messages > li.fb-msg--user"));
        const mine = l.find((li) => li.dataset.id && !ids.includes(li.dataset.id));
        return mine ? mine.dataset.id : null;
    }""", arg=known, timeout=WAIT_MS)
    msg_id = handle.json_value()
    page.wait_for_function("""(id) => {
        const items = Array.from(document.querySelectorAll("#fb-messages > li.fb-msg"));
        const i = items.findIndex((li) => li.dataset.id === id && li.dataset.seq !== undefined);
        return i >= 0 && items.slice(i + 1).some((li) => li.classList.contains("fb-msg--bot"));
    }""", arg=msg_id, timeout=WAIT_MS)
    return history(page)


def check_history_shape(checks, h, what):
    seqs = [m["seq"] for m in h if m["seq"] is not None]
    unique = len(set(seqs)) == len(seqs)
    ordered = all(b > a for a, b in zip(seqs, seqs[1:]))
    checks.ok(unique and ordered, f"{what}: every entry once, in seq order", json.dumps(seqs))
    ids = [m["id"] for m in h if m["id"]]
    checks.ok(len(set(ids)) == len(ids), f"{what}: no user message shown twice", json.dumps(ids))


def count_text(h, text):
    return sum(1 for m in h if m["from"] == "user" and m["text"] == text)


def type_and_send(page, text, via_button):
    page.fill("#fb-input", text)
    if via_button:
        page.click("#fb-send")
    else:
        page.press("#fb-input", "Enter")


# The walk through the sample dialog (dialogs/exemple.yaml, which the test gives the daemon with a
# link added to its last message), with the way each answer is given: typed and sent with Enter
# or with the button, a button clicked with the mouse, or a button reached and pressed with the
# keyboard only.
WALK = [
    {"question": "Dans quelle commune", "how": "enter", "answer": "lyon"},
    {"question": "Qui porte le projet", "how": "click", "answer": "Une association"},
    {"question": "Quelle est la surface", "how": "send-button", "answer": "1,2 ha"},
    {"question": "Le sol a-t-il déjà été analysé", "how": "keyboard", "answer": "Non"},
    {"question": "Quels usages envisagez-vous", "how": "enter", "answer": "1, 2 et 4"},
    {"question": "Quand souhaitez-vous ouvrir", "how": "enter", "answer": "mars 2035"},
    {"question": "Comment s'appellera le jardin", "how": "enter", "answer": "Les Jardins du Confluent"},
]


def answer(checks, page, step, n):
    """Answers one question; returns the history once the answer is in it and the bot replied."""
    h = history(page)
    last = next((m for m in reversed(h) if m["from"] == "bot"), None)
    checks.ok(last is not None and step["question"] in last["text"], f'step {n}: the bot asks "{step["question"]}"',
              last and last["text"])
    known = user_ids(page)
    if step["how"] == "click":
        checks.ok(step["answer"] in last["choices"], f'step {n}: "{step["answer"]}" is offered as a button',
                  json.dumps(last["choices"], ensure_ascii=False))
        page.click(f'#fb-messages .fb-choices button:text-is("{step["answer"]}")')
    elif step["how"] == "keyboard":
        # From the text field, Shift+Tab walks back through the options; Enter picks one.
        choices = last["choices"]
        index = choices.index(step["answer"]) if step["answer"] in choices else -1
        back = len(choices) - index
        checks.ok(0 < back <= len(choices), f'step {n}: "{step["answer"]}" is offered',
                  json.dumps(choices, ensure_ascii=False))
        page.focus("#fb-input")
        for _ in range(back):
            page.keyboard.press("Shift+Tab")
        focused = page.evaluate("""() => document.activeElement &&
            document.activeElement.closest(".fb-choices") !== null &&
            document.activeElement.innerText.trim()""")
        checks.ok(focused == step["answer"], f"step {n}: the option is reachable with the keyboard", focused)
        outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
        checks.ok(outline != "none", f"step {n}: the focused option shows a visible focus ring", outline)
        page.keyboard.press("Enter")
    else:
        type_and_send(page, step["answer"], step["how"] == "send-button")
    h = wait_reply(page, known)
    checks.ok(count_text(h, step["answer"]) == 1 and not any(m["pending"] for m in h),
              f'step {n}: "{step["answer"]}" is in the history once, nothing left pending')
    return h


def conversation(checks, page):
    page.wait_for_selector("#fb-messages > li.fb-msg--bot", timeout=WAIT_MS)
    wait_online(page)
    h = history(page)
    checks.ok(len(h) > 0 and h[0]["from"] == "bot" and h[0]["text"].startswith("Bonjour"), "the greeting is shown",
              json.dumps(h, ensure_ascii=False))
    token = page.evaluate('() => localStorage.getItem("frichebot.token")')
    checks.ok(isinstance(token, str) and re.fullmatch(r"[A-Za-z0-9_-]{43}", token) is not None,
              "the token is kept in localStorage")

    for i, step in enumerate(WALK):
        h = answer(checks, page, step, i + 1)
        if i == 1:
            # A question without options: the previous message's buttons are gone.
            buttons = page.eval_on_selector_all("#fb-messages .fb-choices button", "(l) => l.length")
            checks.ok(buttons == 0, "only the last bot message has active buttons", f"{buttons} buttons")

    # The roadmap: a list with bold titles, and a link that opens in a new window.
    roadmap = page.eval_on_selector("#fb-messages > li.fb-msg--bot:last-child .fb-msg__body", """(b) => ({
        text: b.innerText,
        items: Array.from(b.querySelectorAll("ul > li")).map((li) => li.innerText.trim()),
        strong: b.querySelectorAll("ul > li > strong").length,
        links: Array.from(b.querySelectorAll("a")).map((a) => ({
            href: a.getAttribute("href"), target: a.getAttribute("target"), rel: a.getAttribute("rel"),
            text: a.innerText.trim(),
        })),
    })""")
    checks.ok("Les Jardins du Confluent" in roadmap["text"] and len(roadmap["items"]) >= 3
              and any(t.startswith("Faire analyser le sol") for t in roadmap["items"])
              and roadmap["strong"] == len(roadmap["items"]),
              "the roadmap renders as a list with bold step titles", json.dumps(roadmap, ensure_ascii=False))
    links = roadmap["links"]
    checks.ok(len(links) == 1 and links[0]["href"] == "https://www.example.org/guide-friches"
              and links[0]["target"] == "_blank" and re.search("noopener", links[0]["rel"] or "") is not None,
              "the roadmap's link renders, opening a new window without opener", json.dumps(links, ensure_ascii=False))

    # User text is text, never HTML.
    tricky = "<img src=x onerror=alert(1)> & <b>gras</b>"
    known = user_ids(page)
    type_and_send(page, tricky, False)
    h = wait_reply(page, known)
    injected = page.eval_on_selector_all("#fb-messages li.fb-msg--user img, #fb-messages li.fb-msg--user b",
                                         "(l) => l.length")
    checks.ok(injected == 0 and count_text(h, tricky) == 1, "user text is shown as text, not HTML")
    check_history_shape(checks, h, "after the conversation")
    return h


def reload(checks, page, before):
    page.reload()
    wait_online(page)
    want = sum(1 for m in before if m["seq"] is not None)
    page.wait_for_function('(n) => document.querySelectorAll("#fb-messages > li.fb-msg[data-seq]").length >= n',
                           arg=want, timeout=WAIT_MS)
    after = history(page)
    check_history_shape(checks, after, "after a reload")

    def strip(h):
        return [f"{m['seq']}|{m['from']}|{m['text']}" for m in h if m["seq"] is not None]

    a = strip(before)
    b = strip(after)[:len(a)]
    checks.ok(a == b, "a reload shows the same history",
              f"before: {json.dumps(a, ensure_ascii=False)}\nafter:  {json.dumps(strip(after), ensure_ascii=False)}")
    return after


def connection_loss(checks, page, daemon):
    """The daemon stopped under the page, a message sent meanwhile, the daemon restarted."""
    rc, log = daemon.stop()
    daemon.check_clean(rc, log)
    checks.ok(daemon.proc.poll() is not None, "the daemon was stopped", rc)
    page.wait_for_selector('#fb-status[data-state="offline"]', timeout=WAIT_MS)
    status = page.text_content("#fb-status")
    checks.ok(re.search("Connexion perdue", status or "") is not None, "the page says the connection is lost", status)

    text = "Message écrit pendant la coupure"
    known = user_ids(page)
    type_and_send(page, text, False)
    page.wait_for_selector("#fb-messages li.fb-msg[data-pending] .fb-msg__state", timeout=WAIT_MS)
    waiting = page.text_content("#fb-messages li.fb-msg[data-pending] .fb-msg__state")
    checks.ok(re.search("attente", waiting or "", re.IGNORECASE) is not None,
              "a message sent offline waits, and says so", waiting)

    daemon.start()
    checks.ok(daemon.proc.poll() is None, "the daemon was restarted", daemon.read_log())
    wait_online(page)
    h = wait_reply(page, known)
    checks.ok(count_text(h, text) == 1, "the offline message is delivered once after recovery",
              json.dumps(h, ensure_ascii=False))
    checks.ok(not any(m["pending"] for m in h), "nothing left pending after recovery")
    check_history_shape(checks, h, "after recovery")
    # The server's own history has it once too.
    h = reload(checks, page, h)
    checks.ok(count_text(h, text) == 1, "after recovery and a reload, the offline message is there once")


def redis_outage(checks, page, redis):
    """Redis stopped under the daemon: a message sent meanwhile is refused (`unavailable`), the
    page says so politely and keeps it; once Redis is back it is resent and answered exactly once."""
    # Redis goes away saving its data, as a restart by its service manager would.
    redis.cli("SHUTDOWN", "SAVE")
    redis.proc.wait(10)
    redis.proc = None
    checks.ok(not redis.ping(), "Redis was stopped")
    text = "Message écrit pendant la panne de Redis"
    known = user_ids(page)
    type_and_send(page, text, False)
    page.wait_for_selector("#fb-notice:not([hidden])", timeout=WAIT_MS)
    notice = page.text_content("#fb-notice")
    checks.ok(re.search("indisponible", notice or "", re.IGNORECASE) is not None,
              "the page says the service is briefly unavailable", notice)
    redis.start()
    checks.ok(redis.ping(), "Redis was restarted")
    h = wait_reply(page, known)
    checks.ok(count_text(h, text) == 1, "the message refused during the outage is answered once",
              json.dumps(h, ensure_ascii=False))
    page.wait_for_selector("#fb-notice", state="hidden", timeout=WAIT_MS)
    checks.ok(True, "the notice goes once the message went through")
    check_history_shape(checks, h, "after the Redis outage")


def forget(checks, page):
    """"Oublier mes données" (the button, confirmed): the server erases the conversation and says
    goodbye, the browser drops the token, and a reload starts a new conversation."""
    asked = []

    def on_dialog(d):
        asked.append(d.message)
        d.accept()

    page.once("dialog", on_dialog)
    known = user_ids(page)
    page.click("#fb-forget")
    h = wait_reply(page, known)
    checks.ok(len(asked) == 1 and re.search("définitive", asked[0]) is not None,
              "forgetting asks for a confirmation first", asked)
    checks.ok(count_text(h, "oublier mes données") == 1, "the button sends the command, and the bot answers")
    page.wait_for_function('() => localStorage.getItem("frichebot.token") === null', timeout=WAIT_MS)
    checks.ok(True, "the browser forgets the token once the server has the command")
    page.reload()
    wait_online(page)
    page.wait_for_selector("#fb-messages > li.fb-msg--bot", timeout=WAIT_MS)
    fresh = history(page)
    checks.ok(len(fresh) >= 1 and fresh[0]["text"].startswith("Bonjour")
              and not any(re.search("Confluent|lyon", m["text"]) for m in fresh),
              "after forgetting, a reload shows a new conversation, none of the old one",
              json.dumps(fresh, ensure_ascii=False))


def screenshots(checks, page, out):
    os.makedirs(out, exist_ok=True)
    wide = os.path.join(out, "webchat-1280.png")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=wide, full_page=True)
    print(f"# screenshot: {wide}")

    page.set_viewport_size({"width": 360, "height": 740})
    overflow = page.evaluate("() => document.documentElement.scrollWidth")
    checks.ok(overflow <= 360, "no horizontal scrolling at 360 px", f"scrollWidth {overflow}")
    composer = page.eval_on_selector("#fb-input", "(e) => e.getBoundingClientRect().width")
    checks.ok(composer >= 150, "the text field keeps a usable width at 360 px", f"{composer}px")
    phone = os.path.join(out, "webchat-360.png")
    page.screenshot(path=phone, full_page=True)
    print(f"# screenshot: {phone}")
    page.set_viewport_size({"width": 1280, "height": 900})


def accessibility(checks, browser, url, storage_state, out):
    """axe-core on the chat page (the same conversation, from storage_state) and on the
    personal-data page, at 1280 and 360 px. The page's Content-Security-Policy rightly forbids
    injected scripts, so axe runs in a second context that bypasses CSP."""
    ctx = new_context(browser, bypass_csp=True, storage_state=storage_state)
    page = ctx.new_page()

    def chat_ready():
        wait_online(page)
        page.wait_for_selector("#fb-messages > li.fb-msg--bot", timeout=WAIT_MS)

    pages = [
        ("chat", url, chat_ready),
        ("données personnelles", urljoin(url, "/static/donnees-personnelles.html"),
         lambda: page.wait_for_selector("h1", timeout=WAIT_MS)),
    ]
    for name, page_url, ready in pages:
        for width in (1280, 360):
            page.set_viewport_size({"width": width, "height": 740 if width == 360 else 900})
            page.goto(page_url)
            ready()
            check_axe(checks, page, f"on the {name} page at {width} px")
    page.goto(url)
    wait_online(page)
    page.screenshot(path=os.path.join(out, "webchat-axe-context.png"), full_page=True)
    ctx.close()


def sample_dialog_with_a_link(tmp_path):
    """The sample dialog (with its catalogues), its last message given a link, so that the page
    shows every kind of markup the engine emits: paragraphs, line breaks, bold, lists, links."""
    dst = tmp_path / "dialogs"
    shutil.copytree(os.path.join(SOURCE, "dialogs"), dst)
    dialog = dst / "exemple.yaml"
    text = dialog.read_text()
    old = "Voici votre feuille de route :"
    assert old in text, "the sample dialog changed: update WALK and this function"
    dialog.write_text(text.replace(
        old, "Voici votre feuille de route (voir aussi [le guide](https://www.example.org/guide-friches)) :"))
    return dialog


def test_webchat_in_chromium(redis, make_daemon, tmp_path):
    dialog = sample_dialog_with_a_link(tmp_path)
    # idle_timeout_s: conftest's 2 s would make the page ping every second (it pings at half the
    # server's idle timeout); 60 s keeps the log readable, the page then pings every 25 s.
    # write_deadline_ms: during the Redis outage, a message is refused (`unavailable`) after
    # 0.6 s instead of the default 30 s.
    daemon = make_daemon(redis.address, idle_timeout_s=60, extra_redis="  write_deadline_ms: 600",
                         extra=f'dialogs:\n  path: "{dialog}"\n')
    url = daemon.url("/")
    out = artifacts_dir()
    checks = Checks("webchat")
    problems = []

    def on_console(m):
        # Failed websocket connections while the daemon is down are expected; everything else
        # (CSP violations, script errors, missing files) is a fault of the page.
        if m.type == "error" and not re.search("WebSocket|ERR_CONNECTION_REFUSED", m.text):
            problems.append(f"console error: {m.text}")

    def on_response(r):
        if r.status >= 400:
            problems.append(f"HTTP {r.status} for {r.url}")

    with chromium() as browser:
        page = None
        try:
            ctx = new_context(browser, viewport={"width": 1280, "height": 900})
            page = ctx.new_page()
            page.on("pageerror", lambda e: problems.append(f"page error: {e.message}"))
            page.on("console", on_console)
            page.on("response", on_response)
            resp = page.goto(url)
            checks.ok(resp is not None and resp.status == 200, "the page is served", resp and resp.status)
            checks.ok(page.title() == "Assistant friches", "the page has its French title", page.title())
            checks.ok(page.evaluate('() => document.documentElement.lang === "fr"'), "the page is in French (lang=fr)")
            dsfr = page.evaluate('() => getComputedStyle(document.querySelector(".fr-header")).zIndex')
            checks.ok(dsfr != "auto", "the DSFR stylesheet is applied", f"z-index {dsfr}")
            brand = page.text_content(".fr-header .fr-logo")
            checks.ok(re.search(r"République\s+Française", brand or "") is not None,
                      "the header shows the République Française bloc-marque", brand)

            h = conversation(checks, page)
            reload(checks, page, h)
            connection_loss(checks, page, daemon)
            redis_outage(checks, page, redis)
            screenshots(checks, page, out)
            state = ctx.storage_state()
            accessibility(checks, browser, url, state, out)
            forget(checks, page)
            checks.ok(not problems, "no console error, no page error, no failed request", "\n".join(problems))
        except Exception:
            checks.ok(False, "the test ran to its end", traceback.format_exc())
            if page is not None:
                try:
                    shot = os.path.join(out, "webchat-failure.png")
                    page.screenshot(path=shot, full_page=True)
                    print(f"# screenshot of the failure: {shot}")
                    print(f"# page at failure:\n# {json.dumps(history(page), ensure_ascii=False)}")
                except Exception as e:  # the page may be gone: the failure is reported anyway
                    print(f"# no failure screenshot: {e}")
            if problems:
                print("# console/page problems so far:\n# " + "\n# ".join(problems))

    checks.assert_all(f"\n--- daemon log ---\n{daemon.read_log()}")
    for name in ("webchat-1280.png", "webchat-360.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name


# ---- following the conversation (issue #16): the real friche dialog at a desktop's and a phone's size ----

FRICHE = os.path.join(SOURCE, "dialogs", "friche.yaml")
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}

# The walk through the friche dialog to its roadmap; "how" as in WALK, plus "other-tab": this tab
# is scrolled up into the history and the answer comes from a second tab of the same conversation
# (the server pushes every entry to every tab), so that the next question arrives while reading.
FRICHE_WALK = [
    {"question": "Dans quelle commune", "how": "enter", "answer": "saint dizier"},
    {"question": "Pour qui faites-vous cette démarche", "how": "click", "answer": "La commune"},
    {"question": "Quel était l'usage du site", "how": "click", "answer": "Ferroviaire (gare, voies, dépôt)"},
    {"question": "Quelle est la surface du site", "how": "enter", "answer": "3 hectares"},
    {"question": "Y a-t-il des bâtiments", "how": "keyboard", "answer": "Pas de bâtiment"},
    {"question": "Depuis combien de temps", "how": "other-tab", "answer": "10 ans"},
    {"question": "À qui appartient le site", "how": "click", "answer": "À l'État ou à un organisme public (SNCF, hôpital…)"},
    {"question": "Que sait-on d'une éventuelle pollution", "how": "click", "answer": "Rien de particulier"},
    {"question": "Quel document d'urbanisme", "how": "enter", "answer": "PLU"},
    {"question": "Le site est-il concerné", "how": "enter", "answer": "aucune"},
    {"question": "Qu'aimeriez-vous faire du site", "how": "click", "answer": "Des logements"},
    {"question": "Où en est le projet", "how": "click", "answer": "C'est une idée"},
    {"question": "La commune fait-elle partie", "how": "click", "answer": "Action cœur de ville"},
]
# The end of the roadmap's reply: no question comes with it (issue #16, point 5).
AFTER_ROADMAP = "Votre feuille de route est enregistrée"
# The rating question, asked after the reply to the next message (here « où en suis-je »).
AFTER_RECAP = "Je donne mon avis"

# Where the newest bot message (its top), its last choice button and the text field are, in the
# viewport's coordinates (getBoundingClientRect), with the composer's bottom and the viewport.
POSITIONS = """() => {
    const bots = document.querySelectorAll("#fb-messages > li.fb-msg--bot");
    const last = bots[bots.length - 1];
    const buttons = last ? last.querySelectorAll(".fb-choices button") : [];
    const box = (e) => {
        if (!e) return null;
        const r = e.getBoundingClientRect();
        return {top: Math.round(r.top), bottom: Math.round(r.bottom), left: Math.round(r.left), right: Math.round(r.right)};
    };
    return {
        vh: window.innerHeight, vw: window.innerWidth, scrollY: Math.round(window.scrollY),
        question: box(last), buttons: buttons.length, firstChoice: box(buttons[0]),
        lastChoice: box(buttons[buttons.length - 1]), input: box(document.getElementById("fb-input")),
        form: box(document.getElementById("fb-form")),
        text: last ? last.querySelector(".fb-msg__body").innerText.trim() : "",
    };
}"""


def wait_question(page, text):
    """Waits for the newest bot message to contain `text`."""
    page.wait_for_function("""(t) => {
        const b = document.querySelectorAll("#fb-messages > li.fb-msg--bot");
        return b.length > 0 && b[b.length - 1].querySelector(".fb-msg__body").innerText.includes(t);
    }""", arg=text, timeout=WAIT_MS)


def inside(box, vh):
    return box is not None and box["top"] >= 0 and box["bottom"] <= vh


def fmt(box):
    return f"{box['top']}–{box['bottom']}" if box else "-"


def check_in_view(checks, page, what, log):
    """The newest question's last choice and the text field are inside the viewport; so is the
    question's start whenever the question, its choices and the composer fit in the viewport.
    Records the positions in `log` and prints them."""
    p = page.evaluate(POSITIONS)
    line = (f"{what}: question {fmt(p['question'])}, {p['buttons']} choices {fmt(p['firstChoice'])} .. "
            f"{fmt(p['lastChoice'])}, input {fmt(p['input'])}, viewport {p['vw']}×{p['vh']} at y {p['scrollY']}")
    log.append(line)
    print(f"# positions, {line}")
    vh = p["vh"]
    checks.ok(inside(p["input"], vh), f"{what}: the text field is inside the viewport", line)
    if p["buttons"]:
        checks.ok(inside(p["lastChoice"], vh), f"{what}: the last choice button is inside the viewport", line)
    fits = p["form"]["bottom"] - p["question"]["top"] <= vh
    if fits:
        checks.ok(p["question"]["top"] >= 0, f"{what}: the question's start is inside the viewport (it fits)", line)
    else:
        # Taller than the viewport: the question starts as high as it can, the field at the bottom.
        checks.ok(p["form"]["bottom"] <= vh and p["form"]["bottom"] >= vh - 48,
                  f"{what}: too tall for the viewport, the composer sits at its bottom", line)
    return p


# The reader's place: the scroll offset and the top of the first message that reaches the middle of
# the viewport.
READER = """() => {
    const items = Array.from(document.querySelectorAll("#fb-messages > li.fb-msg[data-seq]"));
    const li = items.find((e) => e.getBoundingClientRect().bottom > window.innerHeight / 2);
    return {scrollY: window.scrollY, seq: li ? li.dataset.seq : null,
            top: li ? li.getBoundingClientRect().top : null,
            formTop: document.getElementById("fb-form").getBoundingClientRect().top};
}"""

NEWER = """() => {
    const b = document.getElementById("fb-newer");
    if (!b) return null;
    const r = b.getBoundingClientRect();
    const live = b.closest('[role="status"], [aria-live="polite"]');
    return {tag: b.tagName, text: b.innerText.trim(), visible: !b.closest("[hidden]") && getComputedStyle(b).display !== "none" && r.width > 0,
            top: r.top, bottom: r.bottom, left: r.left, right: r.right, width: r.width,
            tabindex: b.getAttribute("tabindex"), disabled: b.disabled,
            live: live ? (live.getAttribute("aria-live") || live.getAttribute("role")) : null};
}"""


def newer_button(page):
    return page.evaluate(NEWER)


def answer_while_scrolled_up(checks, page, ctx, url, step, next_question, size, out, log):
    """This tab's reader scrolls up into the history (the newest bot message starts below the
    viewport); a second tab of the conversation answers. The new entries must not move the
    reader; a « Nouveaux messages » button appears (a real button, in a polite live region,
    reached with Tab), and pressing it brings the newest question into view and goes away."""
    page.evaluate("""() => {
        const b = document.querySelectorAll("#fb-messages > li.fb-msg--bot");
        const top = b[b.length - 1].getBoundingClientRect().top + window.scrollY;
        window.scrollTo(0, Math.max(0, top - window.innerHeight + 40));
    }""")
    page.wait_for_timeout(200)  # let the scroll events of the reader's move run
    before = page.evaluate(READER)
    vh = page.evaluate("() => window.innerHeight")
    checks.ok(before["formTop"] > vh and before["seq"] is not None,
              f"{size}: the reader scrolled up, the composer is below the viewport", json.dumps(before))
    shown = newer_button(page)
    checks.ok(shown is None or not shown["visible"], f"{size}: no « Nouveaux messages » button before a new message",
              json.dumps(shown))

    other = ctx.new_page()
    try:
        other.goto(url)
        wait_online(other)
        wait_question(other, step["question"])
        type_and_send(other, step["answer"], False)
        wait_question(other, next_question)
    except Exception:
        other.close()
        raise
    wait_question(page, next_question)
    page.wait_for_timeout(300)  # any scrolling the page would do on its own has happened by now
    after = page.evaluate(f"""() => {{
        const r = ({READER})();
        const li = document.querySelector('li.fb-msg[data-seq="{before['seq']}"]');
        r.sameTop = li ? li.getBoundingClientRect().top : null;
        return r;
    }}""")
    checks.ok(abs(after["scrollY"] - before["scrollY"]) <= 1 and after["sameTop"] is not None
              and abs(after["sameTop"] - before["top"]) <= 1,
              f"{size}: a message arriving while the reader is scrolled up does not move the reader",
              f"before {json.dumps(before)}\nafter  {json.dumps(after)}")
    b = newer_button(page)
    checks.ok(b is not None and b["visible"] and b["tag"] == "BUTTON" and "Nouveaux messages" in b["text"]
              and b["top"] >= 0 and b["bottom"] <= vh and not b["disabled"] and b["tabindex"] in (None, "0"),
              f"{size}: a « Nouveaux messages » button shows, inside the viewport", json.dumps(b, ensure_ascii=False))
    checks.ok(b is not None and b["live"] in ("polite", "status"),
              f"{size}: the button is announced politely (inside a polite live region)", json.dumps(b))
    shot = os.path.join(out, f"follow-{size}-scrolled-up.png")
    page.screenshot(path=shot)
    print(f"# screenshot: {shot}")
    check_axe(checks, page, f"with the « Nouveaux messages » button shown ({size})")

    # Keyboard: from the last option of the newest question (focused without scrolling), Tab
    # reaches the button; Enter brings the newest into view and the button goes.
    page.evaluate("""() => {
        const l = document.querySelectorAll("#fb-messages .fb-choices button, #fb-messages a[href]");
        (l.length ? l[l.length - 1] : document.getElementById("fb-conversation")).focus({preventScroll: true});
    }""")
    page.keyboard.press("Tab")
    focused = page.evaluate("() => document.activeElement && document.activeElement.id")
    checks.ok(focused == "fb-newer", f"{size}: Tab reaches the « Nouveaux messages » button", focused)
    page.keyboard.press("Enter")
    page.wait_for_timeout(200)
    b = newer_button(page)
    checks.ok(b is None or not b["visible"], f"{size}: the button goes once pressed", json.dumps(b))
    lost = page.evaluate("() => document.activeElement === document.body || document.activeElement === null")
    checks.ok(not lost, f"{size}: the focus does not fall back to the page when the button goes")
    check_in_view(checks, page, f"{size}, after « Nouveaux messages »", log)
    other.close()


def hex_luminance(rgb):
    def chan(c):
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = rgb
    return 0.2126 * chan(r) + 0.7152 * chan(g) + 0.0722 * chan(b)


def contrast(a, b):
    la, lb = sorted((hex_luminance(a), hex_luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def rgb(css):
    m = re.match(r"rgba?\((\d+),\s*(\d+),\s*(\d+)", css or "")
    return tuple(int(x) for x in m.groups()) if m else None


def check_focus_ring(checks, page, size, out):
    """The focused option (reached with the keyboard) shows a ring of at least 2 px whose colour
    stands out from the bubble behind it (3:1, WCAG 1.4.11)."""
    ring = page.evaluate("""() => {
        const a = document.activeElement;
        const s = getComputedStyle(a);
        const bubble = a.closest("li.fb-msg");
        return {style: s.outlineStyle, width: parseFloat(s.outlineWidth), color: s.outlineColor,
                offset: s.outlineOffset, behind: bubble ? getComputedStyle(bubble).backgroundColor : null,
                visible: a.matches(":focus-visible")};
    }""")
    ratio = contrast(rgb(ring["color"]), rgb(ring["behind"])) if rgb(ring["color"]) and rgb(ring["behind"]) else 0
    checks.ok(ring["visible"] and ring["style"] not in ("none", "hidden") and ring["width"] >= 2 and ratio >= 3,
              f"{size}: the focused option has a visible focus ring (≥ 2 px, contrast {ratio:.1f}:1)",
              json.dumps(ring))
    shot = os.path.join(out, f"follow-{size}-focus.png")
    page.screenshot(path=shot)
    print(f"# screenshot: {shot}")


# The numbered list of the newest bot message that has one: its items and its bubble get a data-
# attribute, so that they can be found in the DOM snapshot.
TAG_LIST = """() => {
    const ols = Array.from(document.querySelectorAll("#fb-messages > li.fb-msg--bot .fb-msg__body ol"));
    const ol = ols[ols.length - 1];
    if (!ol) return null;
    const bubble = ol.closest("li.fb-msg");
    bubble.setAttribute("data-fb-test", "bubble");
    const items = Array.from(ol.children);
    items.forEach((li, i) => li.setAttribute("data-fb-test", "item-" + (i + 1)));
    bubble.scrollIntoView({block: "start"});
    const s = getComputedStyle(bubble);
    return {items: items.length, borderLeft: parseFloat(s.borderLeftWidth), borderRight: parseFloat(s.borderRightWidth),
            content: getComputedStyle(items[0], "::marker").content};
}"""


def rendered_markers(ctx, page):
    """The rendered text and box of each tagged item's ::marker, and the bubble's box, read from
    Chromium's layout tree (DOMSnapshot): the text is what the page shows, counters resolved."""
    cdp = ctx.new_cdp_session(page)
    try:
        snap = cdp.send("DOMSnapshot.captureSnapshot", {"computedStyles": []})
    finally:
        cdp.detach()
    strings = snap["strings"]
    doc = snap["documents"][0]
    nodes, layout = doc["nodes"], doc["layout"]
    tags = {}
    for i, attrs in enumerate(nodes["attributes"]):
        for k in range(0, len(attrs), 2):
            if strings[attrs[k]] == "data-fb-test":
                tags[i] = strings[attrs[k + 1]]
    pseudo = {i: strings[v] for i, v in zip(nodes["pseudoType"]["index"], nodes["pseudoType"]["value"])}
    marker_of = {i: tags[nodes["parentIndex"][i]] for i, t in pseudo.items()
                 if t == "marker" and nodes["parentIndex"][i] in tags}
    markers, bubble = {}, None
    for k, n in enumerate(layout["nodeIndex"]):
        x, y, w, h = layout["bounds"][k]
        if tags.get(n) == "bubble":
            bubble = {"left": x, "right": x + w}
        if n in marker_of:
            m = markers.setdefault(marker_of[n], {"text": "", "left": None, "right": None})
            t = layout["text"][k]
            if t >= 0:
                m["text"] += strings[t]
            if w > 0:
                m["left"] = x if m["left"] is None else min(m["left"], x)
                m["right"] = x + w if m["right"] is None else max(m["right"], x + w)
    return markers, bubble


def check_numbered_list(checks, ctx, page, size, out):
    """« où en suis-je » lists the steps as an ordered list: its markers read 1., 2., 3. (the
    numbers « étape 2 faite » uses) and stay inside the message's bubble."""
    known = user_ids(page)
    type_and_send(page, "où en suis-je", False)
    wait_reply(page, known)
    wait_question(page, AFTER_RECAP)
    tagged = page.evaluate(TAG_LIST)
    checks.ok(tagged is not None and tagged["items"] >= 3, f"{size}: « où en suis-je » shows a numbered list",
              json.dumps(tagged))
    if not tagged:
        return
    markers, bubble = rendered_markers(ctx, page)
    texts = [markers.get(f"item-{i + 1}", {}).get("text", "").replace("\u00a0", " ").strip()
             for i in range(tagged["items"])]
    print(f"# {size}: list markers {texts}, ::marker content {tagged['content']}")
    checks.ok(texts == [f"{i + 1}." for i in range(tagged["items"])],
              f"{size}: the list's markers read 1., 2., 3. …", f"{texts}; ::marker content {tagged['content']}")
    spill = [(k, m) for k, m in markers.items()
             if bubble is None or m["left"] is None
             or m["left"] < bubble["left"] + tagged["borderLeft"] or m["right"] > bubble["right"] - tagged["borderRight"]]
    checks.ok(bubble is not None and len(markers) == tagged["items"] and not spill,
              f"{size}: every marker fits inside the bubble", f"bubble {bubble}, border {tagged['borderLeft']}, "
              f"markers {json.dumps(markers, ensure_ascii=False)}")
    shot = os.path.join(out, f"follow-{size}-numbered-list.png")
    page.locator('[data-fb-test="bubble"]').screenshot(path=shot)
    print(f"# screenshot: {shot}")


def most_choices():
    """The question of the friche dialog with the most buttons (its choices, plus « Je ne sais
    pas » when allowed): (question, number of buttons)."""
    import yaml
    with open(FRICHE, encoding="utf-8") as f:
        states = yaml.safe_load(f)["etats"]
    best = max((s for s in states.values() if s.get("choix")),
               key=lambda s: len(s["choix"]) + (1 if s.get("je_ne_sais_pas") else 0))
    return best["question"], len(best["choix"]) + (1 if best.get("je_ne_sais_pas") else 0)


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_webchat_follows_the_conversation(redis, make_daemon, size):
    daemon = make_daemon(redis.address, idle_timeout_s=60, extra=f'dialogs:\n  path: "{FRICHE}"\n')
    url = daemon.url("/")
    out = artifacts_dir()
    checks = Checks(f"follow ({size})")
    problems = []
    log = []
    biggest, biggest_n = most_choices()
    checks.ok(any(biggest.startswith(s["question"]) for s in FRICHE_WALK),
              f"the walk meets the question with the most choices ({biggest_n}: {biggest})")

    with chromium() as browser:
        page = None
        try:
            # bypass_csp: axe-core is injected while the « Nouveaux messages » button shows (the
            # page's own CSP is checked by test_webchat_in_chromium).
            ctx = new_context(browser, viewport=SIZES[size], bypass_csp=True)
            page = ctx.new_page()
            page.on("pageerror", lambda e: problems.append(f"page error: {e.message}"))
            page.on("console", lambda m: problems.append(f"console error: {m.text}") if m.type == "error" else None)
            page.goto(url)
            wait_online(page)
            wait_question(page, FRICHE_WALK[0]["question"])
            check_in_view(checks, page, f"{size}, first question", log)

            for i, step in enumerate(FRICHE_WALK):
                nxt = FRICHE_WALK[i + 1]["question"] if i + 1 < len(FRICHE_WALK) else AFTER_ROADMAP
                if step["how"] == "other-tab":
                    answer_while_scrolled_up(checks, page, ctx, url, step, nxt, size, out, log)
                    continue
                answer(checks, page, step, i + 1)
                wait_question(page, nxt)
                p = check_in_view(checks, page, f"{size}, step {i + 2} ({nxt})", log)
                if biggest.startswith(nxt):
                    checks.ok(p["buttons"] == biggest_n, f"{size}: the question with the most choices shows {biggest_n} buttons",
                              p["buttons"])
                    shot = os.path.join(out, f"follow-{size}-most-choices.png")
                    page.screenshot(path=shot)
                    print(f"# screenshot: {shot}")
                if FRICHE_WALK[i + 1:i + 2] and FRICHE_WALK[i + 1]["how"] == "keyboard":
                    # The next answer is given with the keyboard: check the ring on its option.
                    page.focus("#fb-input")
                    page.keyboard.press("Shift+Tab")
                    check_focus_ring(checks, page, size, out)
                    page.focus("#fb-input")

            shot = os.path.join(out, f"follow-{size}-roadmap.png")
            page.screenshot(path=shot)
            print(f"# screenshot: {shot}")
            check_numbered_list(checks, ctx, page, size, out)

            # A reload resumes at the end of the conversation, once the history is replayed.
            want = page.evaluate('() => document.querySelectorAll("#fb-messages > li.fb-msg[data-seq]").length')
            page.reload()
            wait_online(page)
            page.wait_for_function('(n) => document.querySelectorAll("#fb-messages > li.fb-msg[data-seq]").length >= n',
                                   arg=want, timeout=WAIT_MS)
            wait_question(page, AFTER_RECAP)
            page.wait_for_timeout(500)
            p = check_in_view(checks, page, f"{size}, after a reload", log)
            bottom = page.evaluate("""() => {
                const items = document.querySelectorAll("#fb-messages > li.fb-msg");
                return items[items.length - 1].getBoundingClientRect().bottom;
            }""")
            checks.ok(0 < bottom <= p["vh"], f"{size}: after a reload the last message ends inside the viewport",
                      f"last message's bottom {bottom}, viewport {p['vh']}")
            shot = os.path.join(out, f"follow-{size}-reload.png")
            page.screenshot(path=shot)
            print(f"# screenshot: {shot}")
            checks.ok(not problems, f"{size}: no console error, no page error", "\n".join(problems))
        except Exception:
            checks.ok(False, "the test ran to its end", traceback.format_exc())
            if page is not None:
                try:
                    shot = os.path.join(out, f"follow-{size}-failure.png")
                    page.screenshot(path=shot)
                    print(f"# screenshot of the failure: {shot}")
                except Exception as e:  # the page may be gone: the failure is reported anyway
                    print(f"# no failure screenshot: {e}")
    print("# positions:\n# " + "\n# ".join(log))
    checks.assert_all("\n# positions:\n# " + "\n# ".join(log))
