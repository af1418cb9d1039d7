"""What an enriched alert gives the correlator: one sighting per distinct normalised value it carries. Pure.

    thread_of(enriched)           # the thread the alert belongs to
    sightings_of(enriched.alert)  # [Mention("phone", "+9647701234567", ("indicators", "summary")), ...]

| what the alert carries                  | kind                     | value                                        |
|-----------------------------------------|--------------------------|----------------------------------------------|
| an indicator (given, or the enricher    | its type (`ip`, `domain`,| the enricher's normal form, then: a phone    |
| found it in the title or summary)       | `url`, `hash`, `email`,  | `+` and its digits (any script's); an IBAN   |
|                                         | `phone`, `iban`,         | upper case without separators; hex and       |
|                                         | `crypto_wallet`,         | bech32 wallets (`0x`, `bc1`...) lower case,  |
|                                         | `file_name`)             | others (base58) as written; an IP canonical; |
|                                         |                          | the rest folded (`common/folding.py`) and    |
|                                         |                          | refanged                                     |
| a subject's name (person, organisation, | `subject_name`           | folded as the redaction folds it (case,      |
| vehicle)                                |                          | accents and harakat, hamza and alef forms,   |
|                                         |                          | Arabic letter variants, tatweel, invisible   |
|                                         |                          | marks), punctuation read as a space          |
| a subject's identifier named phone,     | that indicator's kind    | as that indicator's                          |
| e-mail, IBAN or wallet                  |                          |                                              |
| any other identifier (passport,         | `subject_identifier`     | folded, without separators: `N 123-4567` and |
| national id, plate...)                  |                          | `n1234567` are one                           |

Values too short to mean anything on their own (a name under four letters, an identifier under five
characters) are left out: they would connect unrelated alerts. A Cancel carries nothing: it withdraws.

`fields` names every field of the alert that carries the value, among those an agreement can redact
(`REDACTABLE_FIELDS`): `indicators`, `subjects`, and `summary` when the free text quotes it (folded, refanged,
and for numbers without separators, as the redaction looks for it). The router reads it to tell whether a
recipient's copy of the alert showed the value.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from services.common.folding import compact, fold, refanged
from services.common.records import Alert, AlertEnriched
from services.common.registry import REDACTABLE_FIELDS

SUBJECT_NAME = "subject_name"
SUBJECT_IDENTIFIER = "subject_identifier"
MIN_NAME_LETTERS = 4
MIN_IDENTIFIER_CHARS = 5
# A subject's identifier that is really an indicator (its name folded, separators dropped) counts as one, so
# a subject's phone in one alert meets the same phone in another alert's indicators.
_IDENTIFIER_KINDS = {
    "phone": "phone",
    "mobile": "phone",
    "tel": "phone",
    "telephone": "phone",
    "email": "email",
    "mail": "email",
    "iban": "iban",
    "wallet": "crypto_wallet",
    "cryptowallet": "crypto_wallet",
    "btc": "crypto_wallet",
    "eth": "crypto_wallet",
}
# Wallet formats that are case-insensitive: Ethereum's hex (EIP-55 mixed case is only a checksum) and bech32
# (`bc1`, `ltc1`, `tb1`). Base58 addresses (`1...`, `3...`, Tron's `T...`) are case-sensitive and kept as written.
_CASELESS_WALLET = re.compile(r"^(?:0x[0-9a-f]{40}|(?:bc|tb|ltc)1[0-9a-z]{6,87})$")
_NOT_A_NAME_CHAR = re.compile(r"[^\w ]+")
_SPACES = re.compile(r" +")
_FIELD_ORDER = {name: i for i, name in enumerate(REDACTABLE_FIELDS)}


@dataclass(frozen=True, slots=True)
class Mention:
    """One normalised value an alert carries, and the alert's fields that carry it."""

    kind: str
    value: str
    fields: tuple[str, ...]

    @property
    def key(self) -> str:
        """The index key (`kind:value`), also the Kafka key that partitions the sightings."""
        return index_key(self.kind, self.value)


def index_key(kind: str, value: str) -> str:
    return f"{kind}:{value}"


def thread_of(enriched: AlertEnriched) -> str:
    """The thread an alert belongs to: its own id for an original, its thread's first alert for a follow-up."""
    alert = enriched.alert
    if alert.msg_type != "Alert" and alert.references:
        return alert.references[0]
    return enriched.alert_id


def sightings_of(alert: Alert) -> list[Mention]:
    """Every distinct (kind, value) the alert carries, in a stable order (kind, then value)."""
    if alert.msg_type == "Cancel":
        return []
    found: dict[tuple[str, str], set[str]] = {}

    def add(kind: str, value: str, field: str) -> None:
        if value:
            found.setdefault((kind, value), set()).add(field)

    for indicator in alert.indicators:
        add(indicator.type, indicator_value(indicator.type, indicator.value), "indicators")
    for subject in alert.subjects:
        add(SUBJECT_NAME, name_value(subject.name), "subjects")
        for name, identifier in subject.identifiers.items():
            kind = _IDENTIFIER_KINDS.get(compact(fold(name)).text, SUBJECT_IDENTIFIER)
            add(kind, indicator_value(kind, identifier), "subjects")
    if alert.summary:
        summary = _Text(alert.summary)
        for (kind, value), fields in found.items():
            if summary.quotes(kind, value):
                fields.add("summary")
    return [
        Mention(kind, value, tuple(sorted(fields, key=_FIELD_ORDER.__getitem__)))
        for (kind, value), fields in sorted(found.items())
    ]


def indicator_value(kind: str, value: str) -> str:
    """The value of an indicator (or identifier) of `kind` as the correlator compares it; "" when unusable."""
    if kind == "phone":
        digits = re.sub(r"\D", "", fold(value).text)
        return f"+{digits}" if len(digits) >= MIN_IDENTIFIER_CHARS else ""
    if kind == "iban":
        return compact(fold(value)).text.upper()
    if kind == "crypto_wallet":
        plain = "".join(value.split())
        return plain.lower() if _CASELESS_WALLET.match(plain.lower()) else plain
    if kind == SUBJECT_IDENTIFIER:
        squeezed = compact(refanged(fold(value))).text
        return squeezed if len(squeezed) >= MIN_IDENTIFIER_CHARS else ""
    text = refanged(fold(value)).text.strip()
    if kind == "ip":
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            return text
    if kind in ("domain", "email"):
        return text.replace(" ", "").rstrip(".")
    return text


def name_value(name: str) -> str:
    """A subject's name as the correlator compares it; "" for a name too short to tell anyone apart."""
    folded = _SPACES.sub(" ", _NOT_A_NAME_CHAR.sub(" ", fold(name).text)).strip()
    return folded if len(folded.replace(" ", "")) >= MIN_NAME_LETTERS else ""


class _Text:
    """The summary in the views a value is looked for in."""

    def __init__(self, text: str) -> None:
        plain = refanged(fold(text))
        self.plain = plain.text
        self.compact = compact(plain).text
        self.words = f" {_SPACES.sub(' ', _NOT_A_NAME_CHAR.sub(' ', self.plain)).strip()} "

    def quotes(self, kind: str, value: str) -> bool:
        if kind == SUBJECT_NAME:
            return f" {value} " in self.words
        if kind in ("phone", "iban", SUBJECT_IDENTIFIER):
            # Written with or without separators, and a phone with or without its `+`.
            return compact(fold(value)).text.lstrip("+") in self.compact
        return value.casefold() in self.plain
