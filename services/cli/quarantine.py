"""`rctc quarantine list|show`: the records services set aside because they could not decode or validate
them (services/common/quarantine.py), for an operator to look at.

    rctc quarantine list --topic agency.JO-TAC.acks --limit 20   # the latest entries, one JSON line each
    rctc quarantine show 42                                     # one entry whole: key and value in base64

`OFFSET` is the entry's offset on records.quarantine (one partition), as `list` prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
from collections import deque
from collections.abc import Callable
from typing import Any

from aiokafka import ConsumerRecord

from services.common.codec import Codec
from services.common.errors import CodecError
from services.common.kafka import read_to_end
from services.common.records import Quarantined
from services.common.settings import KafkaSettings
from services.common.topics import RECORDS_QUARANTINE

PREVIEW_BYTES = 32


def add_parser(sub: Any, kafka: Callable[[argparse.Namespace], KafkaSettings]) -> None:
    quarantine = sub.add_parser("quarantine", help="records set aside as unreadable").add_subparsers(metavar="ACTION")
    p = quarantine.add_parser("list", help="the latest quarantined records, one JSON line each")
    p.add_argument("--topic", help="only those from this source topic")
    p.add_argument("--limit", type=int, default=50, help="at most this many, the latest (default 50)")
    p.set_defaults(run=lambda a: asyncio.run(list_quarantined(kafka(a), a.topic, a.limit)))
    p = quarantine.add_parser("show", help="one quarantined record whole, by its offset on records.quarantine")
    p.add_argument("offset", type=int)
    p.set_defaults(run=lambda a: asyncio.run(show_quarantined(kafka(a), a.offset)))


async def latest_quarantined(kafka: KafkaSettings, codec: Codec, topic: str | None, limit: int) -> list[dict[str, Any]]:
    """The latest `limit` entries' summaries (from `topic` only, if named), oldest first; the console's too."""
    latest: deque[dict[str, Any]] = deque(maxlen=max(limit, 0))
    async for r in read_to_end(kafka, RECORDS_QUARANTINE, name="quarantine-list"):
        entry = summary(r, codec)
        if topic is None or entry.get("source_topic") == topic:
            latest.append(entry)
    return list(latest)


async def list_quarantined(kafka: KafkaSettings, topic: str | None, limit: int) -> int:
    latest = await latest_quarantined(kafka, Codec.from_directory(), topic, limit)
    for entry in latest:
        print(json.dumps(entry))
    if not latest:
        print("nothing quarantined" + (f" from {topic}" if topic else ""))
    return 0


async def show_quarantined(kafka: KafkaSettings, offset: int) -> int:
    codec = Codec.from_directory()
    async for r in read_to_end(kafka, RECORDS_QUARANTINE, name="quarantine-show"):
        if r.offset == offset:
            print(json.dumps(detail(r, codec), indent=2))
            return 0
    print(f"no entry at offset {offset} of {RECORDS_QUARANTINE}")
    return 1


def summary(r: ConsumerRecord, codec: Codec) -> dict[str, Any]:
    """One line about an entry: where its record came from, why it was refused, the start of its bytes."""
    try:
        q = codec.decode(r.value, Quarantined)
    except CodecError as exc:  # the quarantine's own records are ours, but an operator must still see them
        return {"offset": r.offset, "unreadable": str(exc)}
    return {
        "offset": r.offset,
        "quarantined_at": q.quarantined_at.isoformat(),
        "service": q.service,
        "source_topic": q.topic,
        "source": f"{q.topic}/{q.partition}/{q.offset}",
        "reason": q.reason,
        "value_size": q.value_size,
        "value_hex": _hex(q.value, PREVIEW_BYTES),
    }


def detail(r: ConsumerRecord, codec: Codec) -> dict[str, Any]:
    """An entry whole: the summary, and the source's key and value in base64 (and a longer hex preview)."""
    line = summary(r, codec)
    if "unreadable" in line:
        return {**line, "raw_base64": base64.b64encode(r.value or b"").decode()}
    q = codec.decode(r.value, Quarantined)
    return {
        **line,
        "value_hex": _hex(q.value, 256),
        "key_base64": None if q.key is None else base64.b64encode(q.key).decode(),
        "value_base64": None if q.value is None else base64.b64encode(q.value).decode(),
        "value_cut": q.value is not None and len(q.value) < q.value_size,
    }


def _hex(data: bytes | None, limit: int) -> str | None:
    if data is None:
        return None
    return data[:limit].hex(" ") + (" …" if len(data) > limit else "")
