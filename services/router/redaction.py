"""A recipient's copy of an alert, built from what its agreement allows. Pure: no I/O.

The copy starts empty and receives only allowed fields (an allow-list), so a field added to `Alert` later
reaches no recipient until it is added here on purpose. Handling lists (`releasable_to`) never travel:
they would tell a recipient who else may have received the alert.

Free text (title and summary) is masked where it quotes a redacted value, since a redacted field that
survives in the summary is not redacted. Values are compared in their folded forms (`common/folding.py`: case,
NFKD, accents and harakat, Arabic letter variants, joiners and bidi marks, tatweel, spaces), also in the
text's refanged view (`[at]`, `(dot)`, `hxxp`...) and, without separators, in its compact view (phones,
IBANs, identifiers), and the ORIGINAL characters behind each match are replaced by `MASK`. What is masked:

| redacted field       | masked in the text                                                              |
|----------------------|---------------------------------------------------------------------------------|
| `subjects`           | each name and identifier value; each part of a person's name as a whole word    |
| `indicators`         | each value; phones and IBANs also with any separators                           |
| `affected_countries` | each code as a whole word; each name in `country_names.py` where a word starts  |
|                      | with it (Iraq, Iraqi), Arabic names of four letters or more anywhere (بالعراق)  |
| `locations`          | decimal numbers written with two or more decimals that equal a latitude or      |
|                      | longitude rounded or truncated to the places written (36.3456, 36.35, 36,34)    |

An indicator that quotes a redacted value (a subject's phone or profile URL that the enricher extracted
from the summary, a map link with a redacted coordinate) is withheld from the copy's `indicators` with it.

A value of three folded characters or more is masked wherever it occurs, even inside a word; a shorter one
only where it stands as a whole word (a neighbouring mask counts as a word's edge). Locations carry no
names in this schema, and degrees-minutes-seconds are not recognised.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import ahocorasick

from services.common.folding import View, compact, fold, is_word, refanged
from services.common.records import Alert, Indicator, SharedAlert
from services.common.registry import REDACTABLE_FIELDS
from services.router.country_names import COUNTRY_NAMES

MASK = "[REDACTED]"
_SHORT = 3  # folded values shorter than this are masked only as whole words
# Parts of Arabic and other names that identify nobody on their own (folded forms).
_NAME_PARTICLES = frozenset(
    {"abu", "abou", "bin", "ben", "ibn", "bint", "umm", "abd", "abdul", "abdel", "mr", "mrs", "dr"}
)
_COMPACT_MIN = 6  # shorter values without separators would match inside unrelated numbers and words
# A decimal number: no digit or dot before it, two or more decimals, no digit after (possessive: one way only).
# Leading zeros and a space around the separator are still the number (`0033.3152`, `33 .3152`).
_DECIMAL = re.compile(r"(?<![\d.])(\d{1,12}+) ?[.,] ?(\d{2,}+)")


@dataclass(frozen=True, slots=True)
class Secrets:
    """Folded forms of the redacted values, sorted by how they are looked for (see the module docstring)."""

    anywhere: frozenset[str] = frozenset()  # in the folded and the refanged view, inside words too
    words: frozenset[str] = frozenset()  # in the folded view, only as whole words
    word_starts: frozenset[str] = frozenset()  # in the folded view, where a word starts
    compact: frozenset[str] = frozenset()  # in the compact view
    coordinates: frozenset[float] = field(default_factory=frozenset)

    def __bool__(self) -> bool:
        return bool(self.anywhere or self.words or self.word_starts or self.compact or self.coordinates)


def shared_copy(alert: Alert, redact: Collection[str]) -> tuple[SharedAlert, list[str]]:
    """The copy a recipient receives when `redact` names the fields to remove, and the fields removed."""
    removed = sorted(f for f in REDACTABLE_FIELDS if f in redact)
    allowed = {f for f in REDACTABLE_FIELDS if f not in removed}
    secrets = quoted_values(alert, removed)
    copy = SharedAlert(
        msg_type=alert.msg_type,
        references=list(alert.references),
        category=alert.category,
        severity=alert.severity,
        urgency=alert.urgency,
        certainty=alert.certainty,
        tlp=alert.tlp,
        title=mask(alert.title, secrets),
        sent=alert.sent,
        expires=alert.expires,
        originator_control=alert.originator_control,
        source_reliability=alert.source_reliability if "source_reliability" in allowed else None,
        information_credibility=(alert.information_credibility if "information_credibility" in allowed else None),
        summary=mask(alert.summary, secrets) if "summary" in allowed else None,
        affected_countries=list(alert.affected_countries) if "affected_countries" in allowed else None,
        locations=list(alert.locations) if "locations" in allowed else None,
        indicators=_unquoting(alert, secrets) if "indicators" in allowed else None,
        subjects=list(alert.subjects) if "subjects" in allowed else None,
    )
    return copy, removed


def _unquoting(alert: Alert, secrets: Secrets) -> list[Indicator]:
    """The indicators that quote no redacted value. The enricher extracts indicators from the free text, so a
    redacted subject's phone, e-mail or profile URL, or a map link with a redacted location, is in the list
    as well as in the summary: it is part of the redacted field, and goes with it."""
    if not secrets:
        return list(alert.indicators)
    # All values in one text, searched once: per value, a hostile alert's 250 URLs of 2 KB against the
    # 2,100 names and identifiers of 100 subjects cost 1.6 million searches (3-50 s a copy); one text costs
    # one search per secret. A line break is no part of any secret and breaks a word, so a match cannot join
    # two values except in the compact view, which drops separators: there a value may be taken for quoting
    # a secret it does not, which drops it from the copy (the safe side), never the reverse.
    joined = _SEPARATOR.join(i.value for i in alert.indicators)
    covered = _covered(joined, secrets)
    kept, start = [], 0
    for indicator in alert.indicators:
        end = start + len(indicator.value)
        if not any(covered[start:end]):
            kept.append(indicator)
        start = end + len(_SEPARATOR)
    return kept


def quoted_values(alert: Alert, removed: Collection[str]) -> Secrets:
    """What to look for in the free text when the `removed` fields are redacted."""
    values: list[str] = []
    starts: list[str] = []
    compact_only: list[str] = []
    words: set[str] = set()
    if "subjects" in removed:
        for s in alert.subjects:
            values.append(s.name)
            values.extend(s.identifiers.values())
            if s.kind == "person":
                # Each part of a person's name alone, as a whole word: `Rahmani, Khalid`, `Mr Rahmani`; not the
                # particles that name nobody alone (`Abu` would take `Abu Dhabi` with it).
                parts = _folded(s.name).split()
                words.update(p for p in parts if len(p) >= _SHORT and p not in _NAME_PARTICLES)
    if "indicators" in removed:
        for i in alert.indicators:
            values.append(i.value)
            if i.type in ("phone", "iban"):
                # Short of a country code's '+', a phone's digits are still the phone.
                compact_only.append(i.value.lstrip("+"))
    if "affected_countries" in removed:
        for code in alert.affected_countries:
            values.append(code)
            for name in COUNTRY_NAMES.get(code.upper(), ()):
                # An Arabic name takes clitics in front (بالعراق): a long one is looked for anywhere.
                (starts if name.isascii() or len(_folded(name)) < 4 else values).append(name)
    coordinates: set[float] = set()
    if "locations" in removed:
        for loc in alert.locations:
            coordinates.update((abs(loc.lat), abs(loc.lon)))
    anywhere: set[str] = set()
    compacts: set[str] = set()
    for value in values:
        folded = _folded(value)
        if not folded:
            continue
        (words if len(folded) < _SHORT else anywhere).add(folded)
        anywhere_refanged = _refanged(value)
        if len(folded) >= _SHORT and anywhere_refanged != folded:
            anywhere.add(anywhere_refanged)
    for value in values + compact_only:
        squeezed = _compacted(value)
        if len(squeezed) >= _COMPACT_MIN or (value in compact_only and squeezed):
            compacts.add(squeezed)
    return Secrets(
        anywhere=frozenset(anywhere),
        words=frozenset(words),
        word_starts=frozenset(f for f in map(_folded, starts) if f),
        compact=frozenset(compacts),
        coordinates=frozenset(coordinates),
    )


def _folded(value: str) -> str:
    return _forms(value)[0]


def _refanged(value: str) -> str:
    return _forms(value)[1]


def _compacted(value: str) -> str:
    return _forms(value)[2]


@lru_cache(maxsize=4096)  # the same names, indicators and countries recur across alerts and variants
def _forms(value: str) -> tuple[str, str, str]:
    """A value folded, folded and refanged, and folded, refanged and without separators."""
    plain = fold(value)
    defanged = refanged(plain)
    return plain.text.strip(), defanged.text.strip(), compact(defanged).text


@lru_cache(maxsize=4)  # the alert in hand: its title and summary, reused by each of its redaction variants
def _views(text: str) -> tuple[View, View, View]:
    plain = fold(text)
    defanged = refanged(plain)
    return plain, defanged, compact(defanged)


_SEPARATOR = "\n"


def mask(text: str, secrets: Secrets) -> str:
    """`text` with the original characters behind every occurrence of a secret replaced by `MASK`."""
    if not secrets or not text:
        return text
    return _masked(text, _covered(text, secrets))


def _covered(text: str, secrets: Secrets) -> bytearray:
    """A byte per character of `text`: 1 behind every occurrence of a secret."""
    plain, defanged, squeezed = _views(text)
    covered = bytearray(len(text))

    def cover(view: View, start: int, end: int) -> None:
        lo, hi = view.span(start, end)
        covered[lo:hi] = b"\x01" * (hi - lo)

    # Every secret in one pass over each view (Aho-Corasick), overlapping occurrences included: a search per
    # secret cost a hostile alert's copy seconds (2,100 names and identifiers of 100 subjects, against 250
    # URLs of 2 KB), and covering an overlapping occurrence too only masks more.
    anywhere = _automaton(secrets.anywhere)
    if anywhere is not None:
        for view in (plain, defanged):
            for end, length in anywhere.iter(view.text):
                cover(view, end + 1 - length, end + 1)
    compacts = _automaton(secrets.compact)
    if compacts is not None:
        for end, length in compacts.iter(squeezed.text):
            cover(squeezed, end + 1 - length, end + 1)
    for start, end in _coordinates(plain.text, secrets.coordinates):
        cover(plain, start, end)
    _cover_words(plain, secrets, covered)
    return covered


@lru_cache(maxsize=64)  # one alert's redaction variants share their secrets
def _automaton(values: frozenset[str]) -> ahocorasick.Automaton | None:
    """An automaton that finds every value of `values` in a text at once (None when there is none)."""
    if not values:
        return None
    automaton = ahocorasick.Automaton()
    for value in values:
        automaton.add_word(value, len(value))
    automaton.make_automaton()
    return automaton


def _cover_words(view: View, secrets: Secrets, covered: bytearray) -> None:
    """Mark short values standing as whole words, and names where a word starts with them.

    A neighbour that is masked counts as a word's edge (the copy shows `]` there), so marking one word can
    make its neighbour whole: a work list re-checks only the candidates next to what was just marked, so
    each candidate is checked a bounded number of times.
    """
    text = view.text
    candidates = [(start, len(v), True) for v in secrets.words for start in _find(text, v, overlapping=True)]
    candidates += [(start, len(v), False) for v in secrets.word_starts for start in _find(text, v, overlapping=True)]
    beside: dict[int, list[int]] = {}  # folded position -> candidates whose edge it is
    for index, (start, length, _) in enumerate(candidates):
        beside.setdefault(start - 1, []).append(index)
        beside.setdefault(start + length, []).append(index)

    def edge(k: int) -> bool:
        return k < 0 or k >= len(text) or not is_word(text[k]) or covered[view.starts[k]] == 1

    done = [False] * len(candidates)
    work = list(range(len(candidates)))
    while work:
        index = work.pop()
        start, length, whole = candidates[index]
        if done[index] or not (edge(start - 1) and (not whole or edge(start + length))):
            continue
        done[index] = True
        lo, hi = view.span(start, start + length)
        covered[lo:hi] = b"\x01" * (hi - lo)
        first, last = start, start + length  # every folded character whose origin was just covered
        while first > 0 and view.starts[first - 1] >= lo:
            first -= 1
        while last < len(text) and view.starts[last] < hi:
            last += 1
        for k in range(first, last):
            work.extend(beside.get(k, ()))


def _find(text: str, value: str, *, overlapping: bool) -> Iterator[int]:
    """Where `value` occurs in `text`; non-overlapping occurrences suffice where any overlap is masked anyway."""
    start = text.find(value)
    while start >= 0:
        yield start
        start = text.find(value, start + (1 if overlapping else len(value)))


def _coordinates(text: str, coordinates: frozenset[float]) -> Iterator[tuple[int, int]]:
    """Decimal numbers that equal a coordinate to the places written (rounded or truncated)."""
    if not coordinates:
        return
    # Every way a coordinate is written, made once: one set lookup per number in the text, however many
    # locations the alert has (comparing each number with each location was seconds of router CPU for one
    # alert within the submission limits: the review's measurement).
    spellings = _coordinate_spellings(coordinates)
    for m in _DECIMAL.finditer(text):
        whole, decimals = m.groups()
        if len(decimals) <= _MAX_PLACES and f"{int(whole)}.{decimals}" in spellings:
            yield m.span()


_MAX_PLACES = 10  # a double holds about 15 significant digits: more places than this are noise


@lru_cache(maxsize=64)
def _coordinate_spellings(coordinates: frozenset[float]) -> frozenset[str]:
    return frozenset(
        spelling
        for c in coordinates
        for places in range(2, _MAX_PLACES + 1)
        for spelling in (f"{c:.{places}f}", _truncated(c, places))
    )


def _truncated(value: float, places: int) -> str:
    whole, _, decimals = f"{value:.{places + 6}f}".partition(".")
    return f"{int(whole)}.{decimals[:places]}"


def _masked(text: str, covered: bytearray) -> str:
    out: list[str] = []
    last = 0
    for run in re.finditer(rb"\x01+", covered):
        out.append(text[last : run.start()])
        out.append(MASK)
        last = run.end()
    out.append(text[last:])
    return "".join(out)
