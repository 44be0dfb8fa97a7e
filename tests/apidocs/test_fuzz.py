"""schemathesis against a daemon on RabbitMQ: every operation of /openapi.json (the inbound
sources) and /admin/openapi.json (the admin API) is called with requests generated from the
document, and every answer must conform to it — no 5xx, a documented status, the documented
content type, headers and body schema.

The number of examples per operation is bounded (``ESB_FUZZ_EXAMPLES``, default 15) so the
run stays well under a minute; raise it locally to search harder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from esbtest.broker import RabbitScope, broker_problem, bus_url
from esbtest.daemon import DaemonProcess
from esbtest.sink import Sink
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks
from schemathesis.core.failures import FailureGroup

EXAMPLES = int(os.environ.get("ESB_FUZZ_EXAMPLES", "15"))
SCHEMA = {"type": "object", "required": ["orderId"],
          "properties": {"orderId": {"type": "string", "minLength": 1},
                         "total": {"type": "number", "minimum": 0}}}
CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_headers_conformance,
          checks.response_schema_conformance]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    url = bus_url()
    if (problem := broker_problem(url)) is not None:
        pytest.fail(problem, pytrace=False)
    scope = RabbitScope(url)
    sink = Sink()
    config = {
        "bus": scope.bus("orders"),
        "sources": {
            "shop": {"adapter": "rest", "path": "/in/shop", "methods": ["POST", "PUT"]},
            "partner": {"adapter": "rest", "path": "/in/partner", "max_body": "4KiB",
                        "auth": {"type": "api_key", "keys": ["${PARTNER_KEY}"]}}},
        "destinations": {"orders": {"adapter": "rest", "url": f"{sink.url}/orders"}}}
    routes = {"r.yaml": {"routes": [
        {"name": "orders", "match": {"type": ["order.created"]},
         "transform": [{"json-schema": {"schema": SCHEMA}}], "to": ["orders"]},
        {"name": "rest", "to": ["orders"]}]}}
    d = DaemonProcess(tmp_path_factory.mktemp("fuzz"), config, routes,
                      env={"PARTNER_KEY": "partner-secret-key"})
    d.start(timeout=60)
    try:
        yield d
    finally:
        d.stop()
        sink.close()
        scope.cleanup()


def fuzz(doc: dict[str, Any], base_url: str, headers: dict[str, str]) -> list[str]:
    """Run every operation of ``doc``; the failures, one line each."""
    schema = schemathesis.openapi.from_dict(doc)
    failures: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    assert operations, "the document has no operations"
    for op in operations:
        _run_operation(op, base_url, headers, failures)
    return failures


def _run_operation(op: Any, base_url: str, headers: dict[str, str],
                   failures: list[str]) -> None:
    label = f"{op.method.upper()} {op.path}"

    @given(case=op.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, headers=headers)
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, FailureGroup) as exc:
            failures.append(f"{label}: {str(exc).splitlines()[0]} (sent "
                            f"{case.path_parameters or ''} {case.query or ''} "
                            f"{str(case.body)[:120]!r}; got {response.status_code} "
                            f"{response.text[:200]!r})")

    run()


def test_inbound_sources_answer_as_their_document_says(daemon: DaemonProcess) -> None:
    doc = httpx.get(f"{daemon.url}/openapi.json").json()
    failures = fuzz(doc, daemon.url, {"X-API-Key": "partner-secret-key"})
    assert not failures, "\n".join(dict.fromkeys(failures))


def test_the_admin_api_answers_as_its_document_says(daemon: DaemonProcess) -> None:
    doc = daemon.admin("GET", "/admin/openapi.json").json()
    failures = fuzz(doc, daemon.url, {"Authorization": f"Bearer {daemon.token}"})
    assert not failures, "\n".join(dict.fromkeys(failures))
