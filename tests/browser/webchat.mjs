// SPDX-License-Identifier: MIT
//
// Browser test of the web chat page, in a real headless Chromium (Debian's /usr/bin/chromium)
// driven by playwright-core, against a real daemon. Run by tests/integration/test_browser.py,
// which starts Redis and the daemon; see docs/webchat.md.
//
//   node tests/browser/webchat.mjs --url http://127.0.0.1:PORT/ --out DIR [--control]
//
// With --control the script asks its parent to stop and restart the daemon or Redis: it prints a
// line "@@stop-daemon", "@@start-daemon", "@@stop-redis" or "@@start-redis" and waits for one line
// on stdin before going on. Without it, those steps cannot run and count as failures.
//
// Steps: open the page and wait for the greeting; answer by typing and by clicking a button;
// reload and see the same history, without duplicates; lose the connection (daemon stopped),
// send a message meanwhile, get it delivered exactly once after recovery; the same with Redis
// stopped (the page shows the server's "unavailable" notice and resends); screenshots (full page,
// at 1280 px and at 360 px) in DIR; axe-core finds no serious or critical violation on the chat
// and personal-data pages; "Oublier mes données" erases the conversation.
// Every check prints "ok - ..." or "not ok - ..."; the exit status is 0 only if all passed.

import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import {fileURLToPath} from "node:url";
import {chromium} from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const AXE = path.join(ROOT, "node_modules/axe-core/axe.min.js");
const CHROMIUM = process.env.FB_CHROMIUM || "/usr/bin/chromium";
// Generous waits: a sanitizer build of the daemon on a loaded 2-core machine is slow. They bound
// how long a broken page can hang the test; no check depends on how fast anything is.
const WAIT_MS = 30000;

function parseArgs(argv) {
    const args = {url: null, out: null, control: false};
    for (let i = 0; i < argv.length; i++) {
        if (argv[i] === "--url")
            args.url = argv[++i];
        else if (argv[i] === "--out")
            args.out = argv[++i];
        else if (argv[i] === "--control")
            args.control = true;
        else
            throw new Error(`unknown argument ${argv[i]}`);
    }
    if (!args.url || !args.out)
        throw new Error("usage: webchat.mjs --url URL --out DIR [--control]");
    return args;
}

let failures = 0;
let passes = 0;

function ok(cond, what, detail) {
    if (cond) {
        passes++;
        console.log(`ok - ${what}`);
    } else {
        failures++;
        console.log(`not ok - ${what}${detail !== undefined ? `\n  ${String(detail).replace(/\n/g, "\n  ")}` : ""}`);
    }
    return cond;
}

// The parent (pytest) answers each "@@..." request with one line.
const stdinLines = readline.createInterface({input: process.stdin})[Symbol.asyncIterator]();

async function askParent(request) {
    console.log(`@@${request}`);
    const r = await stdinLines.next();
    if (r.done)
        throw new Error(`no answer from the parent to ${request}`);
    return r.value.trim();
}

// ---- what the page shows ----

async function history(page) {
    return page.$$eval("#fb-messages > li.fb-msg", (items) => items.map((li) => ({
        seq: li.dataset.seq === undefined ? null : Number(li.dataset.seq),
        from: li.classList.contains("fb-msg--bot") ? "bot" : "user",
        id: li.dataset.id || null,
        pending: li.dataset.pending !== undefined,
        text: li.querySelector(".fb-msg__body").innerText.trim(),
        choices: Array.from(li.querySelectorAll(".fb-choices button")).map((b) => b.innerText.trim()),
    })));
}

async function waitOnline(page) {
    await page.waitForSelector('#fb-status[data-state="online"]', {timeout: WAIT_MS});
}

// The ids of the user's messages on the page.
async function userIds(page) {
    return page.$$eval("#fb-messages > li.fb-msg--user", (l) => l.map((li) => li.dataset.id || ""));
}

