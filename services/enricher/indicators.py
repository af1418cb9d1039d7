"""Indicators of compromise and identity found in free text. Pure: no I/O.

Analysts write defanged indicators (`hxxp://evil[.]example`, `10.0.0[.]1`) so that nobody clicks them;
they are refanged before matching, and every value is normalised (lower-case domains, e-mails and hashes)
so the same indicator written twice is one indicator.
"""

from __future__ import annotations

import re

from services.common.records import Indicator

_REFANG = (("[.]", "."), ("(.)", "."), ("[dot]", "."), ("hxxp", "http"), ("[@]", "@"), ("[:]", ":"))

_URL = re.compile(r"\bhttps?://[^\s<>\"')\]]+", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@(?:[a-z0-9-]+\.)+[a-z]{2,24}\b", re.IGNORECASE)
_IPV4 = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b")
_HASH = re.compile(r"\b(?:[a-f0-9]{64}|[a-f0-9]{40}|[a-f0-9]{32})\b", re.IGNORECASE)
_DOMAIN = re.compile(r"\b(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}\b", re.IGNORECASE)
_PHONE = re.compile(r"(?<![\w+])\+\d{1,3}[\s-]?\d(?:[\s-]?\d){6,13}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}[A-Z0-9]{11,30}\b")
_WALLET = re.compile(r"\b(?:bc1[a-z0-9]{25,59}|0x[a-fA-F0-9]{40})\b")

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


def refang(text: str) -> str:
    for defanged, plain in _REFANG:
        text = text.replace(defanged, plain)
    return text


def normalise(indicator: Indicator) -> Indicator:
    value = refang(indicator.value.strip())
    if indicator.type in ("domain", "email", "hash"):
        value = value.lower().rstrip(".")
    elif indicator.type == "phone":
        value = "+" + re.sub(r"\D", "", value)
    elif indicator.type == "iban":
        value = value.replace(" ", "").upper()
    return Indicator(type=indicator.type, value=value)


def extract(text: str) -> list[Indicator]:
    """Indicators in `text`, in order of first appearance, without duplicates."""
    text = refang(text)
    found: list[tuple[int, Indicator]] = []
    taken: list[tuple[int, int]] = []  # spans already claimed, so a URL's host is not also a domain

    def claim(kind: str, pattern: re.Pattern[str]) -> None:
        for m in pattern.finditer(text):
            if any(m.start() < end and start < m.end() for start, end in taken):
                continue
            value = m.group(0).rstrip(".,;:")
            if kind == "domain" and value.rsplit(".", 1)[-1].lower() in _FILE_SUFFIXES:
                continue
            taken.append((m.start(), m.end()))
            found.append((m.start(), normalise(Indicator(type=kind, value=value))))

    for kind, pattern in (
        ("url", _URL),
        ("email", _EMAIL),
        ("hash", _HASH),
        ("crypto_wallet", _WALLET),
        ("ip", _IPV4),
        ("iban", _IBAN),
        ("phone", _PHONE),
        ("domain", _DOMAIN),
    ):
        claim(kind, pattern)
    return list(dict.fromkeys(ind for _, ind in sorted(found, key=lambda f: f[0])))
