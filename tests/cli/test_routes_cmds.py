"""`esb routes validate | test | deploy | list | history | diff | rollback` through click's
CliRunner: `validate` and `test` offline; the others against a real HTTP server carrying the
admin endpoints."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner
from esbtest.asgi import serve_in_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from esb.adapters.testing.daemon import free_port
from esb.bus.cli.main import Context, cli
from esb.bus.cli.routes_cmds import register
from esb.bus.config.loader import load_config
from esb.bus.routing.from_config import config_compiler
from esb.bus.routing.store_embedded import FileRouteStore
from esb.bus.runtime.admin_routes import route_admin_routes
from esb.bus.runtime.deploy import RouteDeployer
from esb.bus.runtime.ingress import RouterHolder

CONFIG = {
    "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
    "destinations": {"erp": {"adapter": "file", "directory": "out/erp"},
                     "audit": {"adapter": "file", "directory": "out/audit"}},
    "routes": "routes/",
}

ORDERS = """\
routes:
  - name: big-orders-to-erp
    from: [shop]
    match:
      type: [order.created]
      data: {total: [{numeric: [">=", 1000]}]}
    to:
      - destination: erp
        transform: [{json-to-xml: {root: order}}]
  - name: audit-all
    from: [shop]
    match: {type: [{prefix: order.}]}
    to: [audit]
tests:
  - name: big-order
    source: shop
    type: order.created
    message: {total: 1500}
    expect:
      destinations: [audit, erp]
      outputs:
        erp: "<order><total>1500</total></order>"
"""

FAILING_CASE = """\
  - name: small-order-to-erp
    source: shop
    type: order.created
    message: {total: 5}
    expect:
      destinations: [erp]
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "config").mkdir()
    (tmp_path / "routes").mkdir()
    (tmp_path / "config" / "esb.yaml").write_text(yaml.safe_dump(CONFIG))
    (tmp_path / "routes" / "orders.yaml").write_text(ORDERS)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def group() -> click.Group:
    @click.group()
    def routes() -> None:
        """The routes group of main.py."""

    register(routes)
    return routes


class Output:
    """What a command printed, without the log lines the in-process server adds."""

    def __init__(self, result: click.testing.Result) -> None:
        self.exit_code = result.exit_code
        self.output = "".join(line for line in result.output.splitlines(keepends=True)
                              if not LOG_LINE.match(line))


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")


def invoke(*args: str, obj: Context | None = None) -> Output:
    return Output(CliRunner().invoke(group(), list(args), obj=obj, catch_exceptions=False))


# -- routes test (offline) ---------------------------------------------------------------------

def test_cases_pass(project: Path) -> None:
    result = invoke("test", "routes")
    assert result.exit_code == 0, result.output
    assert "PASS  big-order  (routes/orders.yaml:15)" in result.output
    assert "1 case(s): 1 passed, 0 failed" in result.output


