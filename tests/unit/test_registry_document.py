"""Registry files are validated with every problem reported by line and field."""

from __future__ import annotations

import base64
import hashlib
import secrets
from pathlib import Path

import pytest

from services.common.codec import Codec
from services.common.errors import RegistryError
from services.common.records import utcnow
from services.common.registry import Agency, Registry, RegistryPublished, document, load_registry, parse_registry
from services.common.registry.model import (
    Credentials,
    CredentialsPublished,
    Defaults,
    Operator,
    RateLimit,
    RegistryDocument,
    WebhookSecretsPublished,
    split,
)

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "registry" / "demo.yaml"


def applied(doc: RegistryDocument) -> tuple[RegistryPublished, CredentialsPublished, WebhookSecretsPublished]:
    """The three records `rctc registry apply` publishes for `doc`."""
    return split(doc, version=1, published_at=utcnow(), published_by="t", source="s")


VALID = """\
agencies:
  - code: IQ-NAB
    name: Alpha
    country: IQ
    token_sha256: [a75eb2ef5cadbaa078db5eb20e5b9a4d8443be31a8d6d3be6229267613c6a6e8]
    subscriptions:
      - categories: ["terrorism.*"]
  - code: JO-TAC
    name: Beta
    country: JO
agreements:
  - id: A1
    kind: multilateral
    parties: [IQ-NAB, JO-TAC]
    categories: ["*"]
    max_tlp: AMBER
"""


