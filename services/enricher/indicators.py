"""Indicators of compromise and identity found in free text. Pure: no I/O.

Analysts write defanged indicators (`hxxp://evil[.]example`, `10.0.0[.]1`) so that nobody clicks them;
they are refanged before matching, and every value is tidied (lower-case domains, e-mails and hashes;
services/common/normalise.py) so the same indicator written twice is one indicator.

Extraction costs time linear in the text, whatever the text (any agency can send a summary such as
`"a." * 10000`). Each regex below either has only bounded repetition and starts at a word boundary or an
anchor character, so an attempt at one position costs a constant, or consumes a run greedily without
backtracking. Domains and e-mails cannot be written that way (a chain of labels has no useful bound), so
they are found by `_domains` and `_emails`, which read the text in runs and decide each run in one pass;
`tests/unit/test_indicators.py` checks them against the regexes they replace.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from services.common.normalise import refang, tidy
from services.common.records import Indicator

_URL = re.compile(r"\bhttps?://[^\s<>\"')\]]+", re.IGNORECASE)
_IPV4 = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b")
_HASH = re.compile(r"\b(?:[a-f0-9]{64}|[a-f0-9]{40}|[a-f0-9]{32})\b", re.IGNORECASE)
_PHONE = re.compile(r"(?<![\w+])\+\d{1,3}[\s-]?\d(?:[\s-]?\d){6,13}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}[A-Z0-9]{11,30}\b")
_WALLET = re.compile(r"\b(?:bc1[a-z0-9]{25,59}|0x[a-fA-F0-9]{40})\b")

# What `_domains` finds is what `\b(?:LABEL\.)+TLD\b` would, and `_emails` what `\b[\w.+-]+@(?:[a-z0-9-]+\.)+TLD\b`
# would (both case-insensitive); those regexes backtrack over every label from every start, quadratic in a run.
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE)  # a whole domain label
_MAIL_LABEL = re.compile(r"[a-z0-9-]++", re.IGNORECASE)  # an e-mail domain's label (possessive: one way only)
_TLD = re.compile(r"[a-z]{2,24}(?!\w)", re.IGNORECASE)
_DOMAIN_RUN = re.compile(r"[\w.-]++")  # a domain never crosses the edge of such a run
_LOCAL_RUN = re.compile(r"[\w.+-]++")  # nor an e-mail's local part
_WORD = re.compile(r"\w")
_MAX_LABEL = 63

# Words that look like domains but are file names in analysts' prose.
_FILE_SUFFIXES = frozenset(
    {
        "pdf",
        "doc",
        "docx",
        "xls",
        "xlsx",
        "txt",
        "exe",
        "dll",
        "zip",
        "rar",
        "jpg",
        "png",
        "gif",
        "ppt",
        "pptx",
        "csv",
        "json",
        "xml",
        "bin",
        "js",
        "py",
        "sh",
    }
)


def normalise(indicator: Indicator) -> Indicator:
    """The indicator as an alert carries it (services/common/normalise.py `tidy`)."""
    return Indicator(type=indicator.type, value=tidy(indicator.type, indicator.value))


def extract(text: str) -> list[Indicator]:
    """Indicators in `text`, in order of first appearance, without duplicates."""
    text = refang(text)
    found: list[tuple[int, Indicator]] = []
    # Characters already claimed, so a URL's host is not also a domain. Matches of one kind do not overlap,
    # so checking and marking their characters costs at most the text's length per kind.
    taken = bytearray(len(text))

    def claim(kind: str, spans: Iterator[tuple[int, int]]) -> None:
        for start, end in spans:
            if taken.find(1, start, end) >= 0:
                continue
            value = text[start:end].rstrip(".,;:")
            if kind == "domain" and value.rsplit(".", 1)[-1].lower() in _FILE_SUFFIXES:
                continue
            taken[start:end] = b"\x01" * (end - start)
            found.append((start, normalise(Indicator(type=kind, value=value))))

    claim("url", _spans(_URL, text))
    claim("email", _emails(text))
    for kind, pattern in (
        ("hash", _HASH),
        ("crypto_wallet", _WALLET),
        ("ip", _IPV4),
        ("iban", _IBAN),
        ("phone", _PHONE),
    ):
        claim(kind, _spans(pattern, text))
    claim("domain", _domains(text))
    return list(dict.fromkeys(ind for _, ind in sorted(found, key=lambda f: f[0])))


def _spans(pattern: re.Pattern[str], text: str) -> Iterator[tuple[int, int]]:
    return (m.span() for m in pattern.finditer(text))


def _tld_end(text: str, at: int) -> int:
    """Where a top-level domain starting at `at` ends, or -1 if none starts there."""
    m = _TLD.match(text, at)
    return m.end() if m else -1


def _domains(text: str) -> Iterator[tuple[int, int]]:
    """Domains, leftmost first and each as long as possible, in one pass over each run of `[\\w.-]`.

    A domain starts where a word starts (after `.` or `-`, or at the run's start), its labels are whole
    dot-separated segments, and it ends with the longest letter prefix of a later segment that is a TLD. If
    no domain starts in segment i, none starts in any later segment reached by the same chain of labels, so
    the scan jumps past the chain: every segment is looked at a constant number of times.
    """
    for run in _DOMAIN_RUN.finditer(text):
        segments = run.group().split(".")
        offsets = [run.start()]
        for s in segments[:-1]:
            offsets.append(offsets[-1] + len(s) + 1)
        count = len(segments)
        # is_label[k]: segment k is a whole label followed by a dot; tld_ends[k]: where its TLD prefix ends.
        is_label = [_LABEL.fullmatch(s) is not None for s in segments[:-1]] + [False]
        tld_ends = [_tld_end(text, o) for o in offsets]
        # chain_end[k]: the first segment from k on that is not a label; last_tld[k]: the last TLD at or before k.
        chain_end = [count - 1] * count
        for k in range(count - 2, -1, -1):
            chain_end[k] = chain_end[k + 1] if is_label[k] else k
        last_tld = [-1] * count
        for k in range(count):
            last_tld[k] = k if tld_ends[k] >= 0 else (last_tld[k - 1] if k else -1)
        resume = run.start()
        i = 0
        while i < count - 1:
            start = _label_start(text, offsets[i], offsets[i] + len(segments[i]), resume)
            if start < 0:
                i += 1
                continue
            j = last_tld[chain_end[i + 1]]
            if j > i:
                yield start, tld_ends[j]
                resume = tld_ends[j]
                i = j
            else:
                i = chain_end[i + 1]


def _label_start(text: str, seg_start: int, seg_end: int, resume: int) -> int:
    """The leftmost word start in a segment, at or after `resume`, from which the rest is a label; or -1."""
    first = max(seg_start, resume, seg_end - _MAX_LABEL)  # a longer rest cannot be a label
    for start in range(first, seg_end):
        at_word_start = start == seg_start or text[start - 1] == "-"
        if at_word_start and _LABEL.fullmatch(text, start, seg_end):
            return start
    return -1


def _emails(text: str) -> Iterator[tuple[int, int]]:
    """E-mail addresses: for each `@`, the local part in the run before it and the domain after it.

    Runs before different `@`s and label chains after them do not overlap, so each character is read a
    constant number of times.
    """
    resume = 0
    for run in _LOCAL_RUN.finditer(text):
        at = run.end()
        if at >= len(text) or text[at] != "@":
            continue
        start = _word_boundary(text, max(run.start(), resume), at, run.start())
        if start < 0:
            continue
        end = _mail_domain_end(text, at + 1)
        if end >= 0:
            yield start, end
            resume = end


def _word_boundary(text: str, lo: int, hi: int, run_start: int) -> int:
    """The first position in [lo, hi) where `\\b` holds (a run's start counts as preceded by a non-word)."""
    for p in range(lo, hi):
        before = p > run_start and _WORD.match(text, p - 1) is not None
        if before != (_WORD.match(text, p) is not None):
            return p
    return -1


def _mail_domain_end(text: str, at: int) -> int:
    """Where the longest `(?:[a-z0-9-]+\\.)+TLD\\b` starting at `at` ends, or -1."""
    segment_starts = [at]
    pos = at
    while (m := _MAIL_LABEL.match(text, pos)) and m.end() < len(text) and text[m.end()] == ".":
        pos = m.end() + 1
        segment_starts.append(pos)
    for seg in reversed(segment_starts[1:]):
        end = _tld_end(text, seg)
        if end >= 0:
            return end
    return -1