def test_a_failing_case_exits_1_with_file_line(project: Path) -> None:
    (project / "routes" / "orders.yaml").write_text(ORDERS + FAILING_CASE)
    result = invoke("test", "routes/")
    assert result.exit_code == 1, result.output
    assert "FAIL  small-order-to-erp  (routes/orders.yaml:23)" in result.output
    assert ("routes/orders.yaml:28: small-order-to-erp: expected destinations ['erp'], "
            "got ['audit']") in result.output
    assert "2 case(s): 1 passed, 1 failed" in result.output
    as_json = invoke("test", "routes", "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.output)["failed"] == 1


def test_invalid_route_files_exit_2_with_every_problem(project: Path) -> None:
    (project / "routes" / "bad.yaml").write_text(
        "routes:\n  - name: x\n    from: [shoop]\n    to: [nowhere]\n")
    result = invoke("test", "routes")
    assert result.exit_code == 2
    assert "esb: 2 problem(s):" in result.output
    assert "routes/bad.yaml:3: x: from: unknown source 'shoop'" in result.output
    assert "routes/bad.yaml:4: x: to[0]: unknown destination 'nowhere'" in result.output


def test_one_message_shows_what_each_destination_receives(project: Path) -> None:
    (project / "order.json").write_text('{"total": 2000}')
    result = invoke("test", "routes/orders.yaml", "--message", "order.json",
                    "--type", "order.created", "--source", "shop")
    assert result.exit_code == 0, result.output
    assert "routes   big-orders-to-erp, audit-all" in result.output
    assert "→ erp  route big-orders-to-erp  application/xml" in result.output
    assert "<total>2000</total>" in result.output
    assert '"total": 2000' in result.output
    unmatched = invoke("test", "routes", "--message", "order.json", "--type", "order.created")
    assert unmatched.exit_code == 0
    assert "none match" in unmatched.output and "use --source" in unmatched.output
    as_json = invoke("test", "routes", "--message", "order.json", "--type", "order.created",
                     "--source", "shop", "--json")
    assert json.loads(as_json.output)["destinations"] == ["audit", "erp"]


FACADE = """\
routes:
  - name: customer-lookup
    from: [shop]
    match: {type: [customer.get]}
    to: erp
    reply:
      timeout: 3s
      transform:
        - xml-to-json: {strip_namespaces: true, types: {id: integer}}
        - jmespath: GetCustomerResponse.customer
"""


TIER = """\
routes:
  - name: tier
    from: [shop]
    priority: 10
    enrich:
      destination: erp
      request: [{jmespath: "{id: customer}"}]
      merge: [{jmespath: "merge(message, {tier: reply.tier})"}]
  - name: gold
    from: [shop]
    match: {data: {tier: [gold]}}
    to: [audit]
"""


def test_a_message_an_enricher_needs_an_answer_for_shows_the_request(project: Path) -> None:
    (project / "routes" / "orders.yaml").write_text(TIER)
    (project / "order.json").write_text('{"customer": 7}')
    (project / "gold.json").write_text('{"tier": "gold"}')
    asking = invoke("test", "routes", "--message", "order.json", "--source", "shop")
    assert asking.exit_code == 0, asking.output
    assert "⇢ enrich: route tier would ask erp (waiting up to 5s)" in asking.output
    assert '"id": 7' in asking.output and "--answer erp=FILE" in asking.output
    answered = invoke("test", "routes", "--message", "order.json", "--source", "shop",
                      "--answer", "erp=gold.json")
    assert answered.exit_code == 0, answered.output
    assert "→ audit  route gold" in answered.output
    assert '"tier": "gold"' in answered.output
    bad = invoke("test", "routes", "--message", "order.json", "--source", "shop",
                 "--answer", "gold.json")
    assert bad.exit_code == 2 and "write DEST=FILE" in bad.output
    missing = invoke("test", "routes", "--message", "order.json", "--source", "shop",
                     "--answer", "erp=nowhere.json")
    assert missing.exit_code == 2 and "cannot read" in missing.output


def test_a_request_reply_message_shows_the_request_and_with_a_reply_the_answer(
        project: Path) -> None:
    (project / "routes" / "facade.yaml").write_text(FACADE)
    (project / "get.json").write_text('{"id": 7}')
    (project / "reply.xml").write_text(
        '<c:GetCustomerResponse xmlns:c="urn:crm"><c:customer><c:id>7</c:id>'
        "<c:name>Ada</c:name></c:customer></c:GetCustomerResponse>")
    result = invoke("test", "routes/facade.yaml", "--message", "get.json",
                    "--type", "customer.get", "--source", "shop")
    assert result.exit_code == 0, result.output
    assert "→ erp  route customer-lookup  application/json  (request/reply" in result.output
    assert "← reply: route customer-lookup waits up to 3s for erp; reply steps: " \
        "xml-to-json, jmespath" in result.output
    answered = invoke("test", "routes/facade.yaml", "--message", "get.json", "--type",
                      "customer.get", "--source", "shop", "--reply", "reply.xml")
    assert answered.exit_code == 0, answered.output
    assert "← caller gets 200  application/json" in answered.output
    assert '"name": "Ada"' in answered.output
    as_json = json.loads(invoke("test", "routes/facade.yaml", "--message", "get.json",
                                "--type", "customer.get", "--source", "shop", "--reply",
                                "reply.xml", "--json").output)
    assert as_json["reply"]["destination"] == "erp"
    assert as_json["answer"]["data"] == {"id": 7, "name": "Ada"}
    (project / "bad.txt").write_text("not xml")
    broken = invoke("test", "routes/facade.yaml", "--message", "get.json", "--type",
                    "customer.get", "--source", "shop", "--reply", "bad.txt",
                    "--reply-content-type", "application/xml")
    assert broken.exit_code == 1
    assert "← caller gets 502 problem+json" in broken.output and "xml-to-json" in broken.output


# -- every problem of a route set in one run ---------------------------------------------------

BROKEN_XSL = """\
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/"><xsl:value-of select="concat(("/></xsl:template>
</xsl:stylesheet>
"""

A_YAML = """\
routes:
  - name: orders-to-erp
    from: [shop]
    colour: red
    to: [nowhere]
  - name: big-orders
    from: [shop]
    match:
      type: [order.created]
      data:
        country: [DE, FR]
        total:
          - numeric: [">=", 1000]
          - between: [1000, 5000]
    to:
      - destination: erp
        transform:
          - json-to-xml: {root: order}
          - xslt: config/xslt/broken.xsl
      - destination: audti
"""

B_YAML = """\
routes:
  - name: big-orders
    to: [audit]
  - name: eu-orders
    from: [shoop]
    transform: [no-such-transformer]
    to: [audit]
  - name: ranked
    priority: high
    to: [audit]
"""

#: (file:line, a fragment of the problem) — in the order they must be listed.
EVERY_PROBLEM = [
    ("a.yaml:4:", "routes.0.colour: unknown key"),
    ("a.yaml:14:", "big-orders: match.data.total[1]: unknown operator 'between'"),
    ("a.yaml:19:", "big-orders: to[0].transform[1].xslt: config/xslt/broken.xsl does not "
                   "compile"),
    ("a.yaml:20:", "big-orders: to[1]: unknown destination 'audti'. Did you mean 'audit'?"),
    ("b.yaml:2:", "routes[0].name: duplicate route name 'big-orders' (also at "),
    ("b.yaml:5:", "eu-orders: from: unknown source 'shoop'. Did you mean 'shop'?"),
    ("b.yaml:6:", "eu-orders: transform[0].no-such-transformer: unknown transformer"),
    ("b.yaml:9:", "routes.2.priority: Input should be a valid integer"),
]


@pytest.fixture
def broken(project: Path) -> Path:
    """Two route files with several different problems each (orders.yaml is valid)."""
    (project / "config" / "xslt").mkdir()
    (project / "config" / "xslt" / "broken.xsl").write_text(BROKEN_XSL)
    (project / "routes" / "a.yaml").write_text(A_YAML)
    (project / "routes" / "b.yaml").write_text(B_YAML)
    return project


def problem_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.startswith("  ")]


