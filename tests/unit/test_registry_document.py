"""Registry files are validated with every problem reported by line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import RegistryError
from services.common.records import utcnow
from services.common.registry import Registry, RegistryPublished, load_registry, parse_registry

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "registry" / "demo.yaml"

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
    doc = parse_registry(VALID)
    reg = Registry(
        RegistryPublished(
            version=1,
            sha256="x",
            published_at=utcnow(),
            published_by="t",
            source="s",
            agencies=doc.agencies,
            agreements=doc.agreements,
        )
    )
    assert reg.authenticate("demo-iq-nab") == ("agency", "IQ-NAB")
    assert reg.authenticate("demo-jo-tac") is None
