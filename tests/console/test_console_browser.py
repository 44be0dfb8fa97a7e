"""The console in a real browser (Debian's chromium driven by playwright) against a daemon on
RabbitMQ: log in, watch a destination's rate move while messages flow, open a dead letter and
replay it until it is delivered, diff/deploy/test/roll back route sets, look up a trace; a
wrong token, an expired session and actions without the CSRF token are refused; text that
would run as script anywhere the console shows it stays text.

One browser and one daemon for the whole module; the tests run in order and share them.
Screenshots go to the folder printed at the end of the run (see conftest.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from esbtest.broker import RabbitScope, broker_problem, bus_url
from esbtest.daemon import DaemonProcess
from esbtest.sink import Received, Sink
from esbtest.waiting import wait_until
from playwright import sync_api as playwright_api
from playwright.sync_api import expect

from esb.bus.console.session import COOKIE, Sessions

CHROMIUM = "/usr/bin/chromium"
SCHEMA = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
#: What the console shows for "no value yet".
NO_VALUE = "\u2013"
XSS_PAYLOAD = "<img src=x onerror=window.__xss=1>"
XSS_HEADER = "<script>window.__xss=2</script>"
XSS_ERROR = "<img src=y onerror=window.__xss=3>"
XSS_NOTE = "<svg onload=window.__xss=4>"

ROUTES_V1 = {
    "routes": [
        {"name": "orders", "from": ["shop"], "match": {"type": ["order.created"]},
         "transform": [{"json-schema": {"schema": SCHEMA}}], "to": ["good"]},
        {"name": "refunds", "from": ["shop"], "match": {"type": ["refund.created"]},
         "to": ["flaky"]},
    ],
    "tests": [{"name": "an order goes to good", "message": {"n": 1}, "type": "order.created",
               "source": "shop", "expect": {"destinations": ["good"]}}],
}


class Flaky:
    """The sink's answers: /flaky refuses (422, permanent: dead-lettered) until fixed."""

    def __init__(self) -> None:
        self.failing = True

    def __call__(self, rec: Received) -> tuple[int, dict[str, str]]:
        if rec.path.startswith("/flaky") and self.failing:
            return 422, {}
        return 200, {}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    url = bus_url()
    if (problem := broker_problem(url)) is not None:
        pytest.fail(problem, pytrace=False)
    scope = RabbitScope(url)
    flaky = Flaky()
    sink = Sink(status_for=flaky)
    config = {"bus": scope.bus("good", "flaky"),
              "sources": {"shop": {"adapter": "rest", "path": "/in/shop",
                                   "keep_headers": ["x-note"]}},
              "destinations": {
                  "good": {"adapter": "rest", "url": f"{sink.url}/good"},
                  "flaky": {"adapter": "rest", "url": f"{sink.url}/flaky",
                            "delivery": {"max_attempts": 1, "breaker": False}}}}
    daemon = DaemonProcess(tmp_path_factory.mktemp("console"), config,
                           {"main.yaml": ROUTES_V1})
    daemon.start(timeout=60)
    try:
        yield {"daemon": daemon, "sink": sink, "flaky": flaky,
               "tmp": tmp_path_factory.mktemp("files")}
    finally:
        daemon.stop()
        sink.close()
        scope.cleanup()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser: Any, env: dict[str, Any]) -> Iterator[Any]:
    """A logged-in page; dialogs (confirmations) are accepted, and any script run by
    injected text would set window.__xss."""
    context = browser.new_context(base_url=env["daemon"].url)
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    pg.on("dialog", lambda dialog: dialog.accept())
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    login(pg, env["daemon"].token)
    yield pg
    context.close()
    assert not errors, f"the console's scripts failed: {errors}"


def login(pg: Any, token: str) -> None:
    pg.goto("/console/login")
    pg.fill("#token", token)
    pg.click("#login")


def send(d: DaemonProcess, etype: str, body: Any, **headers: str) -> str:
    r = httpx.post(f"{d.url}/in/shop/{etype}", json=body, headers=headers, timeout=10)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def find_until_delivered(pg: Any, what: str) -> None:
    """Search the trace page again until its timeline shows a ``delivered`` step (another
    instance's trace events arrive within moments)."""
    def found() -> bool:
        pg.click("#find")
        try:
            pg.locator("#timeline li[data-step=delivered]").wait_for(timeout=2000)
        except playwright_api.TimeoutError:
            return False
        return True

    wait_until(found, what, timeout=30, interval=0.5)


