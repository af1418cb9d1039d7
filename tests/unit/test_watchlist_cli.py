"""`rctc watchlist`: expiries, import files and their problems, the command line's shape. No I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.cli.devrun import ROOT
from services.cli.main import _parser
from services.cli.settings import CliSettings
from services.cli.watchlist import entries_of, parse_expiry, read_rows
from services.common.normalise import comparable_values
from services.common.records import utcnow
from services.demo.feed import SCENARIOS
from services.enricher.enrich import normalised
from services.gateway.submission import parse_submission

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        (None, None),
        ("", None),
        ("never", None),
        ("90d", NOW + timedelta(days=90)),
        ("12h", NOW + timedelta(hours=12)),
        ("30m", NOW + timedelta(minutes=30)),
        ("2027-01-01T00:00:00+03:00", datetime(2026, 12, 31, 21, 0, tzinfo=UTC)),
        ("2027-01-01T12:00:00.123456Z", datetime(2027, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)),
    ],
)
def test_an_expiry_is_a_time_a_duration_or_none(written: str | None, expected: datetime | None) -> None:
    """Durations count from now; times are kept in UTC to the millisecond Avro stores."""
    assert parse_expiry(written, NOW) == expected


def test_an_expiry_without_a_zone_is_local_and_junk_is_refused() -> None:
    """A time without a zone is the machine's local time; anything else is a ValueError."""
    local = datetime(2027, 1, 1, 12, 0).astimezone()
    assert parse_expiry("2027-01-01T12:00", NOW) == local.astimezone(UTC)
    for junk in ("soon", "90 days", "-5d", "1w"):
        with pytest.raises(ValueError):
            parse_expiry(junk, NOW)


def test_a_csv_import_becomes_entries_by_key() -> None:
    """Header, quoted cells, a default reason for a row without one, an expiry; each value normalised."""
    text = (
        "kind,value,reason,expires\n"
        'phone,"+964 770 123 4567",courier,90d\n'
        "domain,relay[.]example,,\n"
        'name,"Rahmani, Khalid",case 114,2027-06-01T00:00:00+00:00\n'
    )
    rows, wrong = read_rows(text, "csv")
    entries, more = entries_of(rows, added_by="operator-cli", now=NOW, default_reason="partner list 7")
    assert (wrong, more) == ([], [])
    assert {k: (e.value, e.reason, e.expires_at) for k, e in entries.items()} == {
        "phone:+9647701234567": ("+964 770 123 4567", "courier", NOW + timedelta(days=90)),
        "domain:relay.example": ("relay[.]example", "partner list 7", None),
        "name:khalid rahmani": ("Rahmani, Khalid", "case 114", datetime(2027, 6, 1, tzinfo=UTC)),
    }
    assert {e.added_by for e in entries.values()} == {"operator-cli"}


def test_a_json_lines_import_and_every_problem_by_line() -> None:
    """Bad lines are each named with their number, and a value given twice in two spellings is refused."""
    text = "\n".join(
        [
            '{"kind": "ip", "value": "10.0.0[.]1", "reason": "c2"}',
            "",
            "not json",
            '{"kind": "ip", "value": "10.0.0.1", "reason": "again"}',
            '{"kind": "ip", "value": 7, "reason": "x"}',
            '{"kind": "passport", "value": "A1", "reason": "x"}',
            '{"kind": "ip", "value": "10.0.0.2", "reason": "x", "expiry": "1d"}',
            '{"kind": "ip", "value": "10.0.0.3", "expires": "tomorrow"}',
        ]
    )
    rows, wrong = read_rows(text, "jsonl")
    entries, more = entries_of(rows, added_by="operator-cli", now=NOW)
    assert list(entries) == ["ip:10.0.0.1"]
    assert [p.split(":")[0] for p in wrong + more] == [
        "line 3",
        "line 5",
        "line 7",
        "line 4",
        "line 6",
        "line 8",
    ]
    assert "ip:10.0.0.1 again (line 1)" in more[0]
    assert "neither an ISO 8601 time nor a duration" in more[2]


def test_a_csv_header_must_name_the_columns() -> None:
    """A misspelt or missing column is refused before any row is read: `expiry` must not be ignored."""
    for header in ("kind,value,reason,expiry", "kind,value", "value,reason"):
        rows, wrong = read_rows(header + "\nip,10.0.0.1,x,1d\n", "csv")
        assert (rows, len(wrong)) == ([], 1)
    rows, wrong = read_rows("kind,value,reason\nip,10.0.0.1,x,extra\n", "csv")
    assert (rows, wrong) == ([], ["line 2: more cells than the header has columns"])


def test_the_command_line_takes_only_known_kinds_and_needs_a_reason() -> None:
    """`add` refuses an unknown kind and a missing --reason at parse time; the four actions exist."""
    parser = _parser(CliSettings())
    args = parser.parse_args(["watchlist", "add", "phone", "+964 770", "--reason", "r", "--expires", "30d"])
    assert (args.kind, args.value, args.reason, args.expires) == ("phone", "+964 770", "r", "30d")
    for argv in (["watchlist", "add", "passport", "A1", "--reason", "r"], ["watchlist", "add", "ip", "10.0.0.1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
    for action in (["remove", "ip", "10.0.0.1"], ["import", "f.csv"], ["list"]):
        assert callable(parser.parse_args(["watchlist", *action]).run)


def test_a_time_zone_offset_is_kept_as_the_same_instant() -> None:
    """An expiry written in another zone is the same instant in UTC."""
    at = parse_expiry("2027-03-01T08:00:00+05:30", NOW)
    assert at == datetime(2027, 3, 1, 8, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert at is not None and at.tzinfo == UTC


def test_the_demo_watchlist_imports_and_each_entry_meets_a_demo_alert() -> None:
    """`make run` imports deploy/registry/demo-watchlist.csv: it has no problem, and every entry is carried by
    one of the demo feed's alerts, so the demo shows hits."""
    rows, wrong = read_rows((ROOT / "deploy" / "registry" / "demo-watchlist.csv").read_text(), "csv")
    entries, more = entries_of(rows, added_by="admin", now=NOW)
    carried = set()
    for _, body in SCENARIOS:
        alert, _ = normalised(parse_submission(json.dumps(body).encode(), now=utcnow()))
        carried |= {f"{kind}:{value}" for kind, value in comparable_values(alert)}
    assert (wrong, more, len(entries)) == ([], [], 3)
    assert set(entries) <= carried