def problems(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(RegistryError) as caught:
        parse_registry(text, "r.yaml")
    return caught.value.problems


def test_demo_registry_is_valid() -> None:
    """The registry `make run` applies validates, with at least six agencies in several member states."""
    doc = load_registry(DEMO)
    assert len(doc.agencies) >= 6
    assert len({a.country for a in doc.agencies}) >= 6


def test_valid_document_parses() -> None:
    """A minimal valid document gives agencies and agreements as typed values."""
    doc = parse_registry(VALID)
    assert [a.code for a in doc.agencies] == ["IQ-NAB", "JO-TAC"]
    assert doc.agreements[0].allows("IQ-NAB", "JO-TAC")


def test_structural_error_names_line_and_field() -> None:
    """A wrong type is reported at its line with its JSON path."""
    [(line, field, message)] = problems(VALID.replace("country: JO", "country: 12"))
    assert (line, field) == (10, "$.agencies[1].country")
    assert "Expected `str`" in message


def test_unknown_key_is_an_error() -> None:
    """A misspelt key is refused rather than silently ignored."""
    [(line, field, message)] = problems(VALID.replace("    name: Beta", "    nmae: Beta"))
    assert "nmae" in message and field == "$.agencies[1]" and line == 8


def test_every_semantic_problem_is_reported_at_once() -> None:
    """Unknown parties, bad TLP, unknown category and an unredactable field are all listed, each at its line."""
    text = (
        VALID.replace("parties: [IQ-NAB, JO-TAC]", "parties: [IQ-NAB, XX-NOPE]")
        .replace("max_tlp: AMBER", "max_tlp: PURPLE\n    redact: [title]")
        .replace('categories: ["*"]', 'categories: ["weather.*"]')
    )
    found = {(line, field) for line, field, _ in problems(text)}
    assert found == {
        (14, "$.agreements[0].parties[1]"),
        (15, "$.agreements[0].categories[0]"),
        (16, "$.agreements[0].max_tlp"),
        (17, "$.agreements[0].redact[0]"),
    }


@pytest.mark.parametrize(
    ("replace", "field", "words"),
    [
        (("code: JO-TAC", "code: IQ-NAB"), "$.agencies[1].code", "defined twice"),
        (("code: JO-TAC", "code: jordan"), "$.agencies[1].code", "not an agency code"),
        (("country: JO", "country: JOR"), "$.agencies[1].country", "ISO 3166"),
        (("token_sha256: [a75e", "token_sha256: [plain-token-a75e"), "$.agencies[0].token_sha256[0]", "never a token"),
        (("kind: multilateral", "kind: directed"), "$.agreements[0].kind", "needs both"),
    ],
)
def test_semantic_checks(replace: tuple[str, str], field: str, words: str) -> None:
    """Each rule of the registry is enforced with a message that says what to fix."""
    found = problems(VALID.replace(*replace))
    assert any(f == field and words in m for _, f, m in found), found


def test_webhook_rules() -> None:
    """Webhooks need https (unless allow_private) and well-formed whsec_ secrets."""
    hook = "\n    webhook:\n      url: http://receiver.example/hook\n      secrets: [notasecret]"
    found = {(f, m.split(" ")[0]) for _, f, m in problems(VALID.replace("    name: Beta", "    name: Beta" + hook))}
    assert ("$.agencies[1].webhook.url", "webhooks") in found
    assert ("$.agencies[1].webhook.secrets[0]", "a") in found


def test_not_yaml_is_reported_with_its_line() -> None:
    """A syntax error is reported at the line the parser stopped on."""
    [(line, field, message)] = problems("agencies:\n  - code: [unclosed\n")
    assert field == "$" and "not valid YAML" in message and line is not None


def test_registry_authenticates_tokens_by_hash() -> None:
    """A bearer token is matched through its SHA-256; an unknown token is nobody."""
    _, published, _ = applied(parse_registry(VALID))
    credentials = Credentials(published)
    assert credentials.authenticate("demo-iq-nab") == ("agency", "IQ-NAB")
    assert credentials.authenticate("demo-jo-tac") is None


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def secret(raw: bytes) -> str:
    return "whsec_" + base64.b64encode(raw).decode()


def with_operators(text: str, *digests: str) -> str:
    listed = "".join(f"  - name: op{i}\n    token_sha256: [{d}]\n" for i, d in enumerate(digests))
    return text.replace("agreements:\n", f"operators:\n{listed}agreements:\n")


def with_webhooks(text: str, first: list[str], second: list[str]) -> str:
    def hook(code: str, secrets: list[str]) -> str:
        return f"    webhook:\n      url: https://{code}.example/hook\n      secrets: [{', '.join(secrets)}]\n"

    text = text.replace("    subscriptions:\n", hook("a", first) + "    subscriptions:\n")
    return text.replace("    country: JO\n", "    country: JO\n" + hook("b", second))


EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
A_HASH = "a75eb2ef5cadbaa078db5eb20e5b9a4d8443be31a8d6d3be6229267613c6a6e8"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (VALID.replace(A_HASH, EMPTY_SHA256), "$.agencies[0].token_sha256[0]"),
        (with_operators(VALID, EMPTY_SHA256), "$.operators[0].token_sha256[0]"),
    ],
)
def test_the_empty_tokens_hash_is_refused(text: str, field: str) -> None:
    """The SHA-256 of the empty string is refused as an agency's or an operator's token hash."""
    assert [(field, True)] == [(f, "empty string" in m) for _, f, m in problems(text)]


def test_operator_token_hashes_are_checked_like_agencies() -> None:
    """An operator's token hash must be lower-case hex SHA-256 too, never a token or upper case."""
    found = problems(with_operators(VALID, "demo-duty-desk", sha("x").upper()))
    assert [f for _, f, _ in found] == ["$.operators[0].token_sha256[0]", "$.operators[1].token_sha256[0]"]


@pytest.mark.parametrize(
    ("text", "field", "owner"),
    [
        (
            VALID.replace("    country: JO\n", f"    country: JO\n    token_sha256: [{A_HASH}]\n"),
            "$.agencies[1].token_sha256[0]",
            "agency IQ-NAB",
        ),
        (with_operators(VALID, A_HASH), "$.operators[0].token_sha256[0]", "agency IQ-NAB"),
        (with_operators(VALID, sha("desk"), sha("desk")), "$.operators[1].token_sha256[0]", "operator op0"),
    ],
    ids=["agency-agency", "agency-operator", "operator-operator"],
)
def test_a_token_hash_belongs_to_one_principal(text: str, field: str, owner: str) -> None:
    """A hash listed for two principals is refused at the second listing, naming the first owner."""
    [(line, f, message)] = problems(text)
    assert (field, True) == (f, owner in message)
    assert line is not None


