"""SOAP protocol mismatches are refused: a SOAPAction naming another operation than the body
(a policy keyed on SOAPAction cannot be bypassed), and a SOAP 1.1 envelope on a 1.2-only
endpoint (or the reverse) — each with a fault in the version the client spoke."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from esbtest.daemon import DaemonProcess
from esbtest.hostile import ROUTES
from lxml import etree

SOAP_DIR = Path(__file__).parents[1] / "adapters" / "soap"
S11 = "http://schemas.xmlsoap.org/soap/envelope/"
S12 = "http://www.w3.org/2003/05/soap-envelope"
NS = "urn:example:orders"
CANCEL = f'<o:CancelOrder xmlns:o="{NS}"><o:orderId>1</o:orderId></o:CancelOrder>'


def only(version: str) -> str:
    """orders.wsdl with the binding and port of the other version removed."""
    text = (SOAP_DIR / "orders.wsdl").read_text()
    drop = "OrderSoap12" if version == "1.1" else "OrderSoap11"
    text = re.sub(rf'<wsdl:binding name="{drop}".*?</wsdl:binding>', "", text, flags=re.S)
    port = "OrderPort12" if version == "1.1" else "OrderPort11"
    return re.sub(rf'<wsdl:port name="{port}".*?</wsdl:port>', "", text, flags=re.S)


@pytest.fixture(scope="module")
def daemon(module_daemons: Callable[..., DaemonProcess], module_sink: Any) -> DaemonProcess:
    sources = {name: {"adapter": "soap", "path": f"/soap/{name}", "wsdl": f"config/{name}.wsdl"}
               for name in ("both", "v11", "v12")}
    d = module_daemons({"sources": sources, "destinations": {
        "out": {"adapter": "rest", "url": module_sink.url + "/in"}}}, ROUTES,
        files={"config/v11.wsdl": only("1.1"), "config/v12.wsdl": only("1.2")})
    shutil.copy(SOAP_DIR / "orders.wsdl", d.root / "config" / "both.wsdl")
    return d.start()


def call(d: DaemonProcess, path: str, version: str, body: str,
         action: str | None = None) -> httpx.Response:
    ns = S11 if version == "1.1" else S12
    envelope = f'<e:Envelope xmlns:e="{ns}"><e:Body>{body}</e:Body></e:Envelope>'
    if version == "1.1":
        headers = {"Content-Type": "text/xml; charset=utf-8"}
        if action is not None:
            headers["SOAPAction"] = f'"{action}"'
    else:
        ctype = "application/soap+xml; charset=utf-8"
        headers = {"Content-Type": ctype + (f'; action="{action}"' if action else "")}
    return httpx.post(d.url + path, content=envelope, headers=headers, timeout=10)


def fault(r: httpx.Response) -> tuple[str, str, str]:
    """(envelope namespace, fault code, reason) of a fault response."""
    doc = etree.fromstring(r.content)
    ns = etree.QName(doc).namespace
    if ns == S11:
        f = doc.find(f"{{{S11}}}Body/{{{S11}}}Fault")
        return ns, f.findtext("faultcode"), f.findtext("faultstring")
    f = doc.find(f"{{{S12}}}Body/{{{S12}}}Fault")
    return (ns, f.findtext(f"{{{S12}}}Code/{{{S12}}}Value"),
            f.findtext(f"{{{S12}}}Reason/{{{S12}}}Text"))


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_soapaction_naming_another_operation_is_a_client_fault(daemon: DaemonProcess,
                                                               version: str) -> None:
    r = call(daemon, "/soap/both", version, CANCEL, action=f"{NS}:SubmitOrder")
    ns, code, reason = fault(r)
    assert ns == (S11 if version == "1.1" else S12)
    assert code in ("soap:Client", "soap:Sender") and "CancelOrder" in reason, reason


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_matching_empty_and_unknown_actions(daemon: DaemonProcess, version: str) -> None:
    assert call(daemon, "/soap/both", version, CANCEL, action=f"{NS}:CancelOrder"
                ).status_code == 200
    assert call(daemon, "/soap/both", version, CANCEL, action="").status_code == 200
    r = call(daemon, "/soap/both", version, CANCEL, action="urn:something:else")
    assert fault(r)[1] in ("soap:Client", "soap:Sender")


@pytest.mark.parametrize(("path", "sent", "takes"), [("/soap/v12", "1.1", "1.2"),
                                                      ("/soap/v11", "1.2", "1.1")])
def test_the_other_soap_version_is_a_version_mismatch_in_its_own_version(
        daemon: DaemonProcess, path: str, sent: str, takes: str) -> None:
    r = call(daemon, path, sent, CANCEL)
    ns, code, reason = fault(r)
    assert ns == (S11 if sent == "1.1" else S12)
    assert code == "soap:VersionMismatch" and f"SOAP {takes} only" in reason
    upgrade = etree.fromstring(r.content).find(f".//{{{S12}}}Upgrade")
    assert upgrade is not None and len(upgrade) == 1
    assert call(daemon, path, takes, CANCEL).status_code == 200
