# ruff: noqa: RUF001, RUF002, RUF003  (this module is about look-alike letters: they are meant, not confusables)
"""Text as a comparison sees it: one spelling for the many ways a name, an address or a number is written. Pure.

Shared by the router's redaction (what a recipient may not read) and the correlator (which alerts name the
same person or indicator), so both see one value the same way.

    >>> view = fold("Abu  Karim")
    >>> view.text
    'abu karim'
    >>> view.span(0, 9)  # the original characters behind folded characters 0..9
    (0, 10)

A `View` is a derived text plus, for each of its characters, the span of the original it came from, so a
match found in the folded text masks exactly the original characters that were written (with their
accents, joiners and marks). Three views are built, each from the one before:

- `fold`: each original character alone (cached), in this order: compatibility decomposition (NFKD:
  fullwidth and circled forms, ligatures, Arabic presentation forms become plain letters and digits); case
  folding; every combining mark dropped (Latin accents, Arabic harakat and superscript alef, and the hamza
  that NFKD takes out of أ إ آ ؤ ئ ۀ, so those fold to ا و ي ه); format characters dropped (category Cf:
  zero-width space and joiners, LRM/RLM/ALM, bidi embeddings and isolates, soft hyphen, BOM); tatweel
  dropped; Arabic, Persian and Urdu letter variants folded, and Cyrillic and Greek letters that look like
  Latin ones (`_LETTERS`); decimal digits of every script to
  ASCII and the Arabic decimal separator to `.`; whitespace runs to one space. NFKD with marks dropped
  identifies everything NFKC identifies, and more.
- `refanged`: the defanged forms analysts write (`[.]`, `(dot)`, `[at]`, ` at `, `(@)`, `hxxp`, `[:]`...)
  replaced by what they stand for, so `a.rahmani [at] cash-relay [dot] example` reads as an e-mail.
- `compact`: separators (space, `.`, `-`, `_`, `(`, `)`, `/`) removed, so `+964 770-123 4567` reads as
  `+9647701234567` and `IQ98 NBIQ 8501` as `iq98nbiq8501`.

Every view costs time linear in its input: one pass, and regexes with bounded repetition only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter

_TATWEEL = "\u0640"
# Letters that analysts and keyboards write interchangeably, folded to one (after NFKD has removed hamzas).
_LETTERS = str.maketrans(
    {
        "\u0649": "\u064a",  # ى alef maksura -> ي
        "\u06cc": "\u064a",  # ی Persian yeh
        "\u06d2": "\u064a",  # ے Urdu yeh barree
        "\u06d0": "\u064a",  # ې
        "\u0629": "\u0647",  # ة teh marbuta -> ه
        "\u06c3": "\u0647",  # ۃ Urdu teh marbuta goal
        "\u06c1": "\u0647",  # ہ heh goal
        "\u06be": "\u0647",  # ھ heh doachashmee
        "\u06d5": "\u0647",  # ە ae
        "\u0671": "\u0627",  # ٱ alef wasla -> ا
        "\u0672": "\u0627",  # ٲ
        "\u0673": "\u0627",  # ٳ
        "\u0675": "\u0627",  # ٵ
        "\u06a9": "\u0643",  # ک Persian keheh -> ك
        "\u06aa": "\u0643",  # ڪ swash kaf
        "\u0676": "\u0648",  # ٶ -> و
        "\u0677": "\u0648",  # ٷ
        "\u0678": "\u064a",  # ٸ
        "\u066b": ".",  # ٫ Arabic decimal separator
        # Cyrillic and Greek letters that look like Latin ones (as case folding leaves them): `Кhalid Rаhmani`
        # and `Κhalid` read as `khalid rahmani`. Folding a real Cyrillic or Greek word this way changes
        # nothing for masking: the value and the text are folded alike.
        **dict.fromkeys("аα", "a"),
        **dict.fromkeys("вβ", "b"),
        "с": "c",
        **dict.fromkeys("еεѐё", "e"),
        **dict.fromkeys("һнη", "h"),
        **dict.fromkeys("іїιί", "i"),
        "ј": "j",
        **dict.fromkeys("кκ", "k"),
        **dict.fromkeys("мμ", "m"),
        "ν": "v",
        **dict.fromkeys("оοσό", "o"),
        **dict.fromkeys("рρ", "p"),
        "ѕ": "s",
        **dict.fromkeys("тτ", "t"),
        **dict.fromkeys("уυ", "y"),
        **dict.fromkeys("хχ", "x"),
        "ζ": "z",
    }
)
_DROPPED_CATEGORIES = frozenset({"Mn", "Mc", "Me", "Cf"})


@dataclass(frozen=True, slots=True)
class View:
    """A derived text; `starts[k]`/`ends[k]` bound the original characters behind its character k."""

    text: str
    starts: list[int]
    ends: list[int]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span behind derived characters [start, end) (end > start)."""
        return self.starts[start], self.ends[end - 1]


