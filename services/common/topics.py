"""Topic names, and creating topics from their declaration in services/common/topics.yaml.

    declarations = load_declarations()
    report = await apply_topics(kafka_settings, declarations.all_for(agency_codes), replication_factor=1)

`apply_topics` creates what is missing and reports drift (fewer partitions than declared, a config that
differs); it never deletes a topic nor lowers partitions, which would lose data or break key ordering.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

from services.common.errors import NotReadyError
from services.common.kafka import admin as kafka_admin
from services.common.settings import KafkaSettings

# Package data beside this module, like the schemas (codec.py): `rctc topics apply` from an installed wheel
# creates what this file declares, wherever it runs.
DECLARATIONS: Traversable = files("services.common") / "topics.yaml"

ALERTS_SUBMITTED = "alerts.submitted"
ALERTS_ENRICHED = "alerts.enriched"
ALERTS_REJECTED = "alerts.rejected"
ALERTS_ROUTED = "alerts.routed"
ALERTS_CORRELATED = "alerts.correlated"
# The correlator's internal topics (services/correlator/app.py).
CORRELATOR_SIGHTINGS = "correlator.sightings"
CORRELATOR_INDEX_CHANGELOG = "correlator.index.changelog"
ALERTS_ESCALATIONS = "alerts.escalations"
ALERTS_SCHEDULED = "alerts.scheduled"
ALERTS_RETIRED = "alerts.retired"
ACKS_SUBMITTED = "acks.submitted"
DELIVERIES_WEBHOOK = "deliveries.webhook"
DELIVERIES_EVENTS = "deliveries.events"
DELIVERIES_DEAD = "deliveries.dead"
DELIVERIES_ENDPOINTS = "deliveries.endpoints"
RECORDS_QUARANTINE = "records.quarantine"
REQUESTS_RESEND = "requests.resend"
REQUESTS_ONWARD = "requests.onward"


def retry_topic(tier: str) -> str:
    """The delay-tier topic of a tier name such as `30s` (services/dispatcher/schedule.py)."""
    return f"deliveries.retry.{tier}"


AUDIT_EVENTS = "audit.events"
AUDIT_CHECKPOINTS = "audit.checkpoints"
REGISTRY = "registry.config"
# The registry's secrets, apart from it, each readable by its one consumer (services/common/registry/model.py).
REGISTRY_CREDENTIALS = "registry.credentials"
REGISTRY_WEBHOOK_SECRETS = "registry.webhook-secrets"
# Operators' watchlist entries, by `<kind>:<comparable value>` (services/common/watchlist.py); only the enricher
# and operators read it.
WATCHLIST_ENTRIES = "watchlist.entries"


def agency_topic(code: str) -> str:
    """The agency's own topic, `agency.<CODE>.alerts` (docs/architecture.md, Topics)."""
    return f"agency.{code}.alerts"


AGENCY_ACKS_PATTERN = r"^agency\.[A-Z0-9-]+\.acks$"
AGENCY_SUBMISSIONS_PATTERN = r"^agency\.[A-Z0-9-]+\.submissions$"


def agency_ack_topic(code: str) -> str:
    """The topic an agency produces its acknowledgements to; being able to write it is its identity."""
    return f"agency.{code}.acks"


def agency_submission_topic(code: str) -> str:
    """The topic an agency submits alerts to (SubmitAlert); being able to write it is its identity."""
    return f"agency.{code}.submissions"


def agency_rejection_topic(code: str) -> str:
    """Where the gateway refuses an agency's Kafka submissions, and the router its follow-ups (SubmissionRejected);
    only that agency reads it."""
    return f"agency.{code}.rejections"


def agency_of(topic: str, kind: str) -> str | None:
    """The agency code of `agency.<CODE>.<kind>`, or None for any other topic."""
    parts = topic.split(".")
    return parts[1] if len(parts) == 3 and parts[0] == "agency" and parts[2] == kind and parts[1] else None


def agency_of_ack_topic(topic: str) -> str | None:
    return agency_of(topic, "acks")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)
    # Who may write and read it (topics.yaml; services/common/acls.py turns them into ACLs).
    writers: tuple[str, ...] = ()
    readers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Declarations:
    topics: tuple[TopicSpec, ...]
    # Every agency has one topic per template (`agency_topics` in topics.yaml); `{code}` in the name is its code.
    agency_templates: tuple[TopicSpec, ...]

    def for_agency(self, code: str) -> list[TopicSpec]:
        """The agency's own topics: alerts, acks, submissions, rejections (as topics.yaml lists them)."""
        return [
            TopicSpec(
                t.name.format(code=code), t.partitions, t.replication_factor, dict(t.config), t.writers, t.readers
            )
            for t in self.agency_templates
        ]

    def all_for(self, agency_codes: list[str] | tuple[str, ...]) -> list[TopicSpec]:
        return [*self.topics, *(s for c in agency_codes for s in self.for_agency(c))]