// Waits for the user's message that appeared since `known` (ids before sending) to be in the
// server's history (it has a seq) with a bot message after it; returns the history.
async function waitReply(page, known) {
    const handle = await page.waitForFunction((ids) => {
        const l = Array.from(document.querySelectorAll("#fb-messages > li.fb-msg--user"));
        const mine = l.find((li) => li.dataset.id && !ids.includes(li.dataset.id));
        return mine ? mine.dataset.id : null;
    }, known, {timeout: WAIT_MS});
    const id = await handle.jsonValue();
    await page.waitForFunction((id) => {
        const items = Array.from(document.querySelectorAll("#fb-messages > li.fb-msg"));
        const i = items.findIndex((li) => li.dataset.id === id && li.dataset.seq !== undefined);
        return i >= 0 && items.slice(i + 1).some((li) => li.classList.contains("fb-msg--bot"));
    }, id, {timeout: WAIT_MS});
    return history(page);
}

function checkHistoryShape(h, what) {
    const seqs = h.filter((m) => m.seq !== null).map((m) => m.seq);
    const unique = new Set(seqs).size === seqs.length;
    const ordered = seqs.every((s, i) => i === 0 || s > seqs[i - 1]);
    ok(unique && ordered, `${what}: every entry once, in seq order`, JSON.stringify(seqs));
    const ids = h.filter((m) => m.id).map((m) => m.id);
    ok(new Set(ids).size === ids.length, `${what}: no user message shown twice`, JSON.stringify(ids));
}

function countText(h, text) {
    return h.filter((m) => m.from === "user" && m.text === text).length;
}

async function typeAndSend(page, text, viaButton) {
    await page.fill("#fb-input", text);
    if (viaButton)
        await page.click("#fb-send");
    else
        await page.press("#fb-input", "Enter");
}

// The walk through the sample dialog (dialogs/exemple.yaml, which test_browser.py gives the
// daemon with a link added to its last message), with the way each answer is given: typed and
// sent with Enter or with the button, a button clicked with the mouse, or a button reached and
// pressed with the keyboard only.
const WALK = [
    {question: "Dans quelle commune", how: "enter", answer: "lyon"},
    {question: "Qui porte le projet", how: "click", answer: "Une association"},
    {question: "Quelle est la surface", how: "send-button", answer: "1,2 ha"},
    {question: "Le sol a-t-il déjà été analysé", how: "keyboard", answer: "Non"},
    {question: "Quels usages envisagez-vous", how: "enter", answer: "1, 2 et 4"},
    {question: "Quand souhaitez-vous ouvrir", how: "enter", answer: "mars 2035"},
    {question: "Comment s'appellera le jardin", how: "enter", answer: "Les Jardins du Confluent"},
];

// Answers one question; returns the history once the answer is in it and the bot replied.
async function answer(page, step, n) {
    let h = await history(page);
    const last = [...h].reverse().find((m) => m.from === "bot");
    ok(last && last.text.includes(step.question), `step ${n}: the bot asks "${step.question}"`,
       last && last.text);
    const known = await userIds(page);
    if (step.how === "click") {
        ok(last.choices.includes(step.answer), `step ${n}: "${step.answer}" is offered as a button`,
           JSON.stringify(last.choices));
        await page.click(`#fb-messages .fb-choices button:text-is("${step.answer}")`);
    } else if (step.how === "keyboard") {
        // From the text field, Shift+Tab walks back through the options; Enter picks one.
        const from = last.choices.length - last.choices.indexOf(step.answer);
        ok(from > 0 && from <= last.choices.length, `step ${n}: "${step.answer}" is offered`,
           JSON.stringify(last.choices));
        await page.focus("#fb-input");
        for (let i = 0; i < from; i++)
            await page.keyboard.press("Shift+Tab");
        const focused = await page.evaluate(() => document.activeElement &&
            document.activeElement.closest(".fb-choices") !== null &&
            document.activeElement.innerText.trim());
        ok(focused === step.answer, `step ${n}: the option is reachable with the keyboard`, focused);
        const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
        ok(outline !== "none", `step ${n}: the focused option shows a visible focus ring`, outline);
        await page.keyboard.press("Enter");
    } else {
        await typeAndSend(page, step.answer, step.how === "send-button");
    }
    h = await waitReply(page, known);
    ok(countText(h, step.answer) === 1 && h.filter((m) => m.pending).length === 0,
       `step ${n}: "${step.answer}" is in the history once, nothing left pending`);
    return h;
}

