"""The web console against a service that checks tokens (AUTH_TOKENS_FILE):
without a token the page says the bridge refused it (401) and lists
nothing; once a token is typed in its Token field it lists that identity's
subscription and its live tail receives events, so the token goes as
`Authorization: Bearer` on the API calls and on the event stream alike.

Same machinery and environment as test_console.py (headless chromium driven
by chromedriver; real redis-server, tracseq-events, tracseq-rest-bridge).
"""
import hashlib
import os
import secrets
import sys

import test_console as tc
from test_console import sup

TOKEN = "tse_" + secrets.token_urlsafe(32)
BEARER = {"Authorization": "Bearer " + TOKEN}


def tokens_file():
    """One identity, "console-ops" (admin), by the hash of TOKEN."""
    folder = sup.scratch_dir("console_auth_tokens")
    path = os.path.join(folder, "tokens")
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    with open(path, "w") as f:
        f.write(f"console-ops sha256={digest} admin publish=* subscribe=*\n")
    return path


def rest(base, method, path, body=None):
    status, _, data = tc.http(method, base + path, body, BEARER)
    sup.check(200 <= status < 300, f"{method} {path}: {status} {data[:300]!r}")
    return data


def body(stack, checks):
    bridge, base = tc.start_bridge(stack.scratch, stack.target)
    browser = None
    try:
        rest(base, "POST", "/api/v1/events/subscribe",
             {"name": "ops-owned", "event_types": ["lab.*"]})
        browser = tc.Browser(stack.scratch)
        b = browser

        def refused_without_token():
            b.go(base + "/console")
            b.wait("the refusal shown", "const n = document.getElementById('notice');"
                   "return !n.hidden && n.textContent.includes('401')")
            sup.check_equal(b.js("return document.querySelectorAll('#subs-table tbody tr')"
                                 ".length"), 0, "rows listed without a token")
        checks.run("without a token the page shows the 401", refused_without_token)

        def token_lists():
            b.type("#token", TOKEN)
            b.click("h1")  # leaving the field commits it (its change event)
            b.wait("ops-owned listed", "return document.querySelector("
                   "'#subs-table tr[data-name=\"ops-owned\"]') !== null")
            sup.check(b.js("return document.getElementById('notice').hidden"),
                      "the refusal notice stays after the token")
        checks.run("with the token the page lists the identity's subscription", token_lists)

        def tail_with_token():
            b.type("#tail-pattern", "lab.*")
            b.click("#tail-start")
            b.wait("the tail's stream open",
                   "return document.getElementById('tail-state').dataset.live === '1'")
            rest(base, "POST", "/api/v1/events/publish",
                 {"event_type": "lab.run_started", "source_service": "console-ops",
                  "payload": {"run": "R-7"}})
            b.wait("the event in the tail",
                   "return document.getElementById('tail-log').textContent.includes('R-7')")
            b.click("#tail-stop")
            b.wait("the tail stopped",
                   "return document.getElementById('tail-state').textContent === 'stopped'")
        checks.run("the live tail streams with the token", tail_with_token)
    finally:
        if browser is not None:
            browser.close()
        rc = bridge.stop()
        checks.record("the bridge exits 0 on SIGTERM", rc == 0, f"exit status {rc}")


if __name__ == "__main__":
    sys.exit(sup.main("console_auth", "console_auth", body,
                      service_args=("--auth-tokens-file=" + tokens_file(),)))
