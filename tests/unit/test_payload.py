"""Webhook ids: the uuid5 of (alert, recipient) as every earlier version wrote them (receivers de-duplicate on it);
webhook requests: a notice is retried on one schedule whatever the version it withdraws or cancels."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import get_args

from hypothesis import given
from hypothesis import strategies as st

from services.common.events import CANCELLED, CREATED, WITHDRAWN
from services.common.records import Urgency
from services.router.payload import _NAMESPACE, notice, recipient_copy, webhook_id, webhook_request
from services.router.policy import Verdict
from tests.unit.samples import enriched, sample_alert

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


@given(alert_id=st.text(), agency=st.text())
def test_webhook_id_is_the_uuid5_of_alert_and_recipient(alert_id: str, agency: str) -> None:
    assert webhook_id(alert_id, agency) == f"msg_{uuid.uuid5(_NAMESPACE, f'{alert_id}:{agency}').hex}"


@given(urgency=st.sampled_from(get_args(Urgency)), event=st.sampled_from([WITHDRAWN, CANCELLED]))
def test_a_notice_is_retried_on_one_schedule_whatever_the_versions_urgency(urgency: Urgency, event: str) -> None:
    """A withdrawal or cancellation notice's webhook request never carries the version's urgency (a side channel)."""
    version = enriched(sample_alert(msg_type="Update", references=["alert-0"], urgency=urgency, tlp="RED"))
    verdict = Verdict("SA-A", True, "withdrawn", "withdrawn: releasable_to names only JO-A", event=event, notice="x")
    request = webhook_request(notice(version, verdict, NOW), urgency, NOW)
    expected: Urgency = "Immediate"  # act now: purge it (payload.NOTICE_URGENCY)
    assert expected == request.urgency


@given(urgency=st.sampled_from(get_args(Urgency)))
def test_a_copy_with_content_is_retried_on_its_versions_urgency(urgency: Urgency) -> None:
    """A copy the agency may read is retried on the schedule of its alert's urgency."""
    version = enriched(sample_alert(urgency=urgency))
    verdict = Verdict("JO-A", True, "shared", "shared under X", agreement_id="X", event=CREATED)
    assert urgency == webhook_request(recipient_copy(version, verdict, NOW), urgency, NOW).urgency