@lru_cache(maxsize=4096)  # bounded: an attacker can write a million distinct characters
def _fold_char(ch: str) -> str:
    if ch.isspace():
        return " "
    out = []
    for c in unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", ch).casefold()):
        if c == _TATWEEL or unicodedata.category(c) in _DROPPED_CATEGORIES:
            continue
        if c.isspace():
            out.append(" ")
        elif (digit := unicodedata.decimal(c, None)) is not None:
            out.append(str(digit))
        else:
            out.append(c.translate(_LETTERS))
    return "".join(out)


# ASCII needs no Unicode tables: lower case, whitespace to a space, control characters dropped.
_ASCII = [" " if chr(i).isspace() else ("" if i < 32 or i == 127 else chr(i).lower()) for i in range(128)]
# Printable ASCII words with single spaces between them: folded by `str.lower`, one character for one.
_PLAIN_RUN = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*+")


def fold(text: str) -> View:
    """`text` folded, with each folded character's original span (see the module docstring)."""
    out: list[str] = []
    starts: list[int] = []
    pos = 0
    for run in _PLAIN_RUN.finditer(text):
        for i in range(pos, run.start()):
            _fold_one(text, i, out, starts)
        out.append(run.group().lower())
        starts.extend(range(run.start(), run.end()))
        pos = run.end()
    for i in range(pos, len(text)):
        _fold_one(text, i, out, starts)
    return View("".join(out), starts, _ends(starts, len(text)))


def _fold_one(text: str, i: int, out: list[str], starts: list[int]) -> None:
    code = ord(text[i])
    folded = _ASCII[code] if code < 128 else _fold_char(text[i])
    if not folded or (folded == " " and out and out[-1].endswith(" ")):
        return
    out.append(folded)
    starts.extend([i] * len(folded))


def _ends(starts: list[int], length: int) -> list[int]:
    # A character's span runs to the next kept character's origin, so it takes in the marks, joiners and
    # extra spaces that followed it and were dropped: masking a match then leaves no stray accent behind.
    ends = [*starts[1:], length]
    if len(set(starts)) == len(starts):
        return ends
    # Some character folded to several (a ligature, ß): they all end where the next origin starts.
    for k in range(len(starts) - 2, -1, -1):
        if starts[k + 1] == starts[k]:
            ends[k] = ends[k + 1]
    return ends


_DEFANGED = re.compile(
    r"(?=[ \[({<h])"  # every form starts with one of these: other positions fail at once
    r"(?:(?P<dot> ?[\[({<] ?(?:\.|dot) ?[\])}>] ?| dot )"
    r"|(?P<at> ?[\[({<] ?(?:@|at) ?[\])}>] ?| at )"
    r"|(?P<colon>\[:\]|\[://\])"
    r"|(?P<http>hxxp))"
)
_PLAIN = {"dot": ".", "at": "@", "http": "http"}


def refanged(view: View) -> View:
    """`view` with defanged dots, at signs, colons and schemes read as what they stand for."""
    return _rewrite(view, _DEFANGED, lambda m: _PLAIN.get(m.lastgroup or "", m.group().strip("[]")))


_SEPARATORS = frozenset(" .-_()/")
_DROP_SEPARATORS = str.maketrans(dict.fromkeys(_SEPARATORS))


def compact(view: View) -> View:
    """`view` without separators (spaces, dots, dashes, brackets, slashes)."""
    kept = [k for k, c in enumerate(view.text) if c not in _SEPARATORS]
    if len(kept) < 2:  # itemgetter of one index returns the item, not a tuple
        return View(view.text.translate(_DROP_SEPARATORS), [view.starts[k] for k in kept], [view.ends[k] for k in kept])
    pick = itemgetter(*kept)
    return View(view.text.translate(_DROP_SEPARATORS), list(pick(view.starts)), list(pick(view.ends)))


def _rewrite(view: View, pattern: re.Pattern[str], replace: Callable[[re.Match[str]], str]) -> View:
    """`view` with each match of `pattern` replaced; a replacement's characters all come from the match's span."""
    text, starts, ends = view.text, view.starts, view.ends
    out: list[str] = []
    new_starts: list[int] = []
    new_ends: list[int] = []
    last = 0
    for m in pattern.finditer(text):
        out.append(text[last : m.start()])
        new_starts += starts[last : m.start()]
        new_ends += ends[last : m.start()]
        replacement = replace(m)
        if replacement:
            out.append(replacement)
            new_starts += [starts[m.start()]] * len(replacement)
            new_ends += [ends[m.end() - 1]] * len(replacement)
        last = m.end()
    out.append(text[last:])
    new_starts += starts[last:]
    new_ends += ends[last:]
    return View("".join(out), new_starts, new_ends)


def is_word(ch: str) -> bool:
    """Whether `ch` (a folded character) is part of a word: a letter, a digit or an underscore."""
    return ch.isalnum() or ch == "_"
