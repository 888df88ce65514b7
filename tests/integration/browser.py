# SPDX-License-Identifier: MIT
"""What the browser tests (test_browser.py, test_stats.py) share: Debian's Chromium launched
headless by Playwright for Python (its own driver: no Node.js of the machine's is involved), the
directory of their screenshots, the axe-core check, and a list of checks that runs to the end.

A browser test makes many checks on one page that took a whole conversation to reach; a plain
assert would hide every check after the first failed one. Checks.ok() records and prints each
check as "ok - ..." or "not ok - ...", and the test ends with Checks.assert_all(), which fails
with the list of the failed ones."""
import contextlib
import os

from playwright.sync_api import sync_playwright

from conftest import BINARY

SOURCE = os.environ.get("FB_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHROMIUM = os.environ.get("FB_CHROMIUM") or "/usr/bin/chromium"
# axe-core stays an npm package (package.json devDependencies), injected into the page.
AXE = os.path.join(SOURCE, "node_modules", "axe-core", "axe.min.js")
# As root Chromium needs --no-sandbox. The rest keeps it from calling home on a closed network
# (each refused connection would be noise, and a slow start). Playwright gives it a fresh
# profile in a temporary directory.
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Generous waits: a sanitizer build of the daemon on a loaded 2-core machine is slow. They bound
# how long a broken page can hang the test (every Playwright call of a context made by
# new_context() waits at most this long, axe.run too); no check depends on how fast anything is.
WAIT_MS = 30000


def artifacts_dir():
    """The directory of the browser tests' screenshots: $FB_ARTIFACTS_DIR, or test-artifacts/browser/
    next to the daemon binary (the build directory); made if missing."""
    d = os.environ.get("FB_ARTIFACTS_DIR")
    if not d:
        d = os.path.join(os.path.dirname(os.path.abspath(BINARY)), "test-artifacts", "browser")
    os.makedirs(d, exist_ok=True)
    return d


@contextlib.contextmanager
def chromium():
    """Yields a headless Chromium (CHROMIUM, with LAUNCH_ARGS), closed on the way out."""
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} not found: run deploy/install-deps.sh test (Debian package chromium)"
    assert os.path.exists(AXE), f"{AXE} is missing: run deploy/install-deps.sh test (npm package axe-core)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_context(browser, **options):
    """browser.new_context(locale="fr-FR", **options), every call of which waits at most WAIT_MS."""
    ctx = browser.new_context(locale="fr-FR", **options)
    ctx.set_default_timeout(WAIT_MS)
    return ctx


class Checks:
    """The checks of one browser test, printed as they are made (pytest shows them on failure,
    or always with -s)."""

    def __init__(self, name):
        self.name = name
        self.passed = []
        self.failed = []

    def ok(self, cond, what, detail=None):
        """Records the check `what`, passed if cond is true; `detail` is shown when it failed.
        Returns cond."""
        if cond:
            self.passed.append(what)
            print(f"ok - {what}")
        else:
            text = f"not ok - {what}"
            if detail is not None:
                text += "\n  " + str(detail).replace("\n", "\n  ")
            self.failed.append(text)
            print(text)
        return cond

    def summary(self):
        return f"{self.name}: {len(self.passed)} passed, {len(self.failed)} failed"

    def assert_all(self, more=""):
        """Fails the test if any check failed, listing them (then `more`)."""
        print(self.summary())
        assert not self.failed, "\n".join([self.summary()] + self.failed) + more


# Runs axe-core on the document; the violations, each {id, impact, help, nodes: ["target: why"]}.
# Bounded like every other wait: a hung axe.run fails instead of hanging the test.
AXE_RUN = """async (waitMs) => {
    const timeout = new Promise((_, reject) =>
        setTimeout(() => reject(new Error(`axe.run took more than ${waitMs} ms`)), waitMs));
    const r = await Promise.race([axe.run(document, {resultTypes: ["violations"]}), timeout]);
    return r.violations.map((v) => ({
        id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.map((n) => `${n.target.join(" ")}: ${n.failureSummary}`),
    }));
}"""


def check_axe(checks, page, where):
    """Injects axe-core into page (its context must bypass the page's Content-Security-Policy,
    which rightly refuses injected scripts) and checks that it finds no serious or critical
    violation; the minor and moderate ones are printed. `where` ends the check's name ("at
    360 px")."""
    page.add_script_tag(path=AXE)
    result = page.evaluate(AXE_RUN, WAIT_MS)
    bad = [v for v in result if v["impact"] in ("serious", "critical")]
    listing = "\n".join(f"[{v['impact']}] {v['id']}: {v['help']}\n    " + "\n    ".join(v["nodes"])
                        for v in result)
    checks.ok(not bad, f"axe-core: no serious or critical violation {where}", listing)
    if result and not bad:
        print(f"# axe-core, minor/moderate {where}:\n# " + listing.replace("\n", "\n# "))