def no_script_ran(pg: Any) -> None:
    assert pg.evaluate("window.__xss === undefined"), "injected text ran as script"


def test_a_wrong_token_is_refused(browser: Any, env: dict[str, Any], screenshots: Path) -> None:
    context = browser.new_context(base_url=env["daemon"].url)
    pg = context.new_page()
    login(pg, "not-the-admin-token")
    error = pg.locator("#login-error")
    assert error.is_visible()
    assert "Wrong admin token" in error.inner_text()
    assert not [c for c in context.cookies() if c["name"] == COOKIE]
    pg.screenshot(path=str(screenshots / "01-wrong-token.png"), full_page=True)
    context.close()


def test_an_expired_session_is_refused(browser: Any, env: dict[str, Any],
                                       screenshots: Path) -> None:
    d = env["daemon"]
    # A session the daemon itself signed, whose time is up.
    cookie, _ = Sessions(d.token, ttl=60).issue(now=time.time() - 3600)
    context = browser.new_context(base_url=d.url)
    context.add_cookies([{"name": COOKIE, "value": cookie, "url": d.url}])
    pg = context.new_page()
    pg.goto("/console/overview")
    assert "/console/login?expired=1" in pg.url
    assert "expired" in pg.locator("#login-notice").inner_text()
    status = pg.evaluate("fetch('/admin/status').then(r => r.status)")
    assert status == 401
    pg.screenshot(path=str(screenshots / "02-expired-session.png"), full_page=True)
    context.close()


def test_a_destinations_rate_moves_while_messages_flow(page: Any, env: dict[str, Any],
                                                       screenshots: Path) -> None:
    d = env["daemon"]
    page.goto("/console/overview")
    page.wait_for_selector("#destinations tr[data-dest=good]")
    assert "this one" in page.locator("#instances tbody").inner_text()
    cell = page.locator("#destinations tr[data-dest=good] td.delivered")
    stop = threading.Event()

    def flow() -> None:
        # A few messages a second make a rate and a latency: the rate shows once two
        # heartbeats (5 s apart) saw them, however many there are, so more only cost CPU.
        n = 0
        while not stop.wait(0.25):
            n += 1
            send(d, "order.created", {"n": n})

    sender = threading.Thread(target=flow, daemon=True)
    sender.start()
    try:
        p99 = page.locator("#destinations tr[data-dest=good] td.p99")

        def moving() -> bool:
            text = cell.inner_text().strip()
            return (text not in ("", NO_VALUE) and float(text) > 0
                    and p99.inner_text().strip() not in ("", NO_VALUE))

        wait_until(moving, "the overview to show good's delivery rate above 0 and its p99",
                   timeout=45, interval=0.5, daemon=d)
        page.screenshot(path=str(screenshots / "03-overview-rates.png"), full_page=True)
        # the charts have a line for it once two samples exist
        wait_until(lambda: page.locator("#chart-rates path[data-series=good]").count() > 0,
                   "a rate line in the chart", timeout=30, interval=0.5)
    finally:
        stop.set()
        sender.join(10)
    page.screenshot(path=str(screenshots / "03b-overview-charts.png"), full_page=True)


def test_open_a_dead_letter_replay_it_and_see_it_delivered(page: Any, env: dict[str, Any],
                                                           screenshots: Path) -> None:
    d, sink, flaky = env["daemon"], env["sink"], env["flaky"]
    eid = send(d, "refund.created", {"refund": 7, "note": "pretty"},
               **{"Idempotency-Key": "refund-7"})
    wait_until(lambda: any(i["id"] == eid for i in d.admin("GET", "/admin/dlq").json()["items"]),
               "the refund in the dead-letter queue", timeout=30, daemon=d)
    page.goto("/console/deadletters")
    row = page.locator(f"#letters tr[data-id='{eid}']")
    row.wait_for()
    assert "flaky" in row.inner_text()
    row.locator("a.show").click()
    page.wait_for_selector("#detail:not([hidden])")
    payload = page.locator("#detail-payload").inner_text()
    assert '"refund": 7' in payload and "\n" in payload  # pretty-printed JSON
    assert "permanent" in page.locator("#attempts").inner_text()
    assert "422" in page.locator("#attempts").inner_text()
    page.screenshot(path=str(screenshots / "04-dead-letter.png"), full_page=True)
    flaky.failing = False
    page.click("#replay-one")
    done = page.locator("#replay-done")
    done.wait_for()
    assert "Replayed 1" in done.inner_text()
    wait_until(lambda: "refund-7" in {r.key for r in sink.received if r.path == "/flaky"},
               "the replayed refund delivered to flaky", timeout=30, daemon=d)
    page.screenshot(path=str(screenshots / "05-replayed.png"), full_page=True)
    # the trace shows it delivered after the replay
    page.goto(f"/console/trace?id={eid}")
    find_until_delivered(page, "the delivered step in the trace")
    assert page.locator("#timeline li[data-step=replayed]").count() == 1


