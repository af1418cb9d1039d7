"""The registry: agencies, their subscriptions, webhooks and credentials, operators, and the agreements.

`RegistryDocument` is what an operator writes in YAML, secrets included. `rctc registry apply` splits it
(`split`) into three records of one version, each on its own compacted topic, so that no secret travels
where more than its one consumer may read it (services/common/topics.yaml says who reads what):

    | record                  | topic                    | holds                             | read by        |
    |-------------------------|--------------------------|-----------------------------------|----------------|
    | RegistryPublished       | registry.config          | all but secrets (URLs included)   | every service  |
    | CredentialsPublished    | registry.credentials     | bearer tokens' SHA-256, per owner | the gateway    |
    | WebhookSecretsPublished | registry.webhook-secrets | each endpoint's whsec_ secrets    | the dispatcher |

The version links them: a service uses credentials or secrets only at the version of the registry in force
(services/common/registry/confidential.py). `Registry` indexes a published registry for fast lookups;
`Credentials` indexes token hashes.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from functools import cached_property
from typing import Literal

import msgspec

from services.common.records import Record, Severity

# SHA-256 of the empty string: a registry listing it would let an empty bearer token in.
EMPTY_TOKEN_SHA256 = hashlib.sha256(b"").hexdigest()

# The fields an agreement may redact from a recipient's copy. The rest (kind, category, severity, urgency,
# certainty, TLP, title, times) is what makes an alert actionable at all, so it always travels.
REDACTABLE_FIELDS: tuple[str, ...] = (
    "summary",
    "subjects",
    "indicators",
    "locations",
    "affected_countries",
    "source_reliability",
    "information_credibility",
)


class Subscription(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    categories: list[str]
    countries: list[str] = []
    min_severity: Severity = "Unknown"
    # The Admiralty grading an alert needs at least to match (A-E, 1-5; None asks for none). An alert graded F
    # or 6, "cannot be judged" (as an ungraded one is), meets no minimum (router/policy.py).
    min_source_reliability: str | None = None
    min_information_credibility: int | None = None


class Webhook(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An endpoint as the registry file states it, signing secrets included (never published whole)."""

    url: str
    secrets: list[str]
    allow_private: bool = False


class WebhookEntry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An endpoint as every service sees it on `registry.config`: no secret."""

    url: str
    allow_private: bool = False


class RateLimit(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """A token bucket: `burst` requests at once, refilled at `per_second` (services/gateway/ratelimit.py)."""

    per_second: float
    burst: int


# What an agency gets when neither it nor the registry's `defaults` names a limit: a few alerts a second with
# room for a status poll every 100 ms and a burst of a hundred requests, far above what a desk sends by hand
# and low enough that one agency's script cannot crowd out the others at the gateway.
DEFAULT_RATE_LIMIT = RateLimit(per_second=20.0, burst=100)


class Defaults(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Values for every agency that does not set its own."""

    rate_limit: RateLimit = DEFAULT_RATE_LIMIT