def assert_every_problem(result: Output) -> None:
    assert result.exit_code == 2, result.output
    assert f"esb: {len(EVERY_PROBLEM)} problem(s):" in result.output, result.output
    lines = problem_lines(result.output)
    assert len(lines) == len(EVERY_PROBLEM), lines
    for line, (where, fragment) in zip(lines, EVERY_PROBLEM, strict=True):
        assert line.startswith(f"routes/{where} "), (line, where)
        assert fragment in line, (line, fragment)


def test_validate_reports_every_problem_of_every_file_at_once(broken: Path) -> None:
    result = Output(CliRunner().invoke(cli, ["routes", "validate", "routes"],
                                       catch_exceptions=False))
    assert_every_problem(result)
    assert "(also at routes/a.yaml:6)" in result.output
    # A route with a schema error is not checked further: its unknown destination is not
    # reported (it would be once the schema error is fixed).
    assert "nowhere" not in result.output


def test_test_reports_the_same_problems(broken: Path) -> None:
    assert_every_problem(invoke("test", "routes"))


def test_validate_ok_once_every_problem_is_fixed(broken: Path) -> None:
    (broken / "config" / "xslt" / "broken.xsl").write_text(
        BROKEN_XSL.replace("concat((", "string(.)"))
    (broken / "routes" / "a.yaml").write_text(
        A_YAML.replace("    colour: red\n", "").replace("[nowhere]", "[erp]")
        .replace("between: [1000, 5000]", 'numeric: ["<", 5000]').replace("audti", "audit"))
    (broken / "routes" / "b.yaml").write_text(
        B_YAML.replace("name: big-orders", "name: small-orders").replace("shoop", "shop")
        .replace("    transform: [no-such-transformer]\n", "").replace("high", "5"))
    result = Output(CliRunner().invoke(cli, ["routes", "validate", "routes"],
                                       catch_exceptions=False))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: 7 routes")


# -- daemon commands -----------------------------------------------------------------------------