def test_registry_never_authenticates_a_shared_or_empty_hash() -> None:
    """Even a registry that skipped validation lets neither a shared hash nor the empty token in."""
    agencies = [
        Agency(code="IQ-A", name="a", country="IQ", token_sha256=[sha("shared"), EMPTY_SHA256]),
        Agency(code="JO-B", name="b", country="JO", token_sha256=[sha("b")]),
    ]
    _, published, _ = applied(
        RegistryDocument(agencies=agencies, operators=[Operator(name="desk", token_sha256=[sha("shared")])])
    )
    credentials = Credentials(published)
    assert [credentials.authenticate(t) for t in ("shared", "", "b")] == [None, None, ("agency", "JO-B")]


RANDOM = [secrets.token_bytes(32) for _ in range(3)]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (bytes(32), "not random"),
        (b"\x01\x02" * 16, "not random"),
        (b"correct horse battery staple!!!!", "not random"),
        (secrets.token_bytes(16), "24 to 64"),
    ],
    ids=["all-zero", "two-values", "plain-text", "16-bytes"],
)
def test_weak_webhook_secrets_are_refused(raw: bytes, why: str) -> None:
    """A secret of few distinct bytes, of printable text, or under 24 bytes is refused, saying why."""
    [(_, field, message)] = problems(with_webhooks(VALID, [secret(RANDOM[0]), secret(raw)], [secret(RANDOM[1])]))
    assert (field, why in message) == ("$.agencies[0].webhook.secrets[1]", True)


def test_a_secret_signs_one_endpoint_only() -> None:
    """A secret listed for two agencies' webhooks (anywhere in their rotation lists) is refused."""
    text = with_webhooks(VALID, [secret(RANDOM[0]), secret(RANDOM[1])], [secret(RANDOM[2]), secret(RANDOM[1])])
    [(_, field, message)] = problems(text)
    assert (field, "IQ-NAB" in message) == ("$.agencies[1].webhook.secrets[1]", True)


def test_random_secrets_of_distinct_endpoints_pass() -> None:
    """Secrets from `rctc secret` pass: the randomness tests refuse mistakes, not real secrets."""
    doc = parse_registry(with_webhooks(VALID, [secret(RANDOM[0])], [secret(RANDOM[1]), secret(RANDOM[2])]))
    assert sum(a.webhook is not None for a in doc.agencies) == 2


def test_anchors_and_aliases_are_refused_at_their_line_and_field() -> None:
    """A YAML anchor (and so any alias) is refused where it stands, by line and field."""
    text = VALID.replace('      - categories: ["terrorism.*"]', '      - categories: &cats ["terrorism.*"]')
    text = text.replace('    categories: ["*"]', "    categories: *cats")
    assert [(line, f) for line, f, _ in problems(text)] == [(7, "$.agencies[0].subscriptions[0].categories")]


