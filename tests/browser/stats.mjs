// SPDX-License-Identifier: MIT
//
// Browser test of the public /stats page, in a real headless Chromium (Debian's /usr/bin/chromium)
// driven by playwright-core, against a real daemon whose Redis holds the figures of scripted
// conversations. Run by tests/integration/test_stats.py.
//
//   node tests/browser/stats.mjs --url http://127.0.0.1:PORT/ --out DIR
//
// Checks: /stats loads with no console error (its Content-Security-Policy forbids inline script
// and style: none is used); every element carrying data-figure="PATH" shows the value at PATH in
// /stats.json ("< N" for a suppressed null, the median as text); every figure of /stats.json is on
// the page; the charts are SVG images with a title and a text alternative, each followed by its
// table; axe-core finds no serious or critical violation; a full-page screenshot in DIR.
// Every check prints "ok - ..." or "not ok - ..."; the exit status is 0 only if all passed.

import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {chromium} from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const AXE = path.join(ROOT, "node_modules/axe-core/axe.min.js");
const CHROMIUM = process.env.FB_CHROMIUM || "/usr/bin/chromium";
const WAIT_MS = 30000;

let failures = 0;
function ok(cond, what, detail) {
    console.log(`${cond ? "ok" : "not ok"} - ${what}`);
    if (!cond) {
        failures++;
        if (detail)
            console.log(`# ${String(detail).replace(/\n/g, "\n# ")}`);
    }
}

function parseArgs(argv) {
    const args = {url: null, out: null};
    for (let i = 0; i < argv.length; i++) {
        if (argv[i] === "--url")
            args.url = argv[++i];
        else if (argv[i] === "--out")
            args.out = argv[++i];
    }
    if (!args.url || !args.out)
        throw new Error("usage: stats.mjs --url URL --out DIR");
    return args;
}

