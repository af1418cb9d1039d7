"""The demo's webhook receivers answer every kind of webhook the system sends (an error is retried forever)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp.test_utils import TestClient, TestServer

from services.demo.receivers import Receivers
from services.dispatcher.signing import signed_headers
from services.tracker.escalation import reminder_for, reminder_webhook
from services.tracker.state import Due
from tests.support.world import new_secret


async def test_a_reminder_is_received_like_an_alert() -> None:
    """A reminder carries no alert content: the receiver once answered it 500 (KeyError 'origin') in make run."""
    secret = new_secret()
    receivers = Receivers({"JO-B": [secret]})
    at = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    due = Due("a1", "JO-B", "IQ-A", 1, at, webhook=True)
    reminder = reminder_webhook(reminder_for(due, at), due, at)
    headers = signed_headers(reminder.webhook_id, datetime.now(UTC), reminder.payload, [secret])
    async with TestClient(TestServer(receivers.app())) as client:
        response = await client.post("/hooks/JO-B", data=reminder.payload, headers=headers)
        assert response.status == 204
    assert receivers.received["JO-B"][reminder.webhook_id]["data"]["reason"] == "ack_overdue"