async function conversation(page) {
    await page.waitForSelector("#fb-messages > li.fb-msg--bot", {timeout: WAIT_MS});
    await waitOnline(page);
    let h = await history(page);
    ok(h.length > 0 && h[0].from === "bot" && h[0].text.startsWith("Bonjour"), "the greeting is shown",
       JSON.stringify(h));
    const token = await page.evaluate(() => localStorage.getItem("frichebot.token"));
    ok(typeof token === "string" && /^[A-Za-z0-9_-]{43}$/.test(token), "the token is kept in localStorage");

    for (let i = 0; i < WALK.length; i++) {
        h = await answer(page, WALK[i], i + 1);
        if (i === 1) {
            // A question without options: the previous message's buttons are gone.
            const buttons = await page.$$eval("#fb-messages .fb-choices button", (l) => l.length);
            ok(buttons === 0, "only the last bot message has active buttons", `${buttons} buttons`);
        }
    }

    // The roadmap: a list with bold titles, and a link that opens in a new window.
    const roadmap = await page.$eval("#fb-messages > li.fb-msg--bot:last-child .fb-msg__body", (b) => ({
        text: b.innerText,
        items: Array.from(b.querySelectorAll("ul > li")).map((li) => li.innerText.trim()),
        strong: b.querySelectorAll("ul > li > strong").length,
        links: Array.from(b.querySelectorAll("a")).map((a) => ({
            href: a.getAttribute("href"), target: a.getAttribute("target"), rel: a.getAttribute("rel"),
            text: a.innerText.trim(),
        })),
    }));
    ok(roadmap.text.includes("Les Jardins du Confluent") && roadmap.items.length >= 3 &&
       roadmap.items.some((t) => t.startsWith("Faire analyser le sol")) && roadmap.strong === roadmap.items.length,
       "the roadmap renders as a list with bold step titles", JSON.stringify(roadmap));
    ok(roadmap.links.length === 1 && roadmap.links[0].href === "https://www.example.org/guide-friches" &&
       roadmap.links[0].target === "_blank" && /noopener/.test(roadmap.links[0].rel),
       "the roadmap's link renders, opening a new window without opener", JSON.stringify(roadmap.links));

    // User text is text, never HTML.
    const tricky = "<img src=x onerror=alert(1)> & <b>gras</b>";
    const known = await userIds(page);
    await typeAndSend(page, tricky, false);
    h = await waitReply(page, known);
    const injected = await page.$$eval("#fb-messages li.fb-msg--user img, #fb-messages li.fb-msg--user b",
                                       (l) => l.length);
    ok(injected === 0 && countText(h, tricky) === 1, "user text is shown as text, not HTML");
    checkHistoryShape(h, "after the conversation");
    return h;
}

async function reload(page, before) {
    await page.reload();
    await waitOnline(page);
    const want = before.filter((m) => m.seq !== null).length;
    await page.waitForFunction((n) => document.querySelectorAll("#fb-messages > li.fb-msg[data-seq]").length >= n,
                               want, {timeout: WAIT_MS});
    const after = await history(page);
    checkHistoryShape(after, "after a reload");
    const strip = (h) => h.filter((m) => m.seq !== null).map((m) => `${m.seq}|${m.from}|${m.text}`);
    const a = strip(before);
    const b = strip(after).slice(0, a.length);
    ok(JSON.stringify(a) === JSON.stringify(b), "a reload shows the same history",
       `before: ${JSON.stringify(a)}\nafter:  ${JSON.stringify(strip(after))}`);
    return after;
}

async function connectionLoss(page) {
    const reply = await askParent("stop-daemon");
    ok(reply === "stopped", "the daemon was stopped", reply);
    await page.waitForSelector('#fb-status[data-state="offline"]', {timeout: WAIT_MS});
    const status = await page.textContent("#fb-status");
    ok(/Connexion perdue/.test(status), "the page says the connection is lost", status);

    const text = "Message écrit pendant la coupure";
    const known = await userIds(page);
    await typeAndSend(page, text, false);
    await page.waitForSelector("#fb-messages li.fb-msg[data-pending] .fb-msg__state", {timeout: WAIT_MS});
    const waiting = await page.textContent("#fb-messages li.fb-msg[data-pending] .fb-msg__state");
    ok(/attente/i.test(waiting), "a message sent offline waits, and says so", waiting);

    const started = await askParent("start-daemon");
    ok(started === "started", "the daemon was restarted", started);
    await waitOnline(page);
    let h = await waitReply(page, known);
    ok(countText(h, text) === 1, "the offline message is delivered once after recovery", JSON.stringify(h));
    ok(h.filter((m) => m.pending).length === 0, "nothing left pending after recovery");
    checkHistoryShape(h, "after recovery");
    // The server's own history has it once too.
    h = await reload(page, h);
    ok(countText(h, text) === 1, "after recovery and a reload, the offline message is there once");
}

