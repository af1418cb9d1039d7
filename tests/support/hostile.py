"""Hostile spellings of path parameters, shared by the unit and the integration tests of the trust boundary."""

from __future__ import annotations


def tricks(alert_id: str, other_id: str, agency: str) -> list[str]:
    """Path segments as sent on the wire (percent-escapes kept), each standing where `alert_id` goes: every
    trick of issue 13 (encoded ?, /, .., #, NUL, &) and its relatives. `other_id` is an alert the caller may
    not see; `agency` is one the caller is not."""
    return [
        f"{alert_id}%3Fviewer_kind%3Doperator%26viewer%3Ddesk",  # ?  (the operator view)
        f"{alert_id}%3Fviewer_kind=operator&viewer=desk",
        f"{alert_id}%2Frouting%3Fviewer_kind%3Doperator%26viewer%3Ddesk",  # /  (the routing decision)
        "..%2Foutstanding%3F",  # .. (every agency's outstanding acks)
        "..%2F..%2Finternal%2Foutstanding",
        "%2E%2E%2Foutstanding",
        "..",
        "%2E%2E",
        f"{alert_id}%2F..%2F{other_id}",
        f"{alert_id}%2Frecipients%2F{agency}%3F",  # the ack's recipient check as someone else
        f"{alert_id}%2Frecipient%3Fagency%3D{agency}%26x%3D",
        f"{alert_id}%23",  # #
        f"{alert_id}%23viewer_kind%3Doperator",
        f"{alert_id}%00",  # NUL
        f"%00{alert_id}",
        f"{alert_id}%00%3Fviewer_kind%3Doperator%26viewer%3Ddesk",
        f"{alert_id}%26viewer_kind%3Doperator%26viewer%3Ddesk",  # &
        f"{alert_id}&viewer_kind=operator&viewer=desk",
        f"{alert_id}%3B",
        f"{alert_id}%20",
        f"{alert_id}%0A",
        alert_id.upper(),  # another spelling of the same UUID is not the id
        alert_id.replace("-", ""),
        f"%7B{alert_id}%7D",
        f"urn:uuid:{alert_id}",
        f"{alert_id}%25",
        f"{alert_id}%252F..%252Foutstanding",  # double-encoded
    ]
