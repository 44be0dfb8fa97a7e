"""Fake versions of the systems this example connects, behaving like the real ones where it
matters to an integration: FHIR R4 REST (``application/fhir+json``, ``201 Created`` with a
``Location``, ``OperationOutcome`` for errors) and a legacy SOAP patient registry.

    python fakes.py                  # serve them on their default ports (see PORTS)
    python fakes.py send [FILE]      # post a transaction Bundle to esb (samples/)

- Master patient index (MPI) and laboratory system (LIMS): each a FHIR R4 server for one
  resource type, ``POST /Patient`` or ``POST /Observation``; a resource of another type, or one
  without the fields the server needs, is refused with a 400/422 ``OperationOutcome``.
- The hospital's patient registry: a SOAP 1.1 service (spyne) with ``GetPatient(PatientId)``;
  an unknown id is a Client fault ``PatientNotFound``.

Patients and results are invented.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spyne import Application, ComplexModel, Date, Fault, ServiceBase, Unicode, rpc
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from esb.adapters.testing.peers import PeerServer

HERE = Path(__file__).resolve().parent
PORTS = {"mpi": 9401, "lims": 9402, "registry": 9403}
FHIR_JSON = "application/fhir+json"
REGISTRY_NS = "urn:example:hospital:registry"


def outcome(status: int, code: str, diagnostics: str) -> JSONResponse:
    """A FHIR ``OperationOutcome`` answer."""
    return JSONResponse({"resourceType": "OperationOutcome",
                         "issue": [{"severity": "error", "code": code,
                                    "diagnostics": diagnostics}]},
                        status, media_type=FHIR_JSON)


@dataclass
class FakeFhirServer:
    """A FHIR R4 server that stores one resource type and checks what it must have."""

    resource_type: str
    required: tuple[str, ...]
    stored: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(routes=[Route(f"/{self.resource_type}", self.create,
                                       methods=["POST"])])

    async def create(self, request: Request) -> Response:
        media = request.headers.get("content-type", "").split(";")[0].strip()
        if media not in (FHIR_JSON, "application/json"):
            return outcome(415, "not-supported", f"content type {media!r}: send {FHIR_JSON}")
        try:
            resource = json.loads(await request.body())
        except ValueError:
            return outcome(400, "structure", "the body is not JSON")
        if not isinstance(resource, dict) or resource.get("resourceType") != self.resource_type:
            return outcome(400, "invalid", f"this endpoint takes {self.resource_type} resources")
        missing = [name for name in self.required if name not in resource]
        if missing:
            return outcome(422, "required", f"missing: {', '.join(missing)}")
        stored = {**resource, "id": resource.get("id") or uuid.uuid4().hex[:12],
                  "meta": {"versionId": "1",
                           "lastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
        self.stored.append(stored)
        return JSONResponse(stored, 201, media_type=FHIR_JSON, headers={
            "Location": f"/{self.resource_type}/{stored['id']}/_history/1"})


# -- the legacy patient registry (SOAP) --------------------------------------------------------

class PatientRecord(ComplexModel):
    __namespace__ = REGISTRY_NS
    PatientId = Unicode
    Mrn = Unicode
    FamilyName = Unicode
    GivenName = Unicode
    BirthDate = Date
    Sex = Unicode  # M, F, U


REGISTRY: dict[str, dict[str, Any]] = {
    "p-1001": {"PatientId": "p-1001", "Mrn": "MRN-0042", "FamilyName": "Nightingale",
               "GivenName": "Florence", "BirthDate": "1920-05-12", "Sex": "F"},
    "p-1002": {"PatientId": "p-1002", "Mrn": "MRN-0043", "FamilyName": "Snow",
               "GivenName": "John", "BirthDate": "1913-03-15", "Sex": "M"},
}


class RegistryService(ServiceBase):
    @rpc(Unicode(min_occurs=1, nillable=False), _returns=PatientRecord)
    def GetPatient(ctx: Any, PatientId: str) -> PatientRecord:
        record = REGISTRY.get(PatientId)
        if record is None:
            raise Fault(faultcode="Client.PatientNotFound",
                        faultstring=f"no patient with id {PatientId}")
        return PatientRecord(**{**record, "BirthDate": _date(record["BirthDate"])})


def _date(text: str) -> Any:
    from datetime import date

    return date.fromisoformat(text)


def registry_app() -> Any:
    return WsgiApplication(Application([RegistryService], tns=REGISTRY_NS,
                                       name="PatientRegistry",
                                       in_protocol=Soap11(validator="lxml"),
                                       out_protocol=Soap11()))


def servers() -> tuple[FakeFhirServer, FakeFhirServer]:
    """(MPI, LIMS)."""
    return (FakeFhirServer("Patient", ("name", "birthDate")),
            FakeFhirServer("Observation", ("status", "code", "subject")))


def serve_all() -> None:
    mpi, lims = servers()
    with PeerServer(mpi.app(), PORTS["mpi"]), PeerServer(lims.app(), PORTS["lims"]), \
            PeerServer(registry_app(), PORTS["registry"], wsgi=True):
        print("fake MPI :9401  LIMS :9402  patient registry (SOAP) :9403", flush=True)
        seen = (0, 0)
        try:
            while True:
                time.sleep(0.5)
                now = (len(mpi.stored), len(lims.stored))
                if now != seen:
                    print(f"MPI has {now[0]} patients, LIMS {now[1]} results", flush=True)
                    seen = now
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    if sys.argv[1:2] == ["send"]:
        import httpx

        sample = Path(sys.argv[2]) if len(sys.argv) > 2 else HERE / "samples" / "admission.json"
        url = os.environ.get("ESB_URL", "http://127.0.0.1:8080") + "/fhir"
        answer = httpx.post(url, content=sample.read_bytes(),
                            headers={"Content-Type": FHIR_JSON}, timeout=10)
        print(answer.status_code, answer.text)
    else:
        serve_all()
