"""An alert submission, over HTTP or over Kafka, to the record the gateway produces or its refusal. Pure: no I/O.

    outcome = admit(agency, body, key, now=utcnow(), keys=key_guard, max_body_bytes=256 * 1024)
    if isinstance(outcome, Refused):    # HTTP answers outcome.status with its body; Kafka writes SubmissionRejected
        ...
    else:                               # produce outcome.record to alerts.submitted, keyed outcome.partition_key
        ...

Both channels call this one function, so a body gets the same verdict, the same error code and the same
problems (each at its JSON path) whichever way it came (issue 14: "validated exactly as the HTTP path
validates"). In order, the first rule that holds answers:

| rule                                                          | status | error                   |
|---------------------------------------------------------------|--------|-------------------------|
| the body is larger than the gateway accepts                   | 413    | too_large               |
| the body is not JSON                                          | 400    | malformed_json          |
| the alert breaks a rule of submission.py (every problem told) | 422    | invalid_alert           |
| the key is missing where one is required (Kafka), or it is    | 400    | bad_idempotency_key     |
|   not 1 to 255 characters                                     |        |                         |
| the key was used with a different body (best effort, per      | 422    | idempotency_key_reused  |
|   replica: idempotency.py)                                    |        |                         |
| otherwise: accepted, the alert id derived from (agency, key)  |        |                         |

Over HTTP aiohttp itself refuses a body over the limit before the handler runs, with the same answer; over
Kafka the topic's `max.message.bytes` lets a little more through (AGENCY_SUBMISSION_MAX_BYTES) and this
rule refuses it. What only one channel has stays with it: over HTTP an operator may not submit (403) and
the body must be `application/json` (415); over Kafka the record must decode as a SubmitAlert.

A suspended agency is refused before any of this (`suspended`), by the HTTP middleware for every request
and by the Kafka consumer for every record it reads from that agency's topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.common.records import AlertSubmitted
from services.gateway.idempotency import KeyReuseGuard, alert_id_for
from services.gateway.submission import InvalidSubmission, parse_submission

MAX_KEY_CHARS = 255


@dataclass(frozen=True)
class Refused:
    """The error body both channels give: `{"error": error, "message": message, "problems": [...]}`."""

    status: int
    error: str
    message: str
    problems: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Accepted:
    record: AlertSubmitted
    # An Update or Cancel is keyed by the alert it updates, so the whole thread stays in order on one
    # partition and reaches the router partition that knows what each agency holds of the thread.
    partition_key: bytes


def suspended(agency: str) -> Refused:
    return Refused(403, "agency_suspended", f"{agency} is suspended in the registry: it may not use the exchange")


def admit(
    agency: str,
    body: bytes,
    key: str | None,
    *,
    now: datetime,
    keys: KeyReuseGuard,
    max_body_bytes: int,
    key_required: bool = False,
) -> Accepted | Refused:
    """The verdict on `agency` submitting `body` with idempotency key `key` (the rules in the table above)."""
    if len(body) > max_body_bytes:
        return Refused(413, "too_large", "the body is larger than the gateway accepts")
    try:
        alert = parse_submission(body, now=now)
    except InvalidSubmission as exc:
        if exc.malformed:
            return Refused(400, "malformed_json", exc.problems[0][1])
        return Refused(422, "invalid_alert", "the alert was not accepted", tuple(exc.problems))
    if key is None and key_required:
        return Refused(
            400,
            "bad_idempotency_key",
            f"a submission over Kafka needs a record key, 1 to {MAX_KEY_CHARS} characters of UTF-8: "
            "it is the submission's Idempotency-Key",
        )
    if key is not None and not 1 <= len(key) <= MAX_KEY_CHARS:
        return Refused(400, "bad_idempotency_key", f"an Idempotency-Key has 1 to {MAX_KEY_CHARS} characters")
    if key is not None and not _is_text(key):
        # A header's bytes that are not UTF-8 reach us as surrogates, which no record can carry.
        return Refused(400, "bad_idempotency_key", "an Idempotency-Key is UTF-8 text")
    if key is not None and keys.conflicts(agency, key, body):
        return Refused(422, "idempotency_key_reused", "this Idempotency-Key was used for a different alert")
    alert_id = alert_id_for(agency, key)
    record = AlertSubmitted(alert_id=alert_id, origin=agency, submitted_at=now, idempotency_key=key, alert=alert)
    thread = alert.references[0] if alert.msg_type != "Alert" else alert_id
    return Accepted(record, thread.encode())


def _is_text(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def record_key(raw: bytes | None) -> str | None:
    """A Kafka record key as an idempotency key: its UTF-8 text, or None (missing, or not UTF-8)."""
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