def test_an_alias_bomb_is_refused_before_anything_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 'billion laughs' document (10**12 values once expanded) is refused while composing: nothing is
    constructed, so the expansion is never built."""
    levels = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 12)]
    bomb = "\n".join(levels) + "\nagencies: *l11\n"
    assert len(bomb) < 1024

    def never(*_: object) -> object:
        raise AssertionError("the loader constructed a value from a document with aliases")

    monkeypatch.setattr(document._Loader, "construct_document", never)
    [(line, field, message)] = problems(bomb)
    assert (line, field, "aliases" in message) == (1, "$.l0", True)


def test_deep_nesting_and_huge_files_are_refused() -> None:
    """A document nested deeper than a registry ever is, or larger than the bound, is refused, not parsed."""
    [(_, _, deep)] = problems("agencies: " + "[" * 100_000 + "]" * 100_000)
    [(_, _, huge)] = problems("#" * (document.MAX_REGISTRY_BYTES + 1))
    assert ("nested deeper" in deep, "at most" in huge) == (True, True)


def test_rate_limits_are_read_and_checked() -> None:
    """An agency's own rate limit and the registry default are read; a non-positive one is refused."""
    limits = "defaults:\n  rate_limit: {per_second: 5, burst: 10}\n"
    text = limits + VALID.replace("    country: JO\n", "    country: JO\n    rate_limit: {per_second: 0.5, burst: 2}\n")
    reg = Registry(applied(parse_registry(text))[0])
    assert [RateLimit(per_second=5.0, burst=10), RateLimit(per_second=0.5, burst=2)] == [
        reg.rate_limit_of(code) for code in ("IQ-NAB", "JO-TAC")
    ]
    found = {f for _, f, _ in problems(text.replace("per_second: 0.5, burst: 2", "per_second: 0, burst: 0"))}
    assert {"$.agencies[1].rate_limit.per_second", "$.agencies[1].rate_limit.burst"} == found


def test_rate_limits_and_defaults_travel_on_the_registry_topic(codec: Codec) -> None:
    """The published registry carries each agency's limit and the default through Avro."""
    doc = parse_registry(
        VALID.replace("    country: JO\n", "    country: JO\n    rate_limit: {per_second: 3, burst: 4}\n")
    )
    doc.defaults = Defaults(rate_limit=RateLimit(per_second=7.5, burst=9))
    published = applied(doc)[0]
    back = codec.decode(codec.encode(published), RegistryPublished)
    assert (back.agencies[0].rate_limit, back.agencies[1].rate_limit, back.defaults) == (
        None,
        RateLimit(per_second=3.0, burst=4),
        published.defaults,
    )


def test_suspended_agencies_authenticate_and_are_known_as_suspended() -> None:
    """A suspended agency's token still names it (so it can be told why), and the registry says it is suspended."""
    doc = parse_registry(VALID.replace("    country: IQ\n", "    country: IQ\n    active: false\n"))
    registry, credentials, _ = applied(doc)
    reg = Registry(registry)
    principal = Credentials(credentials).authenticate("demo-iq-nab")
    assert (principal, principal is not None and reg.is_suspended(principal)) == (("agency", "IQ-NAB"), True)


def test_audit_keys_are_validated_and_carried_to_the_registry(codec: Codec) -> None:
    """An audit key is base64 of 32 bytes under its own id, listed once; a valid one reaches Registry.audit_keys
    through registry.config's record."""
    raw = bytes(range(32))
    good = base64.b64encode(raw).decode()
    kid = hashlib.sha256(raw).hexdigest()[:16]
    other = base64.b64encode(bytes(range(1, 33))).decode()
    text = VALID + f"audit:\n  public_keys:\n    - {{id: {kid}, ed25519: {good}}}\n"
    doc = parse_registry(text)
    published = RegistryPublished(
        version=1,
        sha256="0",
        published_at=utcnow(),
        published_by="t",
        source="t",
        agencies=[a.entry() for a in doc.agencies],
        audit=doc.audit,
    )
    assert Registry(codec.decode(codec.encode(published), RegistryPublished)).audit_keys == {kid: raw}
    bad = VALID + (
        "audit:\n  public_keys:\n"
        f"    - {{id: {kid}, ed25519: '%%%'}}\n"
        f"    - {{id: {kid}, ed25519: {base64.b64encode(raw[:31]).decode()}}}\n"
        f"    - {{id: {kid}, ed25519: {other}}}\n"
        f"    - {{id: {kid}, ed25519: {good}}}\n"
        f"    - {{id: {kid}, ed25519: {good}}}\n"
    )
    found = [(field, message.split(" ")[0:3]) for _, field, message in problems(bad)]
    assert found == [
        ("$.audit.public_keys[0].ed25519", ["is", "base64", "of"]),
        ("$.audit.public_keys[1].ed25519", ["an", "Ed25519", "public"]),
        ("$.audit.public_keys[2].id", ["the", "id", "of"]),
        ("$.audit.public_keys[4].id", ["audit", "key", kid]),
    ]