def test_text_that_would_run_as_script_stays_text(page: Any, env: dict[str, Any],
                                                  screenshots: Path) -> None:
    d, flaky = env["daemon"], env["flaky"]
    flaky.failing = True
    payload_id = send(d, "refund.created", {"note": XSS_PAYLOAD}, **{"x-note": XSS_HEADER})
    error_id = send(d, "order.created", {"n": XSS_ERROR})  # fails the schema: error quotes it

    def both_dead() -> bool:
        ids = {i["id"] for i in d.admin("GET", "/admin/dlq").json()["items"]}
        return {payload_id, error_id} <= ids

    wait_until(both_dead, "both envelopes dead-lettered", timeout=30, daemon=d)
    page.goto("/console/deadletters")
    page.locator(f"#letters tr[data-id='{error_id}']").wait_for()
    assert XSS_ERROR in page.locator(f"#letters tr[data-id='{error_id}'] .error-text").inner_text()
    page.locator(f"#letters tr[data-id='{payload_id}'] a.show").click()
    page.wait_for_selector("#detail:not([hidden])")
    assert XSS_PAYLOAD in page.locator("#detail-payload").inner_text()
    assert XSS_HEADER in page.locator("#detail-headers").inner_text()
    page.locator(f"#letters tr[data-id='{error_id}'] a.show").click()
    expect(page.locator("#detail-id")).to_have_text(error_id)
    assert XSS_ERROR in page.locator("#detail-error").inner_text()
    assert page.locator("main img, main script, main svg:not(#chart-rates):not(#chart-latency)"
                        ).count() == 0
    no_script_ran(page)
    page.screenshot(path=str(screenshots / "06-xss-inert-dead-letters.png"), full_page=True)
    # the same error text in the trace timeline
    page.goto(f"/console/trace?id={error_id}")
    page.locator("#timeline li[data-step=transform-failed]").wait_for()
    assert XSS_ERROR in page.locator("#timeline").inner_text()
    assert page.locator("#timeline img").count() == 0
    no_script_ran(page)


def test_route_diff_deploy_tests_and_rollback(page: Any, env: dict[str, Any],
                                              screenshots: Path) -> None:
    tmp: Path = env["tmp"]
    page.goto("/console/routes")
    page.wait_for_selector("#history tbody tr[data-version]")
    # a route set with a problem is refused whole, every problem shown
    bad = tmp / "bad.yaml"
    bad.write_text("routes:\n  - name: lost\n    to: [nowhere]\n")
    page.set_input_files("#deploy-files", str(bad))
    page.click("#deploy")
    error = page.locator("#deploy-result .error")
    error.wait_for()
    assert "422" in error.inner_text() and "bad.yaml" in error.inner_text()
    assert "nowhere" in error.inner_text()
    # a good one, with a note that would run as script if it were markup
    v2 = {**ROUTES_V1, "routes": [*ROUTES_V1["routes"], {
        "name": "audit-copy", "match": {"type": ["order.audited"]}, "to": ["good"]}]}
    good = tmp / "main.yaml"
    good.write_text("# <script>window.__xss=5</script>\n" + yaml.safe_dump(v2, sort_keys=False))
    page.set_input_files("#deploy-files", str(good))
    page.click("#test-files")
    page.locator("#tests-summary").wait_for()
    assert "1 passed, 0 failed" in page.locator("#tests-summary").inner_text()
    page.fill("#deploy-note", XSS_NOTE)
    page.click("#deploy")
    page.locator("#deploy-ok").wait_for()
    latest = page.locator("#history tbody tr").first
    assert XSS_NOTE in latest.inner_text()
    v = int(latest.get_attribute("data-version"))
    assert "audit-copy" in page.locator("#routes").inner_text()
    # diff v-1 → v (the selects default to the last two versions)
    page.select_option("#diff-a", str(v - 1))
    page.select_option("#diff-b", str(v))
    page.click("#diff")
    diff = page.locator("#diff-result pre")
    diff.wait_for()
    assert "+- name: audit-copy" in diff.inner_text()
    assert "<script>window.__xss=5</script>" in diff.inner_text()
    page.select_option("#test-version", str(v))
    page.click("#run-tests")
    page.locator("#tests-summary").wait_for()
    page.screenshot(path=str(screenshots / "07-routes-deployed-diff.png"), full_page=True)
    page.click("#rollback")
    page.locator("#rollback-ok").wait_for()
    assert f"copy of v{v - 1}" in page.locator("#rollback-ok").inner_text()
    expect(page.locator("#routes")).not_to_contain_text("audit-copy")
    no_script_ran(page)
    page.screenshot(path=str(screenshots / "08-rolled-back.png"), full_page=True)