@pytest.fixture
def daemon(project: Path) -> Iterator[Context]:
    """The admin endpoints on a real HTTP server, as the daemon mounts them."""
    loaded = load_config(project / "config" / "esb.yaml")
    compile_files = config_compiler(loaded)
    files = {"orders.yaml": ORDERS}
    holder = RouterHolder(compile_files(files, 0))
    deployer = RouteDeployer(FileRouteStore(project / ".esb"), holder, compile_files, "test")

    def guard(endpoint):  # type: ignore[no-untyped-def]
        async def guarded(request: Request) -> Response:
            if request.headers.get("authorization") != "Bearer secret":
                return JSONResponse({"title": "Unauthorized"}, 401)
            return await endpoint(request)
        return guarded

    async def routes_info(request: Request) -> Response:  # AdminApi's GET /admin/routes
        r = holder.current
        return JSONResponse({"version": r.version, "digest": r.digest,
                             "routes": [{"name": x.name, "priority": x.priority,
                                         "exclusive": x.exclusive,
                                         "to": [leg.destination for leg in x.legs]}
                                        for x in r.routes]})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await deployer.start(files)
        yield
        await deployer.close()

    app = Starlette(routes=[Route("/admin/routes", guard(routes_info)),
                            *route_admin_routes(deployer, guard)], lifespan=lifespan)
    with serve_in_thread(app) as url:
        yield Context(url, "secret")


def test_deploy_history_list_diff_rollback(project: Path, daemon: Context) -> None:
    new = ORDERS.replace("numeric: [\">=\", 1000]", "numeric: [\">=\", 500]")
    (project / "routes" / "orders.yaml").write_text(new)
    result = invoke("deploy", "routes", "--note", "lower threshold", "--by", "alice",
                    obj=daemon)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("deployed version 2 (")
    assert "1 file(s), by alice" in result.output

    history = invoke("history", obj=daemon)
    assert history.exit_code == 0, history.output
    lines = history.output.splitlines()
    assert lines[0].split() == ["VERSION", "DEPLOYED", "BY", "DIGEST", "FILES", "NOTE"]
    assert lines[2].split()[:1] == ["1"] and "initial" in lines[2]
    assert lines[3].startswith("*") and "alice" in lines[3] and "lower threshold" in lines[3]
    assert json.loads(invoke("history", "--json", obj=daemon).output)["running"] == 2

    listing = invoke("list", obj=daemon)
    assert listing.exit_code == 0, listing.output
    assert listing.output.startswith("version 2 (") and "by alice" in listing.output
    assert "big-orders-to-erp" in listing.output and "audit-all" in listing.output

    diff = invoke("diff", "1", "2", obj=daemon)
    assert diff.exit_code == 0
    assert "--- v1/orders.yaml" in diff.output and "+++ v2/orders.yaml" in diff.output
    assert '+      data: {total: [{numeric: [">=", 500]}]}' in diff.output
    same = invoke("diff", "2", "2", obj=daemon)
    assert "have the same route files" in same.output

    back = invoke("rollback", "--by", "bob", obj=daemon)
    assert back.exit_code == 0, back.output
    assert back.output.startswith("deployed version 3 (") and "of version 1" in back.output
    again = invoke("rollback", "3", obj=daemon)
    assert again.exit_code == 1 and "already the latest" in again.output
    unknown = invoke("diff", "1", "9", obj=daemon)
    assert unknown.exit_code == 1 and "HTTP 404" in unknown.output


def test_a_refused_deploy_exits_2_with_every_problem(project: Path, daemon: Context) -> None:
    (project / "routes" / "orders.yaml").write_text(
        ORDERS.replace("[audit]", "[audti]").replace("from: [shop]", "from: [shoop]", 1))
    result = invoke("deploy", "routes", obj=daemon)
    assert result.exit_code == 2, result.output
    assert "esb: 2 problem(s):" in result.output
    assert "routes/orders.yaml:3: big-orders-to-erp: from: unknown source 'shoop'" \
        in result.output
    assert "unknown destination 'audti'. Did you mean 'audit'?" in result.output
    history = json.loads(invoke("history", "--json", obj=daemon).output)
    assert [v["version"] for v in history["versions"]] == [1]


def test_a_wrong_token_or_no_daemon_exits_1(project: Path, daemon: Context) -> None:
    result = invoke("history", obj=Context(daemon.url, "wrong"))
    assert result.exit_code == 1 and "HTTP 401" in result.output
    result = invoke("history", obj=Context(f"http://127.0.0.1:{free_port()}", "x"))
    assert result.exit_code == 1 and "cannot reach the esb daemon" in result.output


