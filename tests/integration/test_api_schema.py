"""The gateway answers as docs/openapi.yaml says: requests generated from the document (schemathesis), sent
with real tokens to the real gateway and tracker on the real broker, never get a 5xx, and every answer has
a documented status code, content type, headers and body.

Bounded for `make test`: EXAMPLES generated requests per operation, principal and mode (data that fits the
document, and data that does not), about 170 requests in all. The document is read from disk; nothing is
fetched at run time.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.common.codec import Codec
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from tests.support.system import system
from tests.support.world import Cast, agreement, alert_json, eventually, registry

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
OPERATOR = "operator-token-schema"
EXAMPLES = 6
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def _exercise(base_url: str, tokens: dict[str, str], known_alert: str) -> list[str]:
    """Every operation, as every principal, with generated data; the failures, described (run in a thread)."""
    schema = schemathesis.openapi.from_path(SPEC)
    failures: list[str] = []
    session = requests.Session()

    def run(strategy: Any, checks: list[Callable[..., Any]], label: str) -> None:
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def one(case: Any) -> None:
            try:
                response = case.call(base_url=base_url, session=session, timeout=30)
                case.validate_response(response, checks=checks)
            except (Exception, BaseExceptionGroup):  # collected, not raised: every failure reported, none shrunk
                failures.append(f"{label}:\n{traceback.format_exc(limit=0)}")

        try:
            one()
        except Unsatisfiable:
            # Negative data for an operation with nothing a caller sends (GET /v1/onward: no parameter, no
            # body) cannot be made: there is nothing to break. Anything else must generate.
            if "negative" not in label:
                raise

    for result in schema.get_all_operations():
        operation = result.ok()
        for who, token in tokens.items():
            auth = {"Authorization": f"Bearer {token}"}
            # Data that does not fit the document, as an agency and as an operator (the recipient's requests
            # are refused by the same code as the originator's).
            modes = (GenerationMode.POSITIVE,) if who == "recipient" else tuple(GenerationMode)
            for mode in modes:
                checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS
                strategy = operation.as_strategy(generation_mode=mode, headers=auth)
                run(strategy, checks, f"{who} {mode.value} {operation.label}")
            if "{alert_id}" in operation.path:
                strategy = operation.as_strategy(headers=auth, path_parameters={"alert_id": known_alert})
                run(strategy, CHECKS, f"{who} known alert {operation.label}")
    return failures


# schemathesis draws from `random` inside its strategies, which hypothesis now deprecates; not ours to fix.
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies:hypothesis.errors.HypothesisDeprecationWarning"
)
async def test_gateway_answers_as_documented(kafka: KafkaSettings, codec: Codec) -> None:
    """Generated requests with agency and operator tokens: no 5xx, every answer as docs/openapi.yaml says."""
    cast = Cast()
    origin, recipient = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO")
    doc = registry(
        [origin, recipient], [agreement(f"S-{cast.suffix}", [origin.code, recipient.code])], operator_token=OPERATOR
    )
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)
    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:
        # One routed alert, so the reads and the ack also meet an id that exists, as each kind of viewer.
        async with http.post(f"{sys_.url}/v1/alerts", json=alert_json(), headers=cast.bearer(origin.code)) as r:
            alert_id = (await r.json())["alert_id"]

        async def routed() -> bool:
            async with http.get(f"{sys_.url}/v1/alerts/{alert_id}", headers=cast.bearer(origin.code)) as r:
                return r.status == 200

        await eventually(routed)
        tokens = {
            "originator": cast.tokens[origin.code],
            "recipient": cast.tokens[recipient.code],
            "operator": OPERATOR,
        }
        failures = await asyncio.to_thread(_exercise, sys_.url, tokens, alert_id)
    assert not failures, "\n\n".join(failures)