def test_trace_lookup_by_idempotency_key_and_correlation_id(page: Any, env: dict[str, Any],
                                                            screenshots: Path) -> None:
    d, sink = env["daemon"], env["sink"]
    eid = send(d, "order.created", {"n": 42},
               **{"Idempotency-Key": "trace-me-42", "X-Correlation-ID": "corr-42"})
    wait_until(lambda: "trace-me-42" in sink.unique(), "the order delivered", timeout=30,
               daemon=d)
    page.goto("/console/trace")
    page.select_option("#by", "key")
    page.fill("#q", "trace-me-42")
    find_until_delivered(page, "the trace of the order by its key")
    assert page.locator("#trace-id").inner_text() == eid
    steps = page.locator("#timeline li").evaluate_all("els => els.map(e => e.dataset.step)")
    assert steps[0] == "accepted" and "routed" in steps and "delivered" in steps
    assert "ms" in page.locator("#timeline li[data-step=delivered]").inner_text()
    page.screenshot(path=str(screenshots / "09-trace.png"), full_page=True)
    page.select_option("#by", "correlation")
    page.fill("#q", "corr-42")
    page.click("#find")
    expect(page.locator("#trace-id")).to_have_text(eid)
    page.select_option("#by", "key")
    page.fill("#q", "no-such-key")
    page.click("#find")
    expect(page.locator("#error .error")).to_contain_text("Not found")


def test_actions_without_the_csrf_token_are_refused(page: Any) -> None:
    page.goto("/console/routes")
    without = page.evaluate("""fetch('/admin/routes/test', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify({version: 1})})
        .then(async r => [r.status, (await r.json()).title])""")
    assert without == [403, "CSRF token missing or wrong"]
    wrong = page.evaluate("""fetch('/admin/dlq/purge', {method: 'POST',
        headers: {'X-CSRF-Token': 'guessed'}}).then(r => r.status)""")
    assert wrong == 403
    with_token = page.evaluate("""fetch('/admin/routes/test', {method: 'POST',
        headers: {'Content-Type': 'application/json', 'X-CSRF-Token':
                  document.querySelector('meta[name=csrf-token]').content},
        body: JSON.stringify({version: 1})}).then(r => r.status)""")
    assert with_token == 200


def test_purge_after_confirmation_and_plugins(page: Any, env: dict[str, Any],
                                              screenshots: Path) -> None:
    page.goto("/console/deadletters")
    page.wait_for_selector("#letters tbody tr")
    page.click("#purge")  # the confirmation dialog is accepted
    page.locator("#purge-done").wait_for()
    assert "Purged" in page.locator("#purge-done").inner_text()
    expect(page.locator("#letters tbody")).to_contain_text("nothing here")
    page.goto("/console/plugins")
    expect(page.locator("#adapters tbody")).to_contain_text("rest")
    assert "json-schema" in page.locator("#transformers").inner_text()
    page.screenshot(path=str(screenshots / "10-plugins.png"), full_page=True)


def test_the_docs_page_renders_both_documents(page: Any, screenshots: Path) -> None:
    page.goto("/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("esb inbound API")
    expect(page.locator("#swagger-ui")).to_contain_text("/in/shop/order.created")
    page.screenshot(path=str(screenshots / "11-docs.png"), full_page=True)


def test_log_out(page: Any) -> None:
    page.goto("/console/overview")
    page.click("#logout")
    page.wait_for_url("**/console/login?out=1")
    page.goto("/console/routes")
    assert "/console/login" in page.url
