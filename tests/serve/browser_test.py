"""`cairun serve` in headless Chromium, driven over the DevTools protocol on a pipe
(--remote-debugging-pipe: JSON messages ended by NUL on fds 3 and 4; no
WebSocket library needed). Opens a comparison, follows a metric to its samples,
judges ten pairs by keyboard, reloads and sees them kept, checks the win rates
shown against judgments.jsonl, and keeps screenshots in ARTIFACTS.

    python3 tests/serve/browser_test.py build/cairun WORK_DIR ARTIFACTS
Exits 77 (skipped) when Debian's chromium is not installed.
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import Server, make_run  # noqa: E402


class Browser:
    def __init__(self, exe, profile):
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def fds():  # the child's fd 3 reads our commands, fd 4 writes its answers
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        flags = ["--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
                 "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                 "--disable-background-networking", "--user-data-dir=" + profile, "--window-size=1280,1000",
                 "about:blank"]
        self.proc = subprocess.Popen([exe, *flags], preexec_fn=fds, close_fds=False,
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(profile, "chromium.log"), "w"))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buffer = b""
        self.next_id = 0
        self.session = None

    def send(self, method, params=None, session=True):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self.buffer:
                chunk = os.read(self.from_chrome, 1 << 16)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self.buffer += chunk
            raw, self.buffer = self.buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError("%s: %s" % (method, reply["error"]))
                return reply.get("result", {})

    def open(self, url):
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 1000, "deviceScaleFactor": 1,
                                                         "mobile": False})
        self.send("Page.navigate", {"url": url})

    def eval(self, expr):
        r = self.send("Runtime.evaluate", {"expression": expr, "awaitPromise": True, "returnByValue": True})
        if "exceptionDetails" in r:
            raise RuntimeError("page error in %s: %s" % (expr[:80], r["exceptionDetails"]))
        return r["result"].get("value")

    def wait_for(self, condition, what, timeout_ms=20000):
        """Resolves in the page when the JS condition holds (polled by the page itself)."""
        ok = self.eval("""new Promise((resolve) => {
            const t0 = Date.now();
            const tick = () => { let v = false; try { v = (%s); } catch (e) {}
              if (v) resolve(true); else if (Date.now() - t0 > %d) resolve(false); else requestAnimationFrame(tick); };
            tick(); })""" % (condition, timeout_ms))
        if not ok:
            raise RuntimeError("timed out waiting for " + what)

    def key(self, k):
        code = {"a": 65, "b": 66, "t": 84, "x": 88}[k]
        for kind in ("keyDown", "keyUp"):
            params = {"type": kind, "key": k, "code": "Key" + k.upper(), "windowsVirtualKeyCode": code}
            if kind == "keyDown":
                params["text"] = k
            self.send("Input.dispatchKeyEvent", params)

    def screenshot(self, path):
        full = self.eval("Math.ceil(document.documentElement.scrollHeight)") or 1000
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                    "clip": {"x": 0, "y": 0, "width": 1280,
                                                             "height": min(int(full), 6000), "scale": 1}})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return os.path.getsize(path)

    def close(self):
        try:
            self.send("Browser.close", session=False)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main():
    cairun, work, artifacts = sys.argv[1], sys.argv[2], sys.argv[3]
    exe = shutil.which("chromium")
    if not exe:
        print("note: chromium is not installed (setup.sh installs it); skipping the browser test")
        sys.exit(77)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    os.makedirs(artifacts, exist_ok=True)
    run = make_run(os.path.join(work, "quick"))
    other = make_run(os.path.join(work, "quick-lr2"), seed=2, lr=0.002)
    server = Server(cairun, [run, other])
    profile = tempfile.mkdtemp(prefix="cai-chromium-")
    browser = Browser(exe, profile)
    failures = []

    def check(cond, what):
        if not cond:
            failures.append(what)
            print("FAIL:", what, flush=True)

    try:
        run_checks(browser, server, run, artifacts, check)
    except Exception:
        try:
            print("page text at the failure:", browser.eval("document.body.innerText")[:2000])
            browser.screenshot(os.path.join(artifacts, "failure.png"))
        except Exception as e:
            print("no screenshot of the failure:", e)
        raise
    finally:
        browser.close()
        server.stop()
        shutil.rmtree(profile, ignore_errors=True)
    if failures:
        print("%d checks failed" % len(failures))
        sys.exit(1)
    print("serve browser: ok; screenshots in", artifacts)


def run_checks(browser, server, run, artifacts, check):
    if True:
        # Compare: every model side by side, a metric links to its samples
        browser.open(server.url + "#/compare")
        browser.wait_for("document.body.dataset.ready === 'compare'", "the compare view")
        n_cards = browser.eval("document.querySelectorAll('.card').length")
        n_cols = browser.eval("document.querySelector('.card').querySelectorAll('.answer').length")
        check(n_cards == 8, "8 prompts shown, got %s" % n_cards)
        check(n_cols == 6, "6 models side by side (2 runs x 3), got %s" % n_cols)
        print("screenshot compare.png:", browser.screenshot(os.path.join(artifacts, "compare.png")), "bytes")
        link = browser.eval("""(() => { const a = [...document.querySelectorAll('[data-metric]')]
            .find((x) => x.dataset.metric.startsWith('factually_correct|quick/base')); a.click(); return a.dataset.metric; })()""")
        browser.wait_for("document.body.dataset.ready === 'compare' && location.hash.includes('result=fail')",
                         "the samples behind " + str(link))
        shown = browser.eval("document.querySelectorAll('.card').length")
        failing = browser.eval("""[...document.querySelectorAll('.card')].every((c) =>
            c.querySelector('[data-model=\"quick/base\"] .chip.fail.focus') !== null)""")
        check(shown == 7 and failing, "the metric link shows the 7 prompts where quick/base fails, got %s" % shown)

        # Judge ten pairs by keyboard
        browser.eval("location.hash = '#/judge?annotator=tester'")
        browser.wait_for("document.body.dataset.ready === 'judge' && document.getElementById('pair')", "the judge view")
        hidden = browser.eval("document.getElementById('pair').innerText")
        check(not any(("quick/" + m) in hidden for m in ("base", "sft", "dpo")), "model names are hidden")
        keys = ["a", "b", "t", "x", "a", "a", "b", "a", "t", "b"]
        for i, k in enumerate(keys):
            browser.wait_for("document.getElementById('judge-progress').dataset.judged === '%d'" % i, "pair %d" % (i + 1))
            browser.key(k)
            if i == 4:
                print("screenshot judge.png:", browser.screenshot(os.path.join(artifacts, "judge.png")), "bytes")
        browser.wait_for("document.getElementById('judge-progress').dataset.judged === '10'", "ten judgments")

        closed = browser.eval("document.getElementById('results-box').open")
        check(closed is False, "the standings stay closed while judging")
        # Reload: the ten are kept and the next pair is the eleventh
        browser.send("Page.reload")
        browser.wait_for("document.body.dataset.ready === 'judge' && document.getElementById('judge-progress')",
                         "the judge view after reload")
        kept = browser.eval("document.getElementById('judge-progress').dataset.judged")
        check(kept == "10", "after a reload 10 judgments are kept, got %s" % kept)

        # The win rates shown against judgments.jsonl
        browser.wait_for("document.querySelectorAll('#winrates tr[data-a]').length > 0", "the results table")
        with open(os.path.join(run, "judgments.jsonl")) as f:
            lines = [json.loads(line) for line in f]
        check(len(lines) == 10, "judgments.jsonl has 10 lines, got %d" % len(lines))
        check(all(j["annotator"] == "tester" for j in lines), "annotator id recorded")
        check([j["choice"] for j in lines] == [{"a": "A", "b": "B", "t": "tie", "x": "both_bad"}[k] for k in keys],
              "the keys pressed are the choices logged")
        expected = {}
        for j in lines:
            a, b = j["models"]
            e = expected.setdefault((a, b), [0, 0])
            if j["winner"] == a:
                e[0] += 1
            elif j["winner"] == b:
                e[1] += 1
        rows = browser.eval("""[...document.querySelectorAll('#winrates tr[data-a]')].map((tr) =>
            [tr.dataset.a, tr.dataset.b, tr.querySelector('.win-rate').dataset.value, tr.querySelector('.win-rate').textContent])""")
        check(len(rows) == len(expected), "one results row per judged model pair: %s vs %s" % (rows, expected))
        for a, b, value, text in rows:
            wa, wb = expected.get((a, b), (0, 0))
            if wa + wb == 0:
                check(value == "" and text == "–", "no decisive judgment for %s vs %s" % (a, b))
                continue
            rate = wa / (wa + wb)
            check(abs(float(value) - rate) < 1e-9, "win rate %s vs %s: shown %s, from the JSONL %s" % (a, b, value, rate))
            check(text == "%.1f%%" % (100 * rate), "win rate text %s vs %s: %s" % (a, b, text))
        browser.eval("document.getElementById('results-box').open = true")
        print("screenshot results.png:", browser.screenshot(os.path.join(artifacts, "results.png")), "bytes")

        # Runs: overlaid curves and the settings diff
        browser.eval("location.hash = '#/runs?smoothing=0.6'")
        browser.wait_for("document.body.dataset.ready === 'runs'", "the runs view")
        charts = browser.eval("[...document.querySelectorAll('svg[data-key]')].map((s) => s.dataset.key)")
        for key in ("loss", "eval_loss", "nll_loss", "rewards/margins", "learning_rate"):
            check(key in charts, "a chart of %s (charts: %s)" % (key, charts))
        lines_in_loss = browser.eval("document.querySelector('svg[data-key=\"loss\"]').querySelectorAll('path.line').length")
        check(lines_in_loss == 4, "loss overlays 2 runs x 2 stages, got %s" % lines_in_loss)
        differs = browser.eval("[...document.querySelectorAll('#settings tr.differs th')].map((t) => t.textContent)")
        check(sorted(differs) == ["out", "seed", "sft_lr"], "settings that differ: %s" % differs)
        print("screenshot runs.png:", browser.screenshot(os.path.join(artifacts, "runs.png")), "bytes")


if __name__ == "__main__":
    main()
