"""The web console (GET /console on the REST bridge) in a real headless
browser: Debian's chromium driven by chromedriver over WebDriver (W3C, plain
HTTP from urllib), against a real redis-server, tracseq-events and
tracseq-rest-bridge on ephemeral loopback ports.

Checked: the console's routes answer as documented (page, files, 404, 405,
the Content-Security-Policy); in the browser the page loads without a
console error (a CSP violation is one), lists a subscription created over
REST (with its counts, dead-letter target and settings), receives an event
published from its own form in the live tail (the payload, which holds
markup, is shown as text), redrives a dead letter made the production way
(pulled and nacked past max_delivery_attempts), and seeks.

Environment (set by ctest): TSE_SERVICE_BIN, TSE_BRIDGE_BIN, TSE_SOURCE_DIR,
TSE_INTEROP_SCRATCH; TSE_CONSOLE_SCREENSHOT, when set, is where the
screenshot goes besides the scratch folder (docs/console.png:
`scripts/console-screenshot.sh`). Every process started here is stopped on
every way out; chromium runs in chromedriver's own process group, which is
killed as a whole at the end.
"""
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
import interop_support as sup  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 20.0
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # W3C WebDriver's element key
MARKUP = '<img src=x id=injected onerror="document.title=1">'


# ---- HTTP -----------------------------------------------------------------

