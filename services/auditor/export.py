"""A partner's share of the audit trail, for a bilateral audit. Pure: no I/O.

    lines = partner_share(entries, "JO-TAC")     # [Exported]: the entries JO-TAC may see, in trail order

An agency B may see exactly two kinds of entry, and nothing else:

| entry                                              | exported | its reason                              |
|----------------------------------------------------|----------|-----------------------------------------|
| about an alert B originated (any agency, any kind) | yes      | as recorded: an originator sees its own |
|                                                    |          | decisions                               |
| a copy B received (agency B, kind `delivered`)     | yes      | as recorded when it can only name the   |
|                                                    |          | agreement the copy went under (B is a   |
|                                                    |          | party to it) or the thread's alert id;  |
|                                                    |          | otherwise left out (`reduced`)          |
| another originator's alert withheld from B         | no       | (it would tell B the alert exists)      |
| any decision about another agency's copy           | no       |                                         |
| a decision about a correlation (kinds              | no       | it names the agencies told of the other |
| `correlation_notified`, `correlation_withheld`),   |          | side's thread, and who holds it; B      |
| even on B's own alert or to B                      |          | learns of a correlation by its notice   |

Only the kinds of copies (`delivered`, `withheld`) are exported at all: an entry of another kind, one added
later included, is left out until somebody adds it here on purpose.

A received copy's reason is kept only when it is exactly what `KEPT_REASONS` writes for its rule; any other
text (a rule added later, a withdrawal's "releasable_to names only ...") is left out, so a new reason is
never shown to a recipient until somebody adds it here on purpose.

An entry is exported whole and unchanged (seq, prev_hash and hash included), so the partner recomputes its
hash itself (chain.entry_hash); an entry whose reason was left out names the field in `reduced`, and its hash
is then the center's word only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from services.common.records import AuditRecorded

# An alert id as the gateway issues them (lower-case hex and hyphens: it cannot spell an agency's code).
_RECEIVED = re.compile(r"received [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# Rule -> the only reason text a recipient may read for it, given the entry. `shared`: the agreement the
# copy was sent under, one the recipient is a party to. `follows_original` (decisions written before every
# version was decided whole) and `cancelled`: the id of the thread's alert, which the recipient holds.
KEPT_REASONS: dict[str, Callable[[AuditRecorded], re.Pattern[str]]] = {
    "shared": lambda e: re.compile(re.escape(f"shared under {e.agreement_id}")),
    "follows_original": lambda e: _RECEIVED,
    # A cancellation notice (router/policy.py): the thread's first alert id, which the recipient holds.
    "cancelled": lambda e: re.compile("holds a version of " + _RECEIVED.pattern.removeprefix("received ")),
}


class Exported(msgspec.Struct, frozen=True):
    """One line of a partner's export: the entry as the chain holds it, or with the fields in `reduced`
    left out (their value null)."""

    entry: AuditRecorded
    reduced: tuple[str, ...] = ()

    def line(self) -> dict[str, Any]:
        entry: dict[str, Any] = msgspec.to_builtins(self.entry)
        for name in self.reduced:
            entry[name] = None
        return {"entry": entry, "reduced": list(self.reduced)}


# The kinds of entries about copies of an alert (services/auditor/service.py): the only ones exported.
COPY_KINDS = frozenset({"delivered", "withheld"})


def visible_to(entry: AuditRecorded, agency: str) -> bool:
    """Whether `agency` may see `entry` at all: it is about a copy, and `agency` originated the alert or the
    entry is its own copy."""
    if entry.kind not in COPY_KINDS:
        return False
    return entry.origin == agency or (entry.agency == agency and entry.kind == "delivered")


def reason_kept(entry: AuditRecorded) -> bool:
    """Whether a recipient (not the originator) may read the entry's reason as recorded."""
    pattern = KEPT_REASONS.get(entry.rule)
    return pattern is not None and pattern(entry).fullmatch(entry.reason) is not None


def partner_share(entries: Iterable[AuditRecorded], agency: str) -> list[Exported]:
    """The entries `agency` may see, in trail order, each reduced as the table in the docstring says."""
    share = []
    for entry in entries:
        if not visible_to(entry, agency):
            continue
        if entry.origin == agency or reason_kept(entry):
            share.append(Exported(entry))
        else:
            share.append(Exported(entry, ("reason",)))
    return share