def test_a_token_whose_bytes_are_not_utf8_authenticates_nobody() -> None:
    """aiohttp hands header bytes that are not UTF-8 over as surrogates: such a token is refused (401), never
    a crash with a traceback in the log (review finding)."""
    _, published, _ = applied(
        RegistryDocument(agencies=[Agency(code="JO-B", name="b", country="JO", token_sha256=[sha("b")])])
    )
    assert Credentials(published).authenticate("\udcff\udcfe") is None


GRADED = VALID.replace(
    '      - categories: ["terrorism.*"]\n',
    '      - categories: ["terrorism.*"]\n        min_source_reliability: B\n        min_information_credibility: 3\n',
).replace(
    "    max_tlp: AMBER\n", "    max_tlp: AMBER\n    min_source_reliability: C\n    min_information_credibility: 2\n"
)
SUB = "$.agencies[0].subscriptions[0]"
AGREEMENT = "$.agreements[0]"


def test_grading_minimums_are_read_and_travel_on_the_registry_topic(codec: Codec) -> None:
    """A subscription's and an agreement's minimum grading are read from the file and reach every service
    through registry.config's record; where none is written, none is asked for."""
    back = codec.decode(codec.encode(applied(parse_registry(GRADED))[0]), RegistryPublished)
    sub, agreed = back.agencies[0].subscriptions[0], back.agreements[0]
    plain = codec.decode(codec.encode(applied(parse_registry(VALID))[0]), RegistryPublished)
    none_sub, none_agreed = plain.agencies[0].subscriptions[0], plain.agreements[0]
    assert [sub.min_source_reliability, sub.min_information_credibility] == ["B", 3]
    assert [agreed.min_source_reliability, agreed.min_information_credibility] == ["C", 2]
    assert [none_sub.min_source_reliability, none_sub.min_information_credibility] == [None, None]
    assert [none_agreed.min_source_reliability, none_agreed.min_information_credibility] == [None, None]
    assert [Registry(back).agreements_require_grading, Registry(plain).agreements_require_grading] == [True, False]


@pytest.mark.parametrize(
    ("replace", "field", "words"),
    [
        (("reliability: B", "reliability: F"), f"{SUB}.min_source_reliability", "cannot be judged"),
        (("reliability: B", "reliability: G"), f"{SUB}.min_source_reliability", "'G' is not a grade"),
        (("reliability: B", "reliability: b"), f"{SUB}.min_source_reliability", "A (best) to E"),
        (("credibility: 3", "credibility: 6"), f"{SUB}.min_information_credibility", "cannot be judged"),
        (("credibility: 3", "credibility: 0"), f"{SUB}.min_information_credibility", "1 (best) to 5"),
        (("reliability: C", "reliability: F"), f"{AGREEMENT}.min_source_reliability", "cannot be judged"),
        (("credibility: 2", "credibility: 7"), f"{AGREEMENT}.min_information_credibility", "7 is not a grade"),
        (("credibility: 2", "credibility: B2"), f"{AGREEMENT}.min_information_credibility", "Expected `int | null`"),
        (("credibility: 2", "credibility: true"), f"{AGREEMENT}.min_information_credibility", "Expected `int | null`"),
    ],
)
def test_grading_minimums_must_be_judged_grades(replace: tuple[str, str], field: str, words: str) -> None:
    """A minimum is a grade someone could judge (A-E, 1-5), so F and 6 ("cannot be judged") are refused with
    why, as is anything that is no grade, each at its field."""
    found = problems(GRADED.replace(*replace))
    assert [f for _, f, m in found if words in m] == [field], found