class Agency(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An agency as the registry file states it, token hashes and webhook secrets included."""

    code: str
    name: str
    country: str
    # A suspended agency (active: false) still authenticates, so it is told why (403 agency_suspended),
    # but the gateway lets it do nothing and the router shares nothing with it or from it.
    active: bool = True
    token_sha256: list[str] = []
    subscriptions: list[Subscription] = []
    webhook: Webhook | None = None
    # Requests to the gateway; None takes the registry's `defaults.rate_limit`.
    rate_limit: RateLimit | None = None

    def entry(self) -> AgencyEntry:
        """What every service may know of it: all but the token hashes and the webhook secrets."""
        webhook = self.webhook
        return AgencyEntry(
            code=self.code,
            name=self.name,
            country=self.country,
            active=self.active,
            subscriptions=self.subscriptions,
            webhook=WebhookEntry(url=webhook.url, allow_private=webhook.allow_private) if webhook else None,
            rate_limit=self.rate_limit,
        )


class AgencyEntry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An agency as every service sees it on `registry.config`: no token hash, no secret."""

    code: str
    name: str
    country: str
    active: bool = True
    subscriptions: list[Subscription] = []
    webhook: WebhookEntry | None = None
    rate_limit: RateLimit | None = None


class Operator(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    token_sha256: list[str] = []


class OperatorEntry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str


class Agreement(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    kind: Literal["multilateral", "directed"]
    parties: list[str] = []
    from_: list[str] = msgspec.field(default_factory=list, name="from")
    to: list[str] = []
    categories: list[str]
    countries: list[str] = []
    max_tlp: str
    redact: list[str] = []
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    suspended: bool = False
    # Seconds to acknowledge, by severity (YAML takes durations such as 15m, 4h, 2d).
    ack_deadlines: dict[str, int] = {}
    # The Admiralty grading the agreement requires to permit an alert, as a subscription's minimum.
    min_source_reliability: str | None = None
    min_information_credibility: int | None = None

    def allows(self, origin: str, recipient: str) -> bool:
        """Whether this agreement lets `origin` share with `recipient` (ignoring category, TLP and time)."""
        if self.kind == "multilateral":
            return origin in self.parties and recipient in self.parties and origin != recipient
        return origin in self.from_ and recipient in self.to

    def in_force(self, at: datetime) -> bool:
        if self.suspended:
            return False
        if self.valid_from is not None and at < self.valid_from:
            return False
        return not (self.valid_until is not None and at >= self.valid_until)


class AuditKey(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """A public key that signs the audit trail's head (services/auditor/checkpoints.py)."""

    id: str  # audit_key_id of the key: `rctc audit keygen` prints both
    ed25519: str  # base64 of the raw 32-byte public key


class AuditKeys(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # Several during a rotation, and a retired key stays listed while checkpoints it signed are kept:
    # `rctc audit verify` names a checkpoint whose key is not here.
    public_keys: list[AuditKey] = []


def audit_key_id(public: bytes) -> str:
    """The id of a raw Ed25519 public key: the first 16 hex digits of its SHA-256, so an id names one key."""
    return hashlib.sha256(public).hexdigest()[:16]


class RegistryDocument(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    regions: dict[str, list[str]] = {}
    agencies: list[Agency]
    operators: list[Operator] = []
    agreements: list[Agreement] = []
    defaults: Defaults = msgspec.field(default_factory=Defaults)
    audit: AuditKeys = msgspec.field(default_factory=AuditKeys)

    def content_sha256(self) -> str:
        """A hash of the content alone, so re-applying an unchanged file publishes nothing.

        Secrets are part of the content (rotating one is a new version), and the hash of a document that
        holds random secrets tells nothing about them. The format mark changes every hash that registries
        published with their secrets inside had: the first apply after the upgrade publishes a new version
        even from an unchanged file, so the last record that carried secrets is superseded (and compacted away).
        """
        content = msgspec.json.encode(self, order="deterministic")
        return hashlib.sha256(PUBLISHED_FORMAT + content).hexdigest()


# See content_sha256: bumped when what `registry.config` carries changes shape in a way that must republish.
PUBLISHED_FORMAT = b"rctc-registry/2 secrets apart\n"


class RegistryPublished(Record, kw_only=True):
    version: int
    sha256: str
    published_at: datetime
    published_by: str
    source: str
    regions: dict[str, list[str]] = {}
    agencies: list[AgencyEntry]
    operators: list[OperatorEntry] = []
    agreements: list[Agreement] = []
    defaults: Defaults = msgspec.field(default_factory=Defaults)
    audit: AuditKeys = msgspec.field(default_factory=AuditKeys)


class OwnedTokens(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The token hashes of one principal: an agency (its code) or an operator (its name)."""

    kind: Literal["agency", "operator"]
    name: str
    token_sha256: list[str]


class CredentialsPublished(Record, kw_only=True):
    """Every principal's token hashes at one registry version, on `registry.credentials` (the gateway's)."""

    version: int
    published_at: datetime
    owners: list[OwnedTokens] = []


class EndpointSecrets(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    agency: str
    secrets: list[str]


class WebhookSecretsPublished(Record, kw_only=True):
    """Every endpoint's signing secrets at one registry version, on `registry.webhook-secrets` (the
    dispatcher's). Each secret listed signs, so old and new both verify while a receiver rotates."""

    version: int
    published_at: datetime
    endpoints: list[EndpointSecrets] = []


def split(
    doc: RegistryDocument, *, version: int, published_at: datetime, published_by: str, source: str
) -> tuple[RegistryPublished, CredentialsPublished, WebhookSecretsPublished]:
    """The three records of one apply: the registry without secrets, the credentials, the webhook secrets."""
    registry = RegistryPublished(
        version=version,
        sha256=doc.content_sha256(),
        published_at=published_at,
        published_by=published_by,
        source=source,
        regions=doc.regions,
        agencies=[a.entry() for a in doc.agencies],
        operators=[OperatorEntry(name=o.name) for o in doc.operators],
        agreements=doc.agreements,
        defaults=doc.defaults,
        audit=doc.audit,
    )
    owners = [OwnedTokens(kind="agency", name=a.code, token_sha256=a.token_sha256) for a in doc.agencies]
    owners += [OwnedTokens(kind="operator", name=o.name, token_sha256=o.token_sha256) for o in doc.operators]
    credentials = CredentialsPublished(version=version, published_at=published_at, owners=owners)
    endpoints = [EndpointSecrets(agency=a.code, secrets=a.webhook.secrets) for a in doc.agencies if a.webhook]
    secrets = WebhookSecretsPublished(version=version, published_at=published_at, endpoints=endpoints)
    return registry, credentials, secrets


Principal = tuple[Literal["agency", "operator"], str]


class Registry:
    """Read-only lookups over one published registry. Replaced whole when a new version arrives."""

    def __init__(self, published: RegistryPublished) -> None:
        self.published = published
        self.version = published.version
        self.agencies: dict[str, AgencyEntry] = {a.code: a for a in published.agencies}
        self.agreements = published.agreements
        self.regions = published.regions
        # Lookups the router makes for every alert, remembered for this version of the registry.
        self._places: dict[str, frozenset[str]] = {}
        self._between: dict[tuple[str, str], list[Agreement]] = {}
        self.operators = frozenset(o.name for o in published.operators)

    @cached_property
    def audit_keys(self) -> dict[str, bytes]:
        """The audit trail's public keys by id (raw 32 bytes); validation made sure each decodes."""
        return {k.id: base64.b64decode(k.ed25519) for k in self.published.audit.public_keys}

    @classmethod
    def empty(cls) -> Registry:
        return cls(
            RegistryPublished(
                version=0,
                sha256="",
                published_at=datetime.fromtimestamp(0).astimezone(),
                published_by="",
                source="",
                agencies=[],
            )
        )

    def knows(self, principal: Principal) -> bool:
        kind, name = principal
        return name in self.agencies if kind == "agency" else name in self.operators

    def is_suspended(self, principal: Principal) -> bool:
        kind, name = principal
        return kind == "agency" and not self.agencies[name].active

    def rate_limit_of(self, code: str) -> RateLimit:
        """The agency's own limit, else the registry's default."""
        return self.agencies[code].rate_limit or self.published.defaults.rate_limit

    def countries_of(self, code: str) -> frozenset[str]:
        """A country code, or the countries of a region code."""
        found = self._places.get(code)
        if found is None:
            found = self._places[code] = frozenset(self.regions.get(code, [code]))
        return found

    def agreements_between(self, origin: str, recipient: str) -> list[Agreement]:
        """The agreements that let `origin` share with `recipient` at all (ignoring category, TLP, time)."""
        found = self._between.get((origin, recipient))
        if found is None:
            found = self._between[(origin, recipient)] = [a for a in self.agreements if a.allows(origin, recipient)]
        return found

    @cached_property
    def agreements_require_grading(self) -> bool:
        """Whether any agreement requires a minimum grading: the policy looks at none when no agreement does."""
        return any(
            a.min_source_reliability is not None or a.min_information_credibility is not None for a in self.agreements
        )

    @cached_property
    def agencies_by_code(self) -> tuple[AgencyEntry, ...]:
        return tuple(sorted(self.agencies.values(), key=lambda a: a.code))

    @cached_property
    def agency_codes(self) -> tuple[str, ...]:
        return tuple(sorted(self.agencies))


class Credentials:
    """The principals' token hashes at one registry version, indexed for `authenticate`."""

    def __init__(self, published: CredentialsPublished) -> None:
        self.version = published.version
        self._tokens: dict[str, Principal | None] = {}
        for owner in published.owners:
            principal: Principal = (owner.kind, owner.name)
            for digest in owner.token_sha256:
                # Validation refuses both (document.py); credentials that reached the topic another way still
                # never let a hash that two principals share, or the empty token's, authenticate anyone.
                shared = digest in self._tokens and self._tokens[digest] != principal
                self._tokens[digest] = None if shared or digest == EMPTY_TOKEN_SHA256 else principal

    def authenticate(self, token: str) -> Principal | None:
        """The agency or operator a bearer token belongs to. Only token hashes are stored.

        A suspended agency authenticates too (see `Registry.is_suspended`): it is told why it may do nothing.
        """
        if not token:
            return None
        # Looked up by the token's SHA-256, so timing reveals nothing about stored tokens. aiohttp hands over
        # header bytes that are not UTF-8 as surrogates: hashed as they came, they match no stored token.
        return self.holder_of(token_digest(token))

    def holder_of(self, digest: str) -> Principal | None:
        """The principal whose token has this SHA-256 (hex), or None. The console keeps a session's digest, not
        its token, and asks this again on every request, so a revoked token ends its sessions."""
        return self._tokens.get(digest)


def token_digest(token: str) -> str:
    """The SHA-256 (hex) the registry stores for a bearer token."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
