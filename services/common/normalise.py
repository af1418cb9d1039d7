"""One spelling for each indicator and subject value, so that the same value written two ways is one. Pure.

    tidy("domain", "Evil[.]Example.")              # 'evil.example': the form an alert carries
    comparable("phone", "00964 770-123 4567")      # '+9647701234567', as `+964 770 123 4567` gives
    comparable("name", "RAHMANI, Khalid")          # 'khalid rahmani'
    comparable_values(alert)                       # {('domain', 'evil.example'), ('name', 'abu karim'), ...}

Two forms, because they serve two readers. `tidy` is what the enricher writes into an alert's indicators,
which recipients receive and which the router masks in free text when the field is redacted: it only
refangs and changes case and separators, so a value's characters can still be found in the text it came
from (services/router/redaction.py folds both sides the same way). `comparable` is for comparing, never
shown to a recipient: the watchlist matches alerts in it (services/common/watchlist.py), and so does
anything else that asks whether two alerts share a value. It is `tidy` and then:

| kind            | comparable form                                                                      |
|-----------------|--------------------------------------------------------------------------------------|
| `ip`            | a valid address in its standard form (IPv6 compressed, lower case); else as tidied   |
| `domain`        | refanged, lower case, no trailing dot                                                 |
| `email`         | refanged, lower case                                                                  |
| `url`           | refanged; scheme and host lower case (a path's case is its own); `/` for no path      |
| `hash`          | lower case                                                                            |
| `phone`         | `+` and the digits (as tidied: `00` written for the `+` is the `+`)                   |
| `iban`          | letters and digits only, upper case                                                   |
| `crypto_wallet` | refanged; `0x` (hex) and bech32 (`bc1`, `tb1`) addresses lower case, where case is   |
|                 | only a checksum; others (base58) as written                                           |
| `file_name`     | case-folded                                                                           |
| `name`          | a subject's name folded as redaction folds it (folding.py: case, accents and harakat,|
|                 | Arabic letter variants, tatweel, invisible marks, look-alike letters), punctuation as |
|                 | spaces, its words in sorted order (`Rahmani, Khalid` is `Khalid Rahmani`)             |
| `identifier`    | a subject's identifier (passport, national id, plate) folded, without separators      |

`comparable` is idempotent and gives the same for a value and its tidied form, so stored values can be
compared again after this module changes; the one exception is nested defanging (`[[.].]` is refanged one
level per pass: a pass costs time linear in the text, and a loop to a fixed point would not, over an
agency's summary). An empty result means there is nothing to compare.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from urllib.parse import urlsplit, urlunsplit

from services.common.folding import compact_text, fold_text
from services.common.records import Alert

# The indicator types an alert may carry (services/gateway/submission.py validates against the same list;
# tests/unit/test_normalise.py keeps the two equal).
INDICATOR_KINDS: tuple[str, ...] = (
    "ip",
    "domain",
    "url",
    "hash",
    "email",
    "phone",
    "iban",
    "crypto_wallet",
    "file_name",
)
# What a subject is known by: its name and its identifiers.
SUBJECT_KINDS: tuple[str, ...] = ("name", "identifier")
KINDS: tuple[str, ...] = INDICATOR_KINDS + SUBJECT_KINDS

_REFANG = (
    ("[.]", "."),
    ("(.)", "."),
    ("[dot]", "."),
    ("(dot)", "."),
    ("hxxp", "http"),
    ("[@]", "@"),
    ("[at]", "@"),
    ("(at)", "@"),
    ("[:]", ":"),
)
_NOT_DIGIT = re.compile(r"\D")
_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]")
_NOT_WORD = re.compile(r"[^\w]+")


def refang(text: str) -> str:
    """`text` with the defanged forms analysts write (`hxxp`, `[.]`, `[@]`...) read as what they stand for."""
    for defanged, plain in _REFANG:
        text = text.replace(defanged, plain)
    return text


def tidy(kind: str, value: str) -> str:
    """The form of an indicator an alert carries: refanged; domains, e-mails and hashes lower case; a phone
    `+` and its digits (`00` written for the `+` is the `+`); an IBAN without spaces, upper case."""
    value = refang(value.strip())
    if kind in ("domain", "email", "hash"):
        return _without_trailing_dots(value.lower())
    if kind == "phone":
        digits = _NOT_DIGIT.sub("", value)
        # 00 is how the `+` is dialled: `00964...` is `+964...`. A country code never starts with 0.
        return "+" + (digits[2:] if not value.startswith("+") and digits.startswith("00") else digits)
    if kind == "iban":
        return value.replace(" ", "").upper()
    return value


def comparable(kind: str, value: str) -> str:
    """The form two values of `kind` are compared in (the table above); '' when nothing is left to compare."""
    if kind == "name":
        return " ".join(sorted(_NOT_WORD.sub(" ", fold_text(value).replace("_", " ")).split()))
    if kind == "identifier":
        return compact_text(fold_text(value)).strip()
    value = tidy(kind, value)
    if kind == "ip":
        return _ip(value)
    if kind == "url":
        return _url(value)
    if kind == "phone":
        return value if value != "+" else ""
    if kind == "iban":
        return _NOT_ALNUM.sub("", value).upper()
    if kind == "crypto_wallet":
        return value.lower() if value.lower().startswith(("0x", "bc1", "tb1")) else value
    if kind == "file_name":
        return value.casefold()
    return value


def comparable_values(alert: Alert, kinds: Collection[str] = KINDS) -> set[tuple[str, str]]:
    """Every (kind, comparable value) an alert carries, of `kinds`: its indicators, its subjects' names and
    identifiers. Only `kinds` are computed: an agency's alert may hold thousands of identifiers, and a caller
    that looks for a few kinds (the watchlist's) pays for those alone.

    An identifier whose label is an indicator kind (`{"phone": ...}`, `{"email": ...}`) counts as that
    indicator too, so a phone number given as a subject's identifier meets the same phone written elsewhere.
    """
    found: set[tuple[str, str]] = set()
    for indicator in alert.indicators:
        if indicator.type in kinds:
            found.add((indicator.type, comparable(indicator.type, indicator.value)))
    for subject in alert.subjects:
        if "name" in kinds:
            found.add(("name", comparable("name", subject.name)))
        for label, value in subject.identifiers.items():
            if "identifier" in kinds:
                found.add(("identifier", comparable("identifier", value)))
            kind = label.strip().lower()
            if kind in INDICATOR_KINDS and kind in kinds:
                found.add((kind, comparable(kind, value)))
    return {(kind, value) for kind, value in found if value}


def _without_trailing_dots(value: str) -> str:
    """`evil.example.` is `evil.example` (a space left before such a dot goes too). One pass from the end: a
    regex anchored at the end would retry from every dot of a long run that is not at the end."""
    end = len(value)
    while end and (value[end - 1] == "." or value[end - 1].isspace()):
        end -= 1
    return value[:end]


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value


def _url(value: str) -> str:
    try:
        parts = urlsplit(value)
    except ValueError:  # an unbalanced IPv6 bracket: compare it as written
        return value
    if not parts.scheme or not parts.netloc:
        return value
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", parts.query, parts.fragment))
