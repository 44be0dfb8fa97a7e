"""Signature schemes against the providers' published test vectors and, for Stripe, the
official stripe library's own signing and verification."""

from __future__ import annotations

import hmac

import pytest
import stripe

from esb.adapters.webhook.signatures import (
    GithubVerifier,
    HmacVerifier,
    SignatureError,
    StandardVerifier,
    StripeVerifier,
    TimestampError,
    decode_standard_secret,
    sign_standard,
    sign_stripe,
)

# Standard Webhooks specification example
STD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STD_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
STD_TS = 1614265330
STD_BODY = b'{"test": 2432232314}'
STD_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

# GitHub documentation example
GH_SECRET = "It's a Secret to Everybody"
GH_BODY = b"Hello, World!"
GH_SIG = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

# Stripe: headers are made and checked by the official stripe library (stripe.WebhookSignature),
# not by our own formula; the body is not ASCII so the bytes/text handling is exercised too.
STRIPE_SECRET = "whsec_test_secret"
STRIPE_TS = 1_700_000_000
STRIPE_BODY = '{"id":"evt_1","type":"invoice.paid","city":"Zürich"}'.encode()


def std_headers(sig: str = STD_SIG, ts: int = STD_TS) -> dict[str, str]:
    return {"webhook-id": STD_ID, "webhook-timestamp": str(ts), "webhook-signature": sig}


def test_standard_vector_signs() -> None:
    assert sign_standard(decode_standard_secret(STD_SECRET), STD_ID, STD_TS, STD_BODY) == STD_SIG


def test_standard_vector_verifies() -> None:
    verified = StandardVerifier([STD_SECRET], 300).verify(std_headers(), STD_BODY, STD_TS)
    assert verified.delivery_id == STD_ID
    assert verified.timestamp == STD_TS


def test_standard_accepts_any_of_several_signatures_and_secrets() -> None:
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUA=="
    headers = std_headers(sig="v1,bm90LWEtc2lnbmF0dXJl " + STD_SIG)
    assert StandardVerifier([other, STD_SECRET], 300).verify(headers, STD_BODY, STD_TS)


@pytest.mark.parametrize("body", [b'{"test": 2432232315}', STD_BODY + b" "])
def test_standard_tampered_body(body: bytes) -> None:
    with pytest.raises(SignatureError):
        StandardVerifier([STD_SECRET], 300).verify(std_headers(), body, STD_TS)


@pytest.mark.parametrize("now", [STD_TS + 301, STD_TS - 301])
def test_standard_stale_and_future(now: int) -> None:
    with pytest.raises(TimestampError):
        StandardVerifier([STD_SECRET], 300).verify(std_headers(), STD_BODY, now)


def test_standard_missing_header() -> None:
    headers = std_headers()
    del headers["webhook-signature"]
    with pytest.raises(SignatureError, match="webhook-signature"):
        StandardVerifier([STD_SECRET], 300).verify(headers, STD_BODY, STD_TS)


def test_github_vector() -> None:
    verifier = GithubVerifier([GH_SECRET])
    headers = {"x-hub-signature-256": GH_SIG, "x-github-delivery": "d-1"}
    assert verifier.verify(headers, GH_BODY, 0).delivery_id == "d-1"
    with pytest.raises(SignatureError):
        verifier.verify(headers, b"Hello, World?", 0)


def stripe_header(body: bytes = STRIPE_BODY, ts: int = STRIPE_TS) -> dict[str, str]:
    """A ``Stripe-Signature`` header computed by the official stripe library."""
    value = stripe.WebhookSignature.generate_signature_header(body.decode(), STRIPE_SECRET,
                                                               timestamp=ts)
    return {"stripe-signature": value}


def test_stripe_library_header_verifies_among_rotated_secrets() -> None:
    verifier = StripeVerifier(["whsec_old", STRIPE_SECRET], 300)
    assert verifier.verify(stripe_header(), STRIPE_BODY, STRIPE_TS + 10).timestamp == STRIPE_TS


def test_stripe_library_header_with_extra_schemes_verifies() -> None:
    # Stripe adds a v0 signature in test mode and several v1 ones while a secret rolls.
    value = stripe_header()["stripe-signature"] + ",v1=" + "0" * 64 + ",v0=" + "1" * 64
    verifier = StripeVerifier([STRIPE_SECRET], 300)
    verified = verifier.verify({"stripe-signature": value}, STRIPE_BODY, STRIPE_TS)
    assert verified.timestamp == STRIPE_TS


@pytest.mark.parametrize("body", [STRIPE_BODY.replace(b"evt_1", b"evt_2"), STRIPE_BODY + b" "])
def test_stripe_library_header_rejects_a_tampered_body(body: bytes) -> None:
    with pytest.raises(SignatureError):
        StripeVerifier([STRIPE_SECRET], 300).verify(stripe_header(), body, STRIPE_TS)


def test_stripe_library_header_rejects_a_moved_timestamp_and_a_wrong_secret() -> None:
    value = stripe_header()["stripe-signature"].replace(f"t={STRIPE_TS}", f"t={STRIPE_TS + 1}")
    with pytest.raises(SignatureError):
        StripeVerifier([STRIPE_SECRET], 300).verify({"stripe-signature": value}, STRIPE_BODY,
                                                    STRIPE_TS)
    with pytest.raises(SignatureError):
        StripeVerifier(["whsec_other"], 300).verify(stripe_header(), STRIPE_BODY, STRIPE_TS)


@pytest.mark.parametrize("now", [STRIPE_TS + 301, STRIPE_TS - 301])
def test_stripe_library_header_outside_the_tolerance(now: int) -> None:
    with pytest.raises(TimestampError):
        StripeVerifier([STRIPE_SECRET], 300).verify(stripe_header(), STRIPE_BODY, now)


def test_our_stripe_signature_verifies_with_the_stripe_library() -> None:
    header = f"t={STRIPE_TS},v1={sign_stripe(STRIPE_SECRET, STRIPE_TS, STRIPE_BODY)}"
    assert stripe.WebhookSignature.verify_header(STRIPE_BODY, header, STRIPE_SECRET,
                                                 tolerance=None)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(STRIPE_BODY + b" ", header, STRIPE_SECRET,
                                              tolerance=None)


@pytest.mark.parametrize(("algorithm", "encoding", "prefix"), [
    ("sha1", "hex", "sha1="), ("sha256", "base64", ""), ("sha512", "hex", "")])
def test_generic_hmac(algorithm: str, encoding: str, prefix: str) -> None:
    import base64

    digest = hmac.digest(b"s3cret", b"payload", algorithm)
    value = prefix + (digest.hex() if encoding == "hex" else base64.b64encode(digest).decode())
    verifier = HmacVerifier(["s3cret"], header="X-Sig", algorithm=algorithm, encoding=encoding,
                            prefix=prefix, tolerance=300, timestamp_header=None,
                            id_header="X-Id")
    verified = verifier.verify({"x-sig": value, "x-id": "abc"}, b"payload", 0)
    assert verified.delivery_id == "abc"
    with pytest.raises(SignatureError):
        verifier.verify({"x-sig": value}, b"payloaD", 0)
