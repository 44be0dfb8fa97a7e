"""The admin API's OpenAPI document describes exactly the routes the admin API serves, and
is a valid OpenAPI 3.1 document."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from openapi_spec_validator import validate

from esb.bus.apidocs.admin import admin_document
from esb.bus.console.session import Sessions
from esb.bus.runtime.admin import AdminApi


def served_paths() -> set[tuple[str, str]]:
    """(path in OpenAPI form, method) of every admin route, from the AdminApi itself."""
    daemon: Any = SimpleNamespace(deployer=None, route_tester=object(), deadletters=None,
                                  trace=None, presence=None, stats=None, plugins=None,
                                  config=SimpleNamespace(admin=SimpleNamespace(max_body=1 << 20)))
    api = AdminApi(daemon, "t", False, Sessions("t", 60))
    out = set()
    for route in api.routes():
        path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", route.path)
        for method in route.methods or ():
            if method != "HEAD":
                out.add((path, method.lower()))
    return out


def test_every_admin_route_is_described_and_nothing_else() -> None:
    doc = admin_document()
    described = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert described == served_paths()


def test_the_admin_document_is_valid_openapi_3_1(tmp_path: Path) -> None:
    doc = admin_document(server="http://127.0.0.1:8080")
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert "401" in op["responses"], (path, method)
            assert op["responses"]["401"]["content"]["application/problem+json"]
