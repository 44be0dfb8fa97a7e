"""Fake versions of the three SaaS systems this example keeps in step, behaving like the real
APIs where it matters to a sync: OAuth, query-language polling, upserts on external ids, signed
webhooks for every change (the ones an integration made included) and their error shapes.

    python fakes.py                  # serve them on their default ports (see PORTS), with two
                                     # linked contacts, and print every change
    python fakes.py edit-crm 0035g00000AdaLov Title=CTO        # a person edits Salesforce
    python fakes.py edit-hubspot 501 phone="+1 217 555 0199"   # a person edits HubSpot

- Salesforce-style CRM: ``POST /services/oauth2/token`` (client credentials), ``GET
  /services/data/v60.0/query?q=<SOQL>`` (a SOQL subset: ``SELECT`` fields ``FROM Contact WHERE
  SystemModstamp > <datetime> [AND LastModifiedById != '<id>'] ORDER BY SystemModstamp [LIMIT
  n]``), ``PATCH /services/data/v60.0/composite/sobjects/Contact/HubSpot_Id__c`` (upsert on an
  external id, up to 200 records). A write through the API is stamped with the integration
  user as ``LastModifiedById``; errors are Salesforce's ``[{"message", "errorCode"}]``.
- HubSpot-style CRM: bearer private-app token, ``POST /crm/v3/objects/contacts/batch/upsert``
  (``idProperty`` a unique property such as ``salesforce_id``); every property change is sent as
  a ``contact.propertyChange`` webhook, signed with HubSpot's v3 scheme, in batches, with
  ``changeSource`` ``INTEGRATION`` and the app's id as ``sourceId`` when an app made it.
- Slack-style incoming webhook: ``POST /services/T.../B.../...`` with ``{"text": ...}``;
  ``invalid_payload`` / ``no_text`` as Slack answers them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import os
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from esb.adapters.testing.peers import PeerServer

PORTS = {"salesforce": 9201, "hubspot": 9202, "slack": 9203}
SF_CLIENT_ID = os.environ.get("SF_CLIENT_ID", "3MVG9-example-consumer-key")
SF_CLIENT_SECRET = os.environ.get("SF_CLIENT_SECRET", "sf-example-consumer-secret")
#: The user a connected app's client-credentials flow runs as: what esb writes is stamped so.
SF_INTEGRATION_USER = "0055g00000EsbSyn"
SF_HUMAN_USER = "0055g00000AdaUsr"
HUBSPOT_TOKEN = os.environ.get("HUBSPOT_TOKEN", "pat-na1-example-only")
HUBSPOT_CLIENT_SECRET = os.environ.get("HUBSPOT_CLIENT_SECRET", "hs-example-client-secret")
HUBSPOT_APP_ID = 4242   # the private app esb uses: its writes come back with this sourceId
SLACK_PATH = "/services/T0000EXAMPLE/B0000EXAMPLE/exampleexampleexample0000"
API = "/services/data/v60.0"


def sf_now() -> str:
    """A timestamp as Salesforce's REST API writes it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{datetime.now(UTC).microsecond // 1000:03d}+0000"


def sf_parse(value: str) -> datetime:
    """A SOQL datetime literal or a REST timestamp (``Z``, ``+00:00`` or ``+0000``)."""
    value = value.strip().replace("Z", "+00:00")
    value = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", value)
    return datetime.fromisoformat(value)


# -- Salesforce --------------------------------------------------------------------------------

_SOQL = re.compile(
    r"^SELECT (?P<fields>[\w, ]+) FROM Contact WHERE SystemModstamp > (?P<since>\S+)"
    r"(?: AND LastModifiedById != '(?P<not_by>\w+)')? ORDER BY SystemModstamp(?: ASC)?"
    r"(?: LIMIT (?P<limit>\d+))?$", re.IGNORECASE)


def _sf_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse([{"message": message, "errorCode": code}], status)


