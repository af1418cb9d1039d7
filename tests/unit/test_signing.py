"""Webhook requests verify with the published `standardwebhooks` library, across a secret rotation."""

from __future__ import annotations

import base64
import secrets

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.common.records import utcnow
from services.dispatcher.signing import signed_headers
from services.router.payload import webhook_id


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def test_receiver_verifies_with_the_library() -> None:
    """A receiver holding the secret verifies the request and gets the JSON body."""
    secret = new_secret()
    body = b'{"type":"alert.created","data":{"alert_id":"a"}}'
    headers = signed_headers(webhook_id("a", "JO-B"), utcnow(), body, [secret])
    assert Webhook(secret).verify(body, headers) == {"type": "alert.created", "data": {"alert_id": "a"}}


def test_both_secrets_verify_during_rotation_and_a_stranger_does_not() -> None:
    """Signed with old and new secrets, the request verifies with either; a third secret fails."""
    old, new = new_secret(), new_secret()
    body = b'{"x":1}'
    headers = signed_headers("msg_1", utcnow(), body, [old, new])
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_tampered_body_fails() -> None:
    """Changing one byte of the body breaks the signature."""
    secret = new_secret()
    headers = signed_headers("msg_1", utcnow(), b'{"x":1}', [secret])
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"x":2}', headers)


def test_webhook_id_is_stable_per_alert_and_recipient() -> None:
    """Retries and re-routing of the same alert to the same agency reuse the id; others differ."""
    assert webhook_id("a", "JO-B") == webhook_id("a", "JO-B")
    assert len({webhook_id("a", "JO-B"), webhook_id("a", "KW-C"), webhook_id("b", "JO-B")}) == 3


def test_no_secret_signs_nothing_rather_than_send_unsigned() -> None:
    """With no secret the headers are refused: a webhook never goes out without a signature."""
    with pytest.raises(ValueError, match="never sent unsigned"):
        signed_headers("msg_1", utcnow(), b"{}", [])