def http(method, url, body=None, headers=None):
    """(status, headers, body bytes) of one request; never raises on 4xx/5xx."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def rest(base, method, path, body=None):
    status, _, data = http(method, base + path, body)
    sup.check(200 <= status < 300, f"{method} {path}: {status} {data[:300]!r}")
    return json.loads(data) if data else {}


# ---- the bridge ------------------------------------------------------------

def start_bridge(scratch, target):
    def on(port):
        argv = [sup.env_path("TSE_BRIDGE_BIN"), "--host=127.0.0.1", f"--port={port}",
                f"--event-service-addr={target}", "--log-format=text"]
        proc = sup.Process("tracseq-rest-bridge", argv, os.path.join(scratch, "bridge.log"))
        base = f"http://127.0.0.1:{port}"
        try:
            sup.wait_until("the bridge's /health 200",
                           lambda: proc.listens_on(port) and http("GET", base + "/health")[0] == 200,
                           proc)
        except BaseException:
            proc.stop()
            raise
        return proc, base
    return sup.on_free_port(on)


# ---- WebDriver --------------------------------------------------------------

class Browser:
    """A chromedriver process and one headless chromium session."""

    def __init__(self, scratch):
        self.scratch = scratch
        self.port = sup.free_port()
        self.log = open(os.path.join(scratch, "chromedriver.log"), "ab")
        # Its own session: chromium and its helpers join chromedriver's
        # process group, which close() kills as a whole.
        self.proc = subprocess.Popen([CHROMEDRIVER, f"--port={self.port}"],
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self.session = None
        try:
            self.start()
        except BaseException:
            self.close()
            raise

    def start(self):
        deadline = time.monotonic() + sup.START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                # Our chromedriver, not whatever else answers on the port.
                if (sup.listened_by(self.port, self.proc.pid)
                        and self.call("GET", "/status").get("ready")):
                    break
            except OSError:
                pass
            time.sleep(0.1)
        profile = os.path.join(self.scratch, "chromium-profile")
        shutil.rmtree(profile, ignore_errors=True)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                # Root in CI: no sandbox. A profile of our own, nothing shared.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--no-first-run",
                         "--window-size=1400,1400", f"--user-data-dir={profile}"]}}}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def call(self, method, path, body=None):
        status, _, data = http(method, self.url + path, body)
        value = json.loads(data).get("value") if data else None
        if status != 200:
            raise sup.CheckFailed(f"WebDriver {method} {path}: {status} {value}")
        return value

    def s(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def go(self, url):
        self.s("POST", "/url", {"url": url})

    def js(self, script, *args):
        return self.s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css):
        found = self.s("POST", "/element", {"using": "css selector", "value": css})
        if not isinstance(found, dict) or ELEMENT not in found:
            raise sup.CheckFailed(f"no element {css}: {found!r}")
        return found[ELEMENT]

    def click(self, css):
        # The page redraws its tables every few seconds: an element found
        # just before a redraw is stale, so find it again.
        for attempt in range(3):
            try:
                self.s("POST", f"/element/{self.find(css)}/click", {})
                return
            except sup.CheckFailed as e:
                if "stale element" not in str(e) or attempt == 2:
                    raise

    def type(self, css, text):
        e = self.find(css)
        self.s("POST", f"/element/{e}/clear", {})
        self.s("POST", f"/element/{e}/value", {"text": text})

    def wait(self, what, script, *args):
        """Polls script (a JS function body returning a truthy value when
        ready) until it is; returns that value."""
        deadline = time.monotonic() + WAIT_S
        last = None
        while time.monotonic() < deadline:
            last = self.js(script, *args)
            if last:
                return last
            time.sleep(0.1)
        raise sup.CheckFailed(f"{what}: not within {WAIT_S}s (last {last!r})")

    def screenshot(self, path):
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.s("GET", "/screenshot")))

    def console_errors(self):
        entries = self.s("POST", "/se/log", {"type": "browser"}) or []
        return [e["message"] for e in entries if e.get("level") == "SEVERE"]

    def close(self):
        try:
            if self.session is not None:
                self.s("DELETE", "")
        except Exception:
            pass
        self.session = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=sup.STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # chromium leftovers, if any
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait()
        self.log.close()


# ---- the checks -------------------------------------------------------------

def check_routes(base):
    status, headers, body = http("GET", base + "/console")
    sup.check_equal(status, 200, "GET /console")
    sup.check(headers["Content-Type"].startswith("text/html"), headers["Content-Type"])
    csp = headers.get("Content-Security-Policy", "")
    sup.check("script-src 'self'" in csp and "default-src 'none'" in csp, f"CSP {csp!r}")
    sup.check_equal(headers.get("X-Content-Type-Options"), "nosniff", "nosniff")
    sup.check(b"console.js" in body, "the page loads console.js")
    for path, media in (("/console/", "text/html"), ("/console/console.js", "text/javascript"),
                        ("/console/console.css", "text/css")):
        status, headers, _ = http("GET", base + path)
        sup.check_equal(status, 200, f"GET {path}")
        sup.check(headers["Content-Type"].startswith(media), f"{path}: {headers['Content-Type']}")
    status, _, body = http("GET", base + "/console/nothing.js")
    sup.check_equal(status, 404, "GET /console/nothing.js")
    sup.check("error" in json.loads(body), "404 body is a JSON error")
    for method in ("POST", "DELETE", "PUT"):
        status, headers, _ = http(method, base + "/console")
        sup.check_equal(status, 405, f"{method} /console")
        sup.check_equal(headers.get("Allow"), "GET, HEAD", f"{method} /console Allow")
    sup.check_equal(http("HEAD", base + "/console/console.css")[0], 200, "HEAD console.css")
    root = rest(base, "GET", "/")
    sup.check_equal(root["endpoints"].get("console"), "/console", "GET / lists the console")


def make_dead_letter(base, sub, event_type):
    """One event of event_type, pulled and nacked until sub dead-letters it."""
    rest(base, "POST", "/api/v1/events/subscribe",
         {"name": sub, "event_types": [event_type], "auto_ack": False, "read_latest": True,
          "max_delivery_attempts": 1, "ack_deadline_ms": 200})
    rest(base, "POST", "/api/v1/events/publish",
         {"event_type": event_type, "source_service": "console-test",
          "payload": {"note": "dead on arrival"}})
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        dead = rest(base, "GET", f"/api/v1/subscriptions/{sub}/dead-letters")
        if dead.get("dead_letters"):
            return dead["dead_letters"][0]["id"]
        # A waiting pull is a subscriber: its claim scan dead-letters.
        got = rest(base, "GET", f"/api/v1/subscriptions/{sub}/events?max=10&wait_ms=300")
        ids = [e["ack_id"] for e in got.get("events", [])]
        if ids:
            rest(base, "POST", f"/api/v1/subscriptions/{sub}/nack", {"ack_ids": ids, "delay_ms": 0})
    raise sup.CheckFailed(f"no dead letter in {sub} within {WAIT_S}s")


def body(stack, checks):
    scratch = stack.scratch
    bridge, base = start_bridge(scratch, stack.target)
    browser = None
    try:
        checks.run("console routes: page, files, 404, 405, CSP", check_routes, base)
        rest(base, "POST", "/api/v1/events/subscribe",
             {"name": "orders-audit", "event_types": ["sample.*", "*.completed"],
              "dead_letter_type": "deadletter.orders", "min_backoff_ms": 1000})
        dead_id = make_dead_letter(base, "lims-import", "console.import.failed")
        browser = Browser(scratch)
        b = browser

        def page_loads():
            b.go(base + "/console")
            b.wait("the page's title", "return document.title === 'TracSeq Events console'")
            b.wait("the health badge", "return document.getElementById('health')"
                   ".classList.contains('ok')")
        checks.run("the page loads and the bridge is healthy", page_loads)

        def lists_subscription():
            b.wait("orders-audit in the table",
                   "return [...document.querySelectorAll('#subs-table tbody tr')]"
                   ".some(r => r.dataset.name === 'orders-audit' && r.textContent.includes('sample.*'))")
            row = b.js("const r = document.querySelector('#subs-table tr[data-name=\"lims-import\"]');"
                       "return [...r.cells].map(c => c.textContent)")
            sup.check_equal(row[5], "1", "lims-import's dead-letter count")
            audit = b.js("const r = document.querySelector('#subs-table tr[data-name=\"orders-audit\"]');"
                         "return [r.cells[5].textContent, r.title]")
            sup.check_equal(audit[0], "0→ deadletter.orders", "orders-audit's dead-letter target")
            sup.check("backoff 1000-600000 ms" in audit[1], f"orders-audit's settings: {audit[1]!r}")
        checks.run("shows a created subscription with its counts", lists_subscription)

        def other_stats():
            # Figures a newer service adds go to "Other", maps included.
            text = b.js("return otherStats({lag: 1, nacked: 2, oldest_unacked_age_ms: 30,"
                        " dead_lettered_by_reason: {rejected: 1}, consumers: 4, streams: 2})")
            sup.check_equal(text, "nacked: 2, oldest_unacked_age_ms: 30, "
                            "dead_lettered_by_reason: rejected 1", "the Other column")
        checks.run("shows per-subscription figures it has no column for", other_stats)

        def live_tail():
            b.type("#tail-pattern", "console.tail.*")
            b.click("#tail-start")
            b.wait("the tail's stream open",
                   "return document.getElementById('tail-state').dataset.live === '1'")
            b.type("#pub-type", "console.tail.seen")
            b.type("#pub-payload", json.dumps({"note": MARKUP}))
            b.click("#pub-send")
            b.wait("the publish result", "return document.getElementById('pub-result')"
                   ".textContent.includes('event_id')")
            b.wait("the event in the tail",
                   "return document.getElementById('tail-log').textContent"
                   ".includes('console.tail.seen')")
            text = b.js("return document.getElementById('tail-log').textContent")
            sup.check(MARKUP.replace('"', '\\"') in text, f"the payload as text: {text!r}")
            sup.check(b.js("return document.getElementById('injected') === null && "
                           "document.title === 'TracSeq Events console'"),
                      "markup in an event was rendered as HTML")
            # One more, as a lab would send it (and as the screenshot shows).
            b.type("#pub-type", "console.tail.sample_received")
            b.type("#pub-payload", json.dumps({"barcode": "BC-1042", "freezer": "-80C/7",
                                               "received_by": "j.doe"}))
            b.click("#pub-send")
            b.wait("the second event in the tail",
                   "return document.getElementById('tail-log').textContent"
                   ".includes('BC-1042')")
        checks.run("receives a published event in the live tail (escaped)", live_tail)

        def redrive():
            b.click('#subs-table tr[data-name="lims-import"]')
            b.wait("the dead letter listed",
                   "return document.querySelector('#dl-table tr[data-id=\"' + arguments[0] + '\"]')",
                   dead_id)
            b.click(f'#dl-table tr[data-id="{dead_id}"] .dl-pick')
            b.screenshot(os.path.join(scratch, "console.png"))
            shot = os.environ.get("TSE_CONSOLE_SCREENSHOT")
            if shot:
                shutil.copyfile(os.path.join(scratch, "console.png"), shot)
            b.click("#dl-redrive")
            b.wait("the redrive answer", "return document.getElementById('dl-result')"
                   ".textContent.includes('\"redriven\":1')")
            b.wait("the list emptied", "return document.querySelectorAll('#dl-table tbody tr')"
                   ".length === 0")
            left = rest(base, "GET", "/api/v1/subscriptions/lims-import/dead-letters")
            sup.check_equal(left.get("total", 0), 0, "dead letters left over REST")
            got = rest(base, "GET", "/api/v1/subscriptions/lims-import/events?max=10&wait_ms=5000")
            types = [e["event"]["event_type"] for e in got.get("events", [])]
            sup.check_equal(types, ["console.import.failed"], "the redriven event delivered")
        checks.run("redrives a dead letter", redrive)

        def seek():
            b.click('#subs-table tr[data-name="orders-audit"]')
            sup.check_equal(b.js("return document.getElementById('seek-sub').value"),
                            "orders-audit", "the subscription picked for seek")
            b.click("#seek-go")
            b.wait("the seek answer", "return document.getElementById('seek-result')"
                   ".textContent.startsWith('Seek orders-audit')")
        checks.run("seeks a subscription to earliest", seek)

        def tail_stops():
            b.click("#tail-stop")
            b.wait("the tail's subscription deleted",
                   "return ![...document.querySelectorAll('#subs-table tbody tr')]"
                   ".some(r => r.dataset.name.startsWith('console-tail-'))")
            subs = rest(base, "GET", "/api/v1/subscriptions")["subscriptions"]
            sup.check(not any(s["name"].startswith("console-tail-") for s in subs),
                      f"tail subscriptions left: {[s['name'] for s in subs]}")
        checks.run("stopping the tail deletes its subscription", tail_stops)

        def no_errors():
            errors = b.console_errors()
            sup.check(not errors, f"browser console errors: {errors}")
        checks.run("no browser console error (CSP violations included)", no_errors)
    finally:
        if browser is not None:
            browser.close()
        rc = bridge.stop()
        checks.record("the bridge exits 0 on SIGTERM", rc == 0, f"exit status {rc}")


if __name__ == "__main__":
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not os.access(tool, os.X_OK):
            print(f"{tool} is missing: scripts/install-deps.sh test installs it", file=sys.stderr)
            sys.exit(1)
    sys.exit(sup.main("console", "console", body))