@dataclass
class FakeSalesforce:
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: records written through the API (by esb), in order
    api_writes: list[dict[str, Any]] = field(default_factory=list)
    tokens_issued: int = 0
    queries: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/services/oauth2/token", self.token, methods=["POST"]),
            Route(f"{API}/query", self.query, methods=["GET"]),
            Route(f"{API}/composite/sobjects/Contact/HubSpot_Id__c", self.upsert,
                  methods=["PATCH"]),
        ])

    def seed(self, id: str, **fields: Any) -> None:
        self.contacts[id] = {"Id": id, **fields, "SystemModstamp": sf_now(),
                             "LastModifiedById": SF_HUMAN_USER}

    def human_edit(self, id: str, **fields: Any) -> None:
        """A person changes a contact in the CRM's own screens."""
        with self._lock:
            time.sleep(0.002)  # distinct SystemModstamps
            self.contacts[id].update(fields, SystemModstamp=sf_now(),
                                     LastModifiedById=SF_HUMAN_USER)

    async def token(self, request: Request) -> Response:
        form = parse_qs((await request.body()).decode())
        if form.get("grant_type") != ["client_credentials"]:
            return JSONResponse({"error": "unsupported_grant_type",
                                 "error_description": "grant type not supported"}, 400)
        if (form.get("client_id"), form.get("client_secret")) != ([SF_CLIENT_ID],
                                                                   [SF_CLIENT_SECRET]):
            return JSONResponse({"error": "invalid_client",
                                 "error_description": "invalid client credentials"}, 400)
        token = "00D5g000004Example!" + uuid.uuid4().hex
        self._tokens.add(token)
        self.tokens_issued += 1
        base = str(request.base_url).rstrip("/")
        return JSONResponse({"access_token": token, "instance_url": base,
                             "id": f"{base}/id/00D5g000004Example/{SF_INTEGRATION_USER}",
                             "token_type": "Bearer", "issued_at": str(int(time.time() * 1000)),
                             "signature": base64.b64encode(os.urandom(32)).decode()})

    def _authorized(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self._tokens

    async def query(self, request: Request) -> Response:
        if not self._authorized(request):
            return _sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        soql = " ".join(request.query_params.get("q", "").split())
        self.queries.append(soql)
        match = _SOQL.match(soql)
        if not match:
            return _sf_error(400, "MALFORMED_QUERY", f"unexpected query: {soql[:200]}")
        try:
            since = sf_parse(match["since"])
        except ValueError:
            return _sf_error(400, "MALFORMED_QUERY", f"value of filter criterion for field "
                             f"'SystemModstamp' must be of type dateTime: {match['since']}")
        fields = [f.strip() for f in match["fields"].split(",")]
        with self._lock:
            rows = sorted((c for c in self.contacts.values()
                           if sf_parse(c["SystemModstamp"]) > since
                           and c["LastModifiedById"] != match["not_by"]),
                          key=lambda c: c["SystemModstamp"])
        rows = rows[:int(match["limit"] or 2000)]
        records = [{"attributes": {"type": "Contact",
                                   "url": f"{API}/sobjects/Contact/{c['Id']}"},
                    **{f: c.get(f) for f in fields}} for c in rows]
        return JSONResponse({"totalSize": len(records), "done": True, "records": records})

    async def upsert(self, request: Request) -> Response:
        if not self._authorized(request):
            return _sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        try:
            body = json.loads(await request.body())
            records = body["records"]
            assert isinstance(records, list) and 0 < len(records) <= 200
        except (ValueError, KeyError, AssertionError):
            return _sf_error(400, "JSON_PARSER_ERROR", "records must be a list of 1 to 200")
        results = []
        with self._lock:
            for record in records:
                key = record.get("HubSpot_Id__c")
                if not key:
                    results.append({"success": False, "errors": [{
                        "statusCode": "REQUIRED_FIELD_MISSING", "message":
                        "Required fields are missing: [HubSpot_Id__c]",
                        "fields": ["HubSpot_Id__c"]}]})
                    continue
                fields = {k: v for k, v in record.items() if k != "attributes"}
                existing = next((c for c in self.contacts.values()
                                 if c.get("HubSpot_Id__c") == key), None)
                created = existing is None
                if existing is None:
                    existing = {"Id": f"0035g{next(self._ids):010d}"}
                    self.contacts[existing["Id"]] = existing
                existing.update(fields, SystemModstamp=sf_now(),
                                LastModifiedById=SF_INTEGRATION_USER)
                self.api_writes.append(dict(fields))
                results.append({"id": existing["Id"], "success": True, "errors": [],
                                "created": created})
        return JSONResponse(results)


# -- HubSpot -----------------------------------------------------------------------------------

def hubspot_signature(secret: str, method: str, url: str, body: bytes, ts_ms: int) -> str:
    source = method.encode() + url.encode() + body + str(ts_ms).encode()
    return base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()


@dataclass
class FakeHubSpot:
    #: where change webhooks go (esb's webhook source)
    webhook_url: str | None = None
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    api_writes: list[dict[str, Any]] = field(default_factory=list)
    #: (status, events) of every webhook delivery attempt
    deliveries: list[tuple[int, list[dict[str, Any]]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._events = itertools.count(1000)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/crm/v3/objects/contacts/batch/upsert", self.upsert,
                                       methods=["POST"])])

    def seed(self, id: str, **properties: Any) -> None:
        self.contacts[id] = {"id": id, "properties": dict(properties)}

    def user_edit(self, id: str, **properties: Any) -> None:
        """A person changes a contact in the CRM's own screens."""
        self._change(id, properties, source="CRM_UI", source_id="userId:7001")

    def _change(self, id: str, properties: dict[str, Any], source: str,
                source_id: str) -> None:
        with self._lock:
            contact = self.contacts[id]["properties"]
            changed = {k: v for k, v in properties.items() if contact.get(k) != v}
            contact.update(changed)
        if changed:
            now = int(time.time() * 1000)
            self._send([{"eventId": next(self._events), "subscriptionId": 3101,
                         "portalId": 62515, "appId": HUBSPOT_APP_ID, "occurredAt": now,
                         "subscriptionType": "contact.propertyChange", "attemptNumber": 0,
                         "objectId": int(id), "changeSource": source, "sourceId": source_id,
                         "propertyName": name, "propertyValue": value}
                        for name, value in changed.items()])

    def _send(self, events: list[dict[str, Any]]) -> None:
        if not self.webhook_url:
            return
        url = self.webhook_url

        def deliver() -> None:
            body = json.dumps(events).encode()
            for attempt in range(5):  # HubSpot retries failed deliveries
                ts = int(time.time() * 1000)
                headers = {"Content-Type": "application/json",
                           "X-HubSpot-Signature-v3": hubspot_signature(
                               HUBSPOT_CLIENT_SECRET, "POST", url, body, ts),
                           "X-HubSpot-Request-Timestamp": str(ts)}
                try:
                    status = httpx.post(url, content=body, headers=headers, timeout=10
                                        ).status_code
                except httpx.HTTPError:
                    status = 0
                self.deliveries.append((status, events))
                if 200 <= status < 300 or status == 409:
                    return
                time.sleep(0.5 * (attempt + 1))

        threading.Thread(target=deliver, daemon=True).start()

    async def upsert(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {HUBSPOT_TOKEN}":
            return JSONResponse({"status": "error", "category": "INVALID_AUTHENTICATION",
                                 "message": "Authentication credentials not found."}, 401)
        try:
            inputs = json.loads(await request.body())["inputs"]
            assert isinstance(inputs, list) and inputs
        except (ValueError, KeyError, TypeError, AssertionError):
            return JSONResponse({"status": "error", "category": "VALIDATION_ERROR",
                                 "message": "Invalid input JSON: inputs is required"}, 400)
        results = []
        for item in inputs:
            prop, key = item.get("idProperty"), item.get("id")
            if prop not in ("salesforce_id", "email") or not key:
                return JSONResponse({"status": "error", "category": "VALIDATION_ERROR",
                                     "message": f"idProperty {prop!r} is not a unique "
                                                "property"}, 400)
            properties = {k: v for k, v in (item.get("properties") or {}).items()
                          if v is not None}
            with self._lock:
                found = next((c for c in self.contacts.values()
                              if c["properties"].get(prop) == key), None)
                if found is None:
                    found = {"id": str(600 + len(self.contacts)),
                             "properties": {prop: key}}
                    self.contacts[found["id"]] = found
                self.api_writes.append(dict(properties))
            self._change(found["id"], properties, source="INTEGRATION",
                         source_id=str(HUBSPOT_APP_ID))
            results.append({"id": found["id"], "properties": found["properties"],
                            "new": False})
        return JSONResponse({"status": "COMPLETE", "results": results,
                             "startedAt": sf_now(), "completedAt": sf_now()})


# -- Slack -------------------------------------------------------------------------------------

@dataclass
class FakeSlack:
    messages: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(routes=[Route(SLACK_PATH, self.post, methods=["POST"])])

    async def post(self, request: Request) -> Response:
        try:
            message = json.loads(await request.body())
        except ValueError:
            return PlainTextResponse("invalid_payload", 400)
        if not isinstance(message, dict) or not (message.get("text") or message.get("blocks")):
            return PlainTextResponse("no_text", 400)
        self.messages.append(message)
        return PlainTextResponse("ok")


def seeded() -> tuple[FakeSalesforce, FakeHubSpot, FakeSlack]:
    """The three systems with two contacts linked both ways (as after an initial load)."""
    sf, hs, slack = FakeSalesforce(), FakeHubSpot(), FakeSlack()
    sf.seed("0035g00000AdaLov", FirstName="Ada", LastName="Lovelace", Email="ada@example.com",
            Phone="+1 217 555 0100", Title="Analyst", HubSpot_Id__c="501")
    sf.seed("0035g00000GraHop", FirstName="Grace", LastName="Hopper",
            Email="grace@example.com", Phone="+1 217 555 0101", Title="Engineer",
            HubSpot_Id__c="502")
    hs.seed("501", email="ada@example.com", firstname="Ada", lastname="Lovelace",
            phone="+1 217 555 0100", jobtitle="Analyst", salesforce_id="0035g00000AdaLov")
    hs.seed("502", email="grace@example.com", firstname="Grace", lastname="Hopper",
            phone="+1 217 555 0101", jobtitle="Engineer", salesforce_id="0035g00000GraHop")
    return sf, hs, slack


def serve_all() -> None:
    sf, hs, slack = seeded()
    hs.webhook_url = os.environ.get("ESB_URL", "http://127.0.0.1:8080") + "/hooks/hubspot"
    with PeerServer(sf.app(), PORTS["salesforce"]), PeerServer(hs.app(), PORTS["hubspot"]), \
            PeerServer(slack.app(), PORTS["slack"]), \
            PeerServer(control_app(sf, hs), PORTS["salesforce"] + 100):
        print("fake Salesforce :9201  HubSpot :9202  Slack :9203  (edits: :9301)", flush=True)
        seen = (0, 0, 0)
        try:
            while True:
                time.sleep(0.5)
                now = (len(sf.api_writes), len(hs.api_writes), len(slack.messages))
                if now != seen:
                    print(f"esb wrote {now[0]} Salesforce and {now[1]} HubSpot records; "
                          f"{now[2]} Slack messages", flush=True)
                    for message in slack.messages[seen[2]:]:
                        print("  slack:", message.get("text"), flush=True)
                    seen = now
        except KeyboardInterrupt:
            pass


def control_app(sf: FakeSalesforce, hs: FakeHubSpot) -> Starlette:
    """``POST /edit/{crm|hubspot}/{id}`` with a JSON object: a person's edit (for the CLI)."""

    async def edit(request: Request) -> Response:
        changes = json.loads(await request.body())
        target, id = request.path_params["target"], request.path_params["id"]
        (sf.human_edit if target == "crm" else hs.user_edit)(id, **changes)
        return Response(status_code=204)

    return Starlette(routes=[Route("/edit/{target}/{id}", edit, methods=["POST"])])


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] in ("edit-crm", "edit-hubspot"):
        changes = dict(arg.split("=", 1) for arg in sys.argv[3:])
        target = "crm" if sys.argv[1] == "edit-crm" else "hubspot"
        httpx.post(f"http://127.0.0.1:{PORTS['salesforce'] + 100}/edit/{target}/{sys.argv[2]}",
                   json=changes, timeout=10).raise_for_status()
    else:
        serve_all()
