"""The trust boundary between services: the internal credential, identifiers and query strings. Pure.

Nothing inside the system is trusted because of where it came from (docs/architecture.md, Security model). The
gateway calls the tracker's internal API with a shared secret that both read from `RCTC_INTERNAL_TOKEN`,
builds its URLs from identifiers it has validated, and puts caller-chosen values only in query parameters
that the URL library quotes; the tracker checks all three again:

    settings.internal_token                                   # InternalToken: refused at start if weak
    bearer(settings.internal_token)                           # {"Authorization": "Bearer ..."}
    presented(request.headers.get("Authorization"), token)    # constant-time check, False if absent
    is_alert_id("0b7c...")                                    # canonical UUID text only
    query_problem([k for k, _ in request.query.items()], allowed={"agency"})   # unknown, repeated
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Collection, Iterable
from typing import Annotated

from pydantic import AfterValidator, SecretStr

ENV = "RCTC_INTERNAL_TOKEN"
MIN_TOKEN_CHARS = 32
# Printable ASCII without spaces: the token travels in an HTTP header, and 32 such characters from a random
# generator (`openssl rand -hex 32`, `python -c 'import secrets; print(secrets.token_urlsafe(32))'`) are
# beyond guessing.
_TOKEN = re.compile(rf"[!-~]{{{MIN_TOKEN_CHARS},}}")
# Exactly what str(uuid.UUID(...)) prints: lower-case hex, hyphens in place. uuid.UUID itself also accepts
# braces, "urn:uuid:", upper case and no hyphens, so two spellings could name one alert; [0-9a-f] (not \d)
# admits no other script's digits.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def token_problem(token: str) -> str | None:
    """Why `token` may not serve as the internal credential, or None if it may."""
    if not token:
        return (
            f"no internal credential: set {ENV} to the same random secret in the gateway and the tracker "
            f"(at least {MIN_TOKEN_CHARS} printable characters, e.g. `openssl rand -hex 32`)"
        )
    if not _TOKEN.fullmatch(token):
        return f"{ENV} must be at least {MIN_TOKEN_CHARS} printable ASCII characters without spaces"
    return None


def _checked(token: SecretStr) -> SecretStr:
    problem = token_problem(token.get_secret_value())
    if problem is not None:
        raise ValueError(problem)
    return token


# The settings type of `internal_token` in the gateway and the tracker. Declared with
# `Field(default=SecretStr(""), validate_default=True)` so that a service started without one stops at
# once, naming the variable, instead of starting and refusing (or, worse, accepting) every internal call.
InternalToken = Annotated[SecretStr, AfterValidator(_checked)]


def bearer(token: SecretStr) -> dict[str, str]:
    """The header that carries the internal credential."""
    return {"Authorization": f"Bearer {token.get_secret_value()}"}


def presented(header: str | None, token: SecretStr) -> bool:
    """True when an Authorization header carries `token` (compared in constant time)."""
    scheme, _, value = (header or "").partition(" ")
    expected = token.get_secret_value()
    # compare_digest wants equal types; bytes so that a non-ASCII header cannot raise.
    return bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(value.encode(), expected.encode())


def is_alert_id(value: str) -> bool:
    """True for an alert id as the gateway issues them: a UUID in its canonical text form."""
    return _UUID.fullmatch(value) is not None


def query_problem(names: Iterable[str], allowed: Collection[str], required: Collection[str] = ()) -> str | None:
    """Why a query string with these parameter names (repeats included) is refused, or None.

    A repeated parameter is refused rather than resolved: a front end that reads the first and a back end
    that reads the last is how a value gets smuggled past a check.
    """
    seen: list[str] = []
    for name in names:
        if name not in allowed:
            return f"unknown query parameter {name!r}"
        if name in seen:
            return f"query parameter {name!r} given more than once"
        seen.append(name)
    missing = [name for name in required if name not in seen]
    if missing:
        return "missing query parameter " + ", ".join(repr(m) for m in sorted(missing))
    return None
