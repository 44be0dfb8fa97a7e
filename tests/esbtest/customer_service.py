"""The legacy customer service the request/reply tests call: the one examples/customer-facade
ships as its fake (a spyne SOAP 1.1 ``GetCustomer``, faults for unknown ids, ids 700-799 slow,
every call recorded with its Idempotency-Key)."""

from __future__ import annotations

from pathlib import Path

from esbtest.examples import load_fakes

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "customer-facade"

CustomerPeer = load_fakes(EXAMPLE).LegacyCrm