def test_a_refused_deploy_lists_what_validate_lists(broken: Path, daemon: Context) -> None:
    result = invoke("deploy", "routes", obj=daemon)
    assert_every_problem(result)
    validate = Output(CliRunner().invoke(cli, ["routes", "validate", "routes"],
                                         catch_exceptions=False))
    assert [line.split(" ")[0] for line in problem_lines(result.output)] == \
        [line.split(" ")[0] for line in problem_lines(validate.output)]
    history = json.loads(invoke("history", "--json", obj=daemon).output)
    assert [v["version"] for v in history["versions"]] == [1]  # refused whole: nothing stored


def test_deploying_unchanged_files_says_no_change(project: Path, daemon: Context) -> None:
    same = invoke("deploy", "routes", obj=daemon)  # the files version 1 has
    assert same.exit_code == 0, same.output
    assert same.output.startswith("no change: version 1 (") and "nothing stored" in same.output
    as_json = json.loads(invoke("deploy", "routes", "--json", obj=daemon).output)
    assert as_json["unchanged"] is True and as_json["deployed"] is False
    assert as_json["version"] == 1
    history = json.loads(invoke("history", "--json", obj=daemon).output)
    assert [v["version"] for v in history["versions"]] == [1]
    forced = invoke("deploy", "routes", "--force", "--json", obj=daemon)
    assert forced.exit_code == 0, forced.output
    body = json.loads(forced.output)
    assert body["version"] == 2 and body["deployed"] is True and body["running"] is True


def test_rollback_goes_to_the_last_version_whose_files_differ(project: Path,
                                                              daemon: Context) -> None:
    (project / "routes" / "orders.yaml").write_text(
        ORDERS.replace("numeric: [\">=\", 1000]", "numeric: [\">=\", 500]"))
    assert invoke("deploy", "routes", obj=daemon).exit_code == 0  # v2
    assert invoke("deploy", "routes", "--force", obj=daemon).exit_code == 0  # v3 = v2's files
    back = invoke("rollback", obj=daemon)
    assert back.exit_code == 0, back.output
    assert back.output.startswith("deployed version 4 (") and "of version 1" in back.output
    same = invoke("rollback", "1", obj=daemon)  # version 1's files are the latest's now
    assert same.exit_code == 1 and "nothing would change" in same.output
    assert invoke("rollback", "1", "--force", obj=daemon).exit_code == 0


def test_validate_json(project: Path) -> None:
    ok = Output(CliRunner().invoke(cli, ["routes", "validate", "routes", "--json"],
                                   catch_exceptions=False))
    assert ok.exit_code == 0
    body = json.loads(ok.output)
    assert body["ok"] is True and "big-orders-to-erp" in body["routes"]
    assert len(body["digest"]) == 64


def test_validate_json_lists_every_problem(broken: Path) -> None:
    bad = Output(CliRunner().invoke(cli, ["routes", "validate", "routes", "--json"],
                                    catch_exceptions=False))
    assert bad.exit_code == 2
    body = json.loads(bad.output)
    assert body["ok"] is False
    assert any("unknown source 'shoop'" in p for p in body["problems"])


SCHEMA_CHECKED = """\
routes:
  - name: checked
    from: [shop]
    match: {type: [order.created]}
    transform: [{json-schema: {schema: {type: object, required: [total]}}}]
    to: [erp]
  - name: audit-all
    from: [shop]
    match: {type: [{prefix: order.}]}
    to: [audit]
tests:
  - name: refused-order
    source: shop
    type: order.created
    message: {sku: A}
    expect: {destinations: [audit], dead_letters: [checked]}
  - name: good-order-wrongly-expected-refused
    source: shop
    type: order.created
    message: {total: 5}
    expect: {dead_letters: [checked/erp]}
"""


def test_expected_dead_letters_pass_and_missing_ones_fail(project: Path) -> None:
    (project / "routes" / "orders.yaml").write_text(SCHEMA_CHECKED)
    result = invoke("test", "routes")
    assert "PASS  refused-order" in result.output, result.output
    assert ("good-order-wrongly-expected-refused: expected checked/erp to dead-letter a copy; "
            "nothing was dead-lettered there") in result.output
    assert result.exit_code == 1