// Redis stopped under the daemon: a message sent meanwhile is refused (`unavailable`), the page
// says so politely and keeps it; once Redis is back it is resent and answered exactly once.
async function redisOutage(page) {
    const reply = await askParent("stop-redis");
    ok(reply === "stopped", "Redis was stopped", reply);
    const text = "Message écrit pendant la panne de Redis";
    const known = await userIds(page);
    await typeAndSend(page, text, false);
    await page.waitForSelector("#fb-notice:not([hidden])", {timeout: WAIT_MS});
    const notice = await page.textContent("#fb-notice");
    ok(/indisponible/i.test(notice), "the page says the service is briefly unavailable", notice);
    const started = await askParent("start-redis");
    ok(started === "started", "Redis was restarted", started);
    const h = await waitReply(page, known);
    ok(countText(h, text) === 1, "the message refused during the outage is answered once", JSON.stringify(h));
    await page.waitForSelector("#fb-notice", {state: "hidden", timeout: WAIT_MS});
    ok(true, "the notice goes once the message went through");
    checkHistoryShape(h, "after the Redis outage");
}

// "Oublier mes données" (the button, confirmed): the server erases the conversation and says
// goodbye, the browser drops the token, and a reload starts a new conversation.
async function forget(page) {
    let asked = null;
    page.once("dialog", async (d) => {
        asked = d.message();
        await d.accept();
    });
    const known = await userIds(page);
    await page.click("#fb-forget");
    const h = await waitReply(page, known);
    ok(asked !== null && /définitive/.test(asked), "forgetting asks for a confirmation first", asked);
    ok(countText(h, "oublier mes données") === 1, "the button sends the command, and the bot answers");
    await page.waitForFunction(() => localStorage.getItem("frichebot.token") === null, null, {timeout: WAIT_MS});
    ok(true, "the browser forgets the token once the server has the command");
    await page.reload();
    await waitOnline(page);
    await page.waitForSelector("#fb-messages > li.fb-msg--bot", {timeout: WAIT_MS});
    const fresh = await history(page);
    ok(fresh.length >= 1 && fresh[0].text.startsWith("Bonjour") &&
       !fresh.some((m) => /Confluent|lyon/.test(m.text)),
       "after forgetting, a reload shows a new conversation, none of the old one", JSON.stringify(fresh));
}

async function screenshots(page, out) {
    fs.mkdirSync(out, {recursive: true});
    const wide = path.join(out, "webchat-1280.png");
    await page.setViewportSize({width: 1280, height: 900});
    await page.screenshot({path: wide, fullPage: true});
    console.log(`# screenshot: ${wide}`);

    await page.setViewportSize({width: 360, height: 740});
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
    ok(overflow <= 360, "no horizontal scrolling at 360 px", `scrollWidth ${overflow}`);
    const composer = await page.$eval("#fb-input", (e) => e.getBoundingClientRect().width);
    ok(composer >= 150, "the text field keeps a usable width at 360 px", `${composer}px`);
    const phone = path.join(out, "webchat-360.png");
    await page.screenshot({path: phone, fullPage: true});
    console.log(`# screenshot: ${phone}`);
    await page.setViewportSize({width: 1280, height: 900});
}

