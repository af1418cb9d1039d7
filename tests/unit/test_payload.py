"""Webhook ids: the uuid5 of (alert, recipient) as every earlier version wrote them (receivers de-duplicate on it)."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from services.router.payload import _NAMESPACE, webhook_id


@given(alert_id=st.text(), agency=st.text())
def test_webhook_id_is_the_uuid5_of_alert_and_recipient(alert_id: str, agency: str) -> None:
    assert webhook_id(alert_id, agency) == f"msg_{uuid.uuid5(_NAMESPACE, f'{alert_id}:{agency}').hex}"
