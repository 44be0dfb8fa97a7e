"""Python steps of the SaaS sync example (the project folder is on the import path).

HubSpot sends its changes as batches of ``contact.propertyChange`` events. What this sync does
with one batch is decided here, per event:

* an event whose ``sourceId`` is esb's own HubSpot app is the echo of a write esb made: it is
  not synced back (loop prevention; the Salesforce side filters its echoes in the SOQL query);
* Salesforce owns ``email`` (the system of record for identity): a person changing it in
  HubSpot is a conflict, reported to Slack and not synced;
* other mapped properties become fields of one Salesforce upsert per contact.
"""

from __future__ import annotations

import os
from typing import Any

from esb.bus.envelope import Envelope
from esb.bus.errors import DropEnvelope

#: esb's private app in HubSpot: what it writes comes back with this ``sourceId``.
APP_ID = os.environ.get("HUBSPOT_APP_ID", "4242")
#: HubSpot property → Salesforce Contact field, for the properties HubSpot may change.
TO_SALESFORCE = {"firstname": "FirstName", "lastname": "LastName", "phone": "Phone",
                 "jobtitle": "Title"}
#: Properties Salesforce owns: a change made in HubSpot is a conflict.
OWNED_BY_SALESFORCE = {"email"}


def _events(envelope: Envelope) -> list[dict[str, Any]]:
    data = envelope.data
    return [e for e in (data if isinstance(data, list) else [data]) if isinstance(e, dict)]


def _from_people(envelope: Envelope) -> list[dict[str, Any]]:
    return [e for e in _events(envelope) if str(e.get("sourceId")) != APP_ID]


def salesforce_upserts(envelope: Envelope) -> dict[str, Any]:
    """The batch → the body of Salesforce's composite upsert on ``HubSpot_Id__c``."""
    records: dict[str, dict[str, Any]] = {}
    for event in _from_people(envelope):
        field = TO_SALESFORCE.get(str(event.get("propertyName")))
        if field is None:
            continue
        key = str(event["objectId"])
        record = records.setdefault(key, {"attributes": {"type": "Contact"},
                                          "HubSpot_Id__c": key})
        record[field] = event.get("propertyValue")
    if not records:
        raise DropEnvelope("nothing to sync: esb's own writes, or properties Salesforce owns")
    return {"allOrNone": False, "records": list(records.values())}


def conflict_message(envelope: Envelope) -> dict[str, Any]:
    """Changes people made in HubSpot to properties Salesforce owns → a Slack message."""
    lines = [f"• contact {e['objectId']}: `{e['propertyName']}` changed to "
             f"`{e.get('propertyValue')}` in HubSpot" for e in _from_people(envelope)
             if e.get("propertyName") in OWNED_BY_SALESFORCE]
    if not lines:
        raise DropEnvelope("no conflicting change in this batch")
    text = ("Sync conflict: Salesforce owns these fields, so the HubSpot change was not "
            "synced. Fix it in Salesforce (it will flow to HubSpot) or undo it in HubSpot.\n"
            + "\n".join(lines))
    return {"text": text}
