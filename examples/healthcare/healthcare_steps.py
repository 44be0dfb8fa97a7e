"""Python steps of the healthcare example (the project folder is on the import path)."""

from __future__ import annotations

from typing import Any

from esb.bus.envelope import Envelope
from esb.bus.errors import TransformError

FHIR_JSON = "application/fhir+json"
SEX_TO_GENDER = {"M": "male", "F": "female", "O": "other", "U": "unknown"}


def registry_to_fhir_patient(envelope: Envelope) -> Envelope:
    """The registry's ``GetPatientResponse`` (xml-to-json, namespaces stripped) → a FHIR R4
    Patient resource, as a FHIR server would answer ``GET /Patient/{id}``."""
    data: Any = envelope.data
    try:
        record = data["GetPatientResponse"]["GetPatientResult"]
    except (KeyError, TypeError):
        raise TransformError("registry_to_fhir_patient",
                             "the registry's answer has no GetPatientResult") from None
    patient = {
        "resourceType": "Patient",
        "id": record["PatientId"],
        "identifier": [{"system": "urn:example:hospital:mrn", "value": record["Mrn"]}],
        "name": [{"family": record["FamilyName"], "given": [record["GivenName"]]}],
        "gender": SEX_TO_GENDER.get(str(record.get("Sex")), "unknown"),
        "birthDate": record["BirthDate"],
    }
    return envelope.model_copy(update={"data": patient, "datacontenttype": FHIR_JSON})