// The value at "a.b[3].c" in doc (undefined when absent).
function at(doc, p) {
    let v = doc;
    for (const part of p.split(".")) {
        const m = /^([^[]+)(?:\[(\d+)\])?$/.exec(part);
        if (!m || v === undefined || v === null)
            return undefined;
        v = v[m[1]];
        if (m[2] !== undefined)
            v = v === undefined ? undefined : v[Number(m[2])];
    }
    return v;
}

// Every path of a count in doc (numbers and nulls), as the page names them.
function countPaths(doc) {
    const out = [];
    const walk = (v, p) => {
        if (Array.isArray(v))
            v.forEach((x, i) => walk(x, `${p}[${i}]`));
        else if (v !== null && typeof v === "object")
            for (const [k, x] of Object.entries(v))
                walk(x, p ? `${p}.${k}` : k);
        else if (typeof v === "number" || v === null)
            out.push(p);
    };
    for (const k of ["territories", "conversations", "sites_studied", "projects_recurrent",
        "steps_done", "escalations", "reminders", "avis", "monthly"])
        walk(doc[k], k);
    return out;
}

// The text the page must show for the value at p.
function expected(doc, p) {
    const v = at(doc, p);
    if (p === "generated_at")
        return v.slice(0, 10);
    if (p === "advisor_response.median_seconds") {
        if (v === null)
            return doc.advisor_response.samples === 0 ? "pas encore de données" : "trop peu de données";
        return v >= 3600 ? `${Math.floor(v / 3600)} h ${String(Math.floor((v % 3600) / 60)).padStart(2, "0")} min`
            : `${Math.ceil(v / 60)} min`;
    }
    return v === null ? `< ${doc.threshold}` : String(v);
}

async function main() {
    const args = parseArgs(process.argv.slice(2));
    fs.mkdirSync(args.out, {recursive: true});
    if (!fs.existsSync(CHROMIUM))
        throw new Error(`${CHROMIUM} not found: run deploy/install-deps.sh test (Debian package chromium)`);
    const browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    const problems = [];
    try {
        const ctx = await browser.newContext({locale: "fr-FR", viewport: {width: 1280, height: 900}});
        const page = await ctx.newPage();
        page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
        page.on("console", (m) => {
            if (m.type() === "error")
                problems.push(`console error: ${m.text()}`);
        });
        page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()}`));
        const statsUrl = new URL("/stats", args.url).href;
        const resp = await page.goto(statsUrl, {timeout: WAIT_MS});
        ok(resp && resp.status() === 200, "GET /stats answers 200", resp && resp.status());
        ok((await page.getAttribute("html", "lang")) === "fr", "the page is in French");
        ok(/Statistiques d'impact/.test(await page.textContent("h1")), "the title says Statistiques d'impact");
        // The JSON, fetched after the page: both come from the same cached read.
        const doc = await (await page.request.get(new URL("/stats.json", args.url).href)).json();
        ok(typeof doc.threshold === "number" && Array.isArray(doc.suppressed), "/stats.json has the threshold and the suppressed list");

        const shown = await page.$$eval("[data-figure]", (l) => l.map((e) => [e.dataset.figure, e.textContent.trim()]));
        ok(shown.length > 40, `the page carries its figures (${shown.length})`);
        const wrong = shown.filter(([p, text]) => at(doc, p) === undefined || expected(doc, p) !== text)
            .map(([p, text]) => `${p}: page ${JSON.stringify(text)}, json ${JSON.stringify(at(doc, p))}`);
        ok(wrong.length === 0, "every figure on the page matches /stats.json", wrong.join("\n"));
        const onPage = new Set(shown.map(([p]) => p));
        const missing = countPaths(doc).filter((p) => !onPage.has(p));
        ok(missing.length === 0, "every count of /stats.json is on the page", missing.join("\n"));
        ok(onPage.has("advisor_response.median_seconds"), "the median advisor response time is on the page");
        // each step done is named on the page by its title (checked against /stats.json above)
        const steps = doc.steps_done.by_step;
        const untitled = steps.map((s, i) => `steps_done.by_step[${i}].title`).filter((p) => !onPage.has(p));
        ok(untitled.length === 0, `every step done is shown by its title (${steps.length})`, untitled.join("\n"));
        ok(steps.every((s) => typeof s.title === "string" && s.title.length > 0), "every step of /stats.json has a title");

        const charts = await page.$$eval("figure.fb-chart", (l) => l.map((f) => {
            const svg = f.querySelector("svg[role=img]");
            const ids = svg ? (svg.getAttribute("aria-labelledby") || "").split(" ") : [];
            const texts = ids.map((id) => (document.getElementById(id) || {}).textContent || "");
            return {svg: !!svg, bars: svg ? svg.querySelectorAll("rect").length : 0, texts,
                table: !!f.querySelector("table caption"), width: svg ? svg.getBoundingClientRect().width : 0};
        }));
        ok(charts.length === 7, `seven charts (six monthly series, the ratings): ${charts.length}`);
        ok(charts.every((c) => c.svg && c.width > 100), "every chart is a rendered SVG image");
        ok(charts.every((c) => c.texts.length === 2 && c.texts.every((t) => t.length > 0)), "every chart has a title and a text alternative");
        ok(charts.every((c) => c.table), "every chart is followed by its data table");
        // one bar per positive count of the seven charts (a suppressed or zero count has none)
        const positive = [...Object.entries(doc.monthly).filter(([k]) => k !== "months").flatMap(([, a]) => a),
            ...Object.values(doc.avis.distribution)].filter((v) => typeof v === "number" && v > 0).length;
        const bars = charts.reduce((n, c) => n + c.bars, 0);
        ok(bars === positive, `one bar per positive count (${bars} bars, ${positive} counts)`);
        const inline = await page.$$eval("[style], script, style", (l) => l.length);
        ok(inline === 0, "no inline style or script", inline);

        const shot = path.join(args.out, "stats-1280.png");
        await page.screenshot({path: shot, fullPage: true});
        console.log(`# screenshot: ${shot}`);
        await page.setViewportSize({width: 360, height: 740});
        const phone = path.join(args.out, "stats-360.png");
        await page.screenshot({path: phone, fullPage: true});
        console.log(`# screenshot: ${phone}`);
        ok(problems.length === 0, "no console error, page error or failed request", problems.join("\n"));

        // axe-core in a context that lets its script in (the page's CSP rightly refuses it).
        const actx = await browser.newContext({bypassCSP: true, locale: "fr-FR"});
        const apage = await actx.newPage();
        for (const width of [1280, 360]) {
            await apage.setViewportSize({width, height: width === 360 ? 740 : 900});
            await apage.goto(statsUrl);
            await apage.addScriptTag({path: AXE});
            const result = await apage.evaluate(async () => {
                // eslint-disable-next-line no-undef
                const r = await axe.run(document, {resultTypes: ["violations"]});
                return r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.map((n) => `${n.target.join(" ")}: ${n.failureSummary}`)}));
            });
            const bad = result.filter((v) => v.impact === "serious" || v.impact === "critical");
            const all = result.map((v) => `[${v.impact}] ${v.id}: ${v.help}\n    ${v.nodes.join("\n    ")}`).join("\n");
            ok(bad.length === 0, `axe-core: no serious or critical violation at ${width} px`, all);
            if (result.length && bad.length === 0)
                console.log(`# axe-core, minor/moderate at ${width} px:\n# ${all.replace(/\n/g, "\n# ")}`);
        }
        await actx.close();
    } finally {
        await browser.close();
    }
    process.exit(failures ? 1 : 0);
}

main().catch((e) => {
    console.log(`not ok - the script failed: ${e.stack || e}`);
    process.exit(2);
});