def load_declarations(path: Traversable = DECLARATIONS) -> Declarations:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    defaults = data.get("defaults", {})

    def spec(name: str, body: dict[str, Any]) -> TopicSpec:
        config = {**defaults.get("config", {}), **(body.get("config") or {})}
        return TopicSpec(
            name=name,
            partitions=int(body.get("partitions", defaults.get("partitions", 1))),
            replication_factor=int(body.get("replication_factor", defaults.get("replication_factor", 1))),
            config={k: str(v) for k, v in config.items()},
            writers=tuple(body.get("writers") or ()),
            readers=tuple(body.get("readers") or ()),
        )

    topics = tuple(spec(name, body or {}) for name, body in data["topics"].items())
    templates = tuple(spec(name, body or {}) for name, body in data["agency_topics"].items())
    return Declarations(topics, templates)


# How long apply waits for the broker's metadata to show every topic it declares (then NotReadyError).
VISIBLE_WITHIN_S = 60.0


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    grown: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)


async def apply_topics(
    kafka: KafkaSettings,
    specs: list[TopicSpec],
    *,
    replication_factor: int | None = None,
    grow_partitions: bool = False,
) -> ApplyReport:
    """Create missing topics; report (and with grow_partitions, fix) partition and config drift.

    NotReadyError if the broker's metadata does not show every topic within VISIBLE_WITHIN_S."""
    report = ApplyReport()
    admin = kafka_admin(kafka, "topics")
    await admin.start()
    try:
        rf = replication_factor
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        for s in missing:
            config = dict(s.config)
            if rf is not None and rf < 2:
                # min.insync.replicas above the replication factor would refuse every acks=all write.
                config["min.insync.replicas"] = "1"
            response = await admin.create_topics(
                [NewTopic(s.name, s.partitions, rf or s.replication_factor, topic_configs=config)]
            )
            # aiokafka answers a topic's error in the response instead of raising it. Already there: another
            # apply created it meanwhile, or the broker listed topics from metadata that had not caught up
            # with ones created moments before (seen with a single KRaft broker): check it like any other.
            error = next((e for e in response.topic_errors if e[0] == s.name), (s.name, 0))[1]
            if error == TopicAlreadyExistsError.errno:
                existing.add(s.name)
            elif error:
                raise for_code(error)(f"creating {s.name}: {response.topic_errors}")
            else:
                report.created.append(s.name)
        present = [s for s in specs if s.name in existing]
        # Before returning, and before judging drift: every declared topic has its partitions in the broker's
        # metadata (right after a create, a loaded single KRaft broker lists some topics seconds late).
        partitions = await _partitions_when_visible(admin, [s.name for s in specs], VISIBLE_WITHIN_S)
        if present:
            configs = await _configs(admin, [s.name for s in present])
            for s in present:
                drifted = False
                have = partitions.get(s.name, 0)
                if have < s.partitions:
                    if grow_partitions:
                        await admin.create_partitions({s.name: NewPartitions(s.partitions)})
                        report.grown.append(f"{s.name}: partitions {have} -> {s.partitions}")
                    else:
                        report.drift.append(f"{s.name}: {have} partitions, declared {s.partitions}")
                        drifted = True
                elif have > s.partitions:
                    report.drift.append(f"{s.name}: {have} partitions, declared {s.partitions} (never lowered)")
                    drifted = True
                for key, want in s.config.items():
                    if key == "min.insync.replicas" and rf is not None and rf < 2:
                        continue
                    got = configs.get(s.name, {}).get(key)
                    if got is not None and got != want:
                        report.drift.append(f"{s.name}: {key}={got}, declared {want}")
                        drifted = True
                if not drifted:
                    report.unchanged.append(s.name)
    finally:
        await admin.close()
    return report


async def _partitions_when_visible(admin: AIOKafkaAdminClient, names: list[str], within_s: float) -> dict[str, int]:
    """Each topic's partition count, once the broker's metadata shows all of them.

    NotReadyError naming the topics it does not show within `within_s`: said on one line by `rctc` (a bare
    TimeoutError was a traceback in `make run` that named nothing).
    """
    described: list[dict[str, Any]] = []
    deadline = asyncio.timeout(within_s)
    try:
        async with deadline:
            while True:
                described = await admin.describe_topics(names)
                partitions = {t["topic"]: len(t["partitions"]) for t in described if not t["error_code"]}
                if all(partitions.get(n, 0) > 0 for n in names):
                    return partitions
                await asyncio.sleep(0.2)
    except TimeoutError:
        if not deadline.expired():
            raise  # the client's own, not our wait's
        missing = _not_shown(names, described)
        raise NotReadyError(
            f"the broker does not show {len(missing)} of {len(names)} topics after {within_s:g} s: "
            f"{', '.join(missing)}; check the broker's health (its log; a controller elected, every partition "
            "with a leader), then apply again"
        ) from None


def _not_shown(names: list[str], described: list[dict[str, Any]]) -> list[str]:
    """The topics a describe_topics answer does not show with partitions, each with the broker's reason."""
    shown = {t["topic"]: t for t in described}
    missing = []
    for name in names:
        topic = shown.get(name)
        if topic is None:
            missing.append(f"{name} (no answer)")
        elif topic["error_code"]:
            missing.append(f"{name} ({for_code(topic['error_code']).__name__})")
        elif not topic["partitions"]:
            missing.append(f"{name} (no partitions)")
    return missing


async def _configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
    result: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for resource in response.resources:
            _, _, _, name, entries = resource[:5]
            result[name] = {e[0]: e[1] for e in entries}
    return result
