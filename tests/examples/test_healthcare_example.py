"""examples/healthcare through a real daemon on RabbitMQ, run from a copy of the example folder,
against its fake MPI and LIMS (FHIR R4 servers) and the legacy SOAP patient registry.

A transaction Bundle is split into its resources, routed by resourceType and validated; one
that fails validation is dead-lettered while the rest of the Bundle goes on. GET
/fhir/Patient/{id} answers from the registry as a FHIR Patient; an unknown id and bad input are
OperationOutcomes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from esbtest.examples import ExampleProject, example_peers, load_fakes, route_cases
from esbtest.waiting import wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "healthcare"
fakes = load_fakes(EXAMPLE)
FHIR = {"Content-Type": "application/fhir+json"}


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory, rabbit_url: str,
             ) -> Iterator[tuple[ExampleProject, Any, Any]]:
    mpi, lims = fakes.servers()
    apps = {"mpi": (mpi.app(), False), "lims": (lims.app(), False),
            "registry": (fakes.registry_app(), True)}
    with example_peers(apps) as urls:
        env = {"MPI_URL": urls["mpi"], "LIMS_URL": urls["lims"],
               "REGISTRY_URL": urls["registry"] + "/"}
        with ExampleProject(EXAMPLE, tmp_path_factory.mktemp("health"), rabbit_url,
                            ("mpi", "lims", "archive", "registry"), env) as project:
            yield project, mpi, lims


def test_the_route_files_own_cases_pass() -> None:
    result = route_cases(EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_transaction_bundle_is_split_validated_and_routed(hospital: Any) -> None:
    project, mpi, lims = hospital
    bundle = (EXAMPLE / "samples" / "admission.json").read_bytes()
    answer = httpx.post(project.daemon.url + "/fhir", content=bundle, headers=FHIR, timeout=10)
    assert answer.status_code == 202, answer.text
    assert wait_until(lambda: len(mpi.stored) == 1 and len(lims.stored) == 2, 30), \
        project.daemon.log()
    assert mpi.stored[0]["name"] == [{"family": "Seacole", "given": ["Mary"]}]
    codes = sorted(o["code"]["coding"][0]["code"] for o in lims.stored)
    assert codes == ["2345-7", "718-7"]
    archive = project.root / ".esb" / "outbox" / "archive"
    assert wait_until(lambda: any(archive.glob("*.json")), 30)
    kept = [json.loads(p.read_text()) for p in archive.glob("*.json")
            if not p.name.endswith(".event.json")]
    assert [r["resourceType"] for r in kept] == ["Encounter"]

    # A result without its status fails the LIMS subset: dead-lettered; the patient goes on.
    bad = (EXAMPLE / "samples" / "result-without-status.json").read_bytes()
    assert httpx.post(project.daemon.url + "/fhir", content=bad, headers=FHIR,
                      timeout=10).status_code == 202
    assert wait_until(lambda: len(mpi.stored) == 2, 30)

    def dead() -> list[dict[str, Any]]:
        rows = project.daemon.admin("GET", "/admin/dlq").json()
        return rows.get("items", rows) if isinstance(rows, dict) else rows
    assert wait_until(lambda: len(dead()) == 1, 30), project.daemon.log()
    assert "status" in json.dumps(dead()[0])
    assert len(lims.stored) == 2


def test_the_patient_read_facade_answers_from_the_legacy_registry(hospital: Any) -> None:
    project, _, _ = hospital
    read = httpx.get(project.daemon.url + "/fhir/Patient/p-1001", timeout=10)
    assert read.status_code == 200, read.text
    assert read.headers["content-type"].startswith("application/fhir+json")
    assert read.json() == {"resourceType": "Patient", "id": "p-1001",
                           "identifier": [{"system": "urn:example:hospital:mrn",
                                           "value": "MRN-0042"}],
                           "name": [{"family": "Nightingale", "given": ["Florence"]}],
                           "gender": "female", "birthDate": "1920-05-12"}
    unknown = httpx.get(project.daemon.url + "/fhir/Patient/p-9999", timeout=10)
    assert unknown.status_code == 404
    outcome = unknown.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "not-found"
    assert "p-9999" in outcome["issue"][0]["diagnostics"]
    wrong = httpx.post(project.daemon.url + "/fhir", content=b"<Bundle/>",
                       headers={"Content-Type": "application/xml"}, timeout=10)
    assert wrong.status_code == 415
    assert wrong.json()["resourceType"] == "OperationOutcome"
