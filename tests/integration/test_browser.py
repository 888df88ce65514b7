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