// axe-core, injected with addScriptTag. The page's Content-Security-Policy rightly forbids
// injected scripts, so axe runs in a second context that bypasses CSP, on the same conversation.
async function accessibility(browser, url, storageState, out) {
    const ctx = await browser.newContext({bypassCSP: true, locale: "fr-FR", storageState});
    const page = await ctx.newPage();
    const pages = [
        {name: "chat", url, ready: async () => {
            await waitOnline(page);
            await page.waitForSelector("#fb-messages > li.fb-msg--bot", {timeout: WAIT_MS});
        }},
        {name: "données personnelles", url: new URL("/static/donnees-personnelles.html", url).href,
         ready: async () => page.waitForSelector("h1", {timeout: WAIT_MS})},
    ];
    for (const p of pages) {
        for (const width of [1280, 360]) {
            await page.setViewportSize({width, height: width === 360 ? 740 : 900});
            await page.goto(p.url);
            await p.ready();
            await page.addScriptTag({path: AXE});
            const result = await page.evaluate(async () => {
                // eslint-disable-next-line no-undef
                const r = await axe.run(document, {resultTypes: ["violations"]});
                return r.violations.map((v) => ({
                    id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.map((n) => `${n.target.join(" ")}: ${n.failureSummary}`),
                }));
            });
            const bad = result.filter((v) => v.impact === "serious" || v.impact === "critical");
            const all = result.map((v) => `[${v.impact}] ${v.id}: ${v.help}\n    ${v.nodes.join("\n    ")}`).join("\n");
            ok(bad.length === 0, `axe-core: no serious or critical violation on the ${p.name} page at ${width} px`, all);
            if (result.length && bad.length === 0)
                console.log(`# axe-core, minor/moderate on the ${p.name} page at ${width} px:\n# ${all.replace(/\n/g, "\n# ")}`);
        }
    }
    await page.goto(url);
    await waitOnline(page);
    const shot = path.join(out, "webchat-axe-context.png");
    await page.screenshot({path: shot, fullPage: true});
    await ctx.close();
}

async function main() {
    const args = parseArgs(process.argv.slice(2));
    if (!fs.existsSync(CHROMIUM))
        throw new Error(`${CHROMIUM} not found: run deploy/install-deps.sh test (Debian package chromium)`);
    const browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        // As root Chromium needs --no-sandbox. The rest keeps it from calling home on a closed
        // network (each refused connection would be noise, and a slow start).
        args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    let page;
    const problems = [];
    try {
        const ctx = await browser.newContext({locale: "fr-FR", viewport: {width: 1280, height: 900}});
        page = await ctx.newPage();
        page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
        page.on("console", (m) => {
            // Failed websocket connections while the daemon is down are expected; everything
            // else (CSP violations, script errors, missing files) is a fault of the page.
            if (m.type() === "error" && !/WebSocket|ERR_CONNECTION_REFUSED/.test(m.text()))
                problems.push(`console error: ${m.text()}`);
        });
        page.on("response", (r) => {
            if (r.status() >= 400)
                problems.push(`HTTP ${r.status()} for ${r.url()}`);
        });
        const resp = await page.goto(args.url);
        ok(resp && resp.status() === 200, "the page is served", resp && resp.status());
        ok((await page.title()) === "Assistant friches", "the page has its French title");
        ok(await page.evaluate(() => document.documentElement.lang === "fr"), "the page is in French (lang=fr)");
        const dsfr = await page.evaluate(() => getComputedStyle(document.querySelector(".fr-header")).zIndex);
        ok(dsfr !== "auto", "the DSFR stylesheet is applied", `z-index ${dsfr}`);
        const brand = await page.textContent(".fr-header .fr-logo");
        ok(/République\s+Française/.test(brand), "the header shows the République Française bloc-marque", brand);

        let h = await conversation(page);
        h = await reload(page, h);
        if (!args.control)
            throw new Error("--control is needed: the parent restarts the daemon and Redis");
        await connectionLoss(page);
        await redisOutage(page);
        await screenshots(page, args.out);
        const state = await ctx.storageState();
        await accessibility(browser, args.url, state, args.out);
        await forget(page);
        ok(problems.length === 0, "no console error, no page error, no failed request", problems.join("\n"));
    } catch (e) {
        ok(false, "the test ran to its end", e && e.stack ? e.stack : e);
        if (page) {
            try {
                fs.mkdirSync(args.out, {recursive: true});
                const shot = path.join(args.out, "webchat-failure.png");
                await page.screenshot({path: shot, fullPage: true});
                console.log(`# screenshot of the failure: ${shot}`);
                console.log(`# page at failure:\n# ${JSON.stringify(await history(page))}`);
            } catch (e2) {
                console.log(`# no failure screenshot: ${e2.message}`);
            }
        }
        if (problems.length)
            console.log(`# console/page problems so far:\n# ${problems.join("\n# ")}`);
    } finally {
        await browser.close();
    }
    console.log(`webchat: ${passes} passed, ${failures} failed`);
    process.exit(failures === 0 ? 0 : 1);
}

main().catch((e) => {
    console.log(`not ok - ${e && e.stack ? e.stack : e}`);
    process.exit(1);
});
