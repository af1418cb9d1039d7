"""Zero trust on the secured broker: every principal may do exactly what services/common/topics.yaml and the registry
say, and nothing else.

On a broker of its own (ACLs are cluster-wide: this module owns them all), with the ACLs `rctc registry
apply` makes. Denials are observed with confluent-kafka, which reports them (aiokafka shows an
unauthorized read as an empty one). The expected matrix is read from topics.yaml here, independently of
services/common/acls.py, which computes what the broker is given.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from services.cli.local_broker import LocalBroker
from services.cli.security import apply_acls
from services.common.acls import AgencyAccess
from services.common.codec import Codec
from services.common.kafka import commit_at_end
from services.common.kafka_admin import SecurityAdmin
from services.common.lag import fetch_lag
from services.common.librdkafka import confluent_config
from services.common.registry.publish import publish_registry
from services.common.topics import DECLARATIONS, apply_topics, load_declarations
from tests.support.world import Cast, agreement, registry

SERVICES = ("gateway", "enricher", "router", "auditor", "dispatcher", "tracker", "correlator", "console")
PREFIX = "acl"


def declared_access() -> dict[str, dict[str, set[str]]]:
    """topics.yaml read directly: topic (agency templates with `{code}`) -> {"read": roles, "write": roles}."""
    data = yaml.safe_load(DECLARATIONS.read_text())
    table = {**data["topics"], **data["agency_topics"]}
    return {
        name: {"read": set(body.get("readers", [])), "write": set(body.get("writers", []))}
        for name, body in table.items()
    }


def expected(principal: str, codes: list[str], active: set[str]) -> dict[str, set[str]]:
    """topic -> the operations `principal` may perform on it ("read", "write"), per the declaration."""
    roles: set[str] = set()
    own_code = None
    if principal.startswith("service-"):
        roles = {principal.removeprefix("service-"), "services"}
    elif principal == "operator-cli":
        roles = {"operator"}
    else:
        own_code = principal.removeprefix("agency-")
    allowed: dict[str, set[str]] = {}
    for name, access in declared_access().items():
        topics = [(name.format(code=c), c) for c in codes] if "{code}" in name else [(name, None)]
        for topic, code in topics:
            who = set(roles)
            if own_code is not None and code == own_code and own_code in active:
                who.add("agency")
            ops = {op for op, holders in access.items() if who & holders}
            if principal == "operator-cli" or (principal == "service-console" and code is None):
                ops.add("describe")  # every declared topic, for `rctc lag` and the console's lag page (acls.py)
            if ops:
                allowed[topic] = ops
    return allowed


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    broker = LocalBroker.start(tmp_path_factory.mktemp("acl-kafka"))
    try:
        yield broker
    finally:
        broker.stop()


class World:
    def __init__(self, broker: LocalBroker, cast: Cast) -> None:
        self.broker = broker
        self.admin = broker.admin_settings(client_id_prefix=PREFIX)
        self.cast = cast
        self.passwords: dict[str, str] = {}
        self.codes = [cast.code("IQ-A"), cast.code("IQ-A") + "2", cast.code("SY-S")]

    def config(self, user: str, password: str | None = None) -> dict[str, Any]:
        """librdkafka's settings for `user` (with its own password unless another is given)."""
        secret = SecretStr(password or self.passwords[user])
        return confluent_config(self.admin.model_copy(update={"username": user, "password": secret}), "probe")


@pytest.fixture(scope="module")
def world(own_broker: LocalBroker) -> World:
    """Every declared topic, a registry of three agencies (one suspended; two whose codes share a prefix),
    a password for every principal, the ACLs, and one record on every topic."""
    return asyncio.run(_world(own_broker))


async def _world(own_broker: LocalBroker) -> World:
    cast = Cast()
    w = World(own_broker, cast)
    a, a2, s = w.codes
    agencies = [
        cast.agency("IQ-A", "IQ"),
        cast.agency("IQ-A", "IQ"),
        cast.agency("SY-S", "SY", active=False),
    ]
    agencies[1].code = a2  # IQ-A<suffix>2: a code that the first one's is a prefix of
    await apply_topics(w.admin, list(load_declarations().topics), replication_factor=1)
    doc = registry(agencies, [agreement("sharing", [a, a2, s])])
    await publish_registry(w.admin, Codec.from_directory(), doc, source="acl-test", replication_factor=1)
    await apply_acls(w.admin, [AgencyAccess(a, True), AgencyAccess(a2, True), AgencyAccess(s, False)])
    security = SecurityAdmin(w.admin)
    users = [f"service-{n}" for n in SERVICES] + ["operator-cli"] + [f"agency-{c}" for c in w.codes]
    for user in users:
        w.passwords[user] = secrets.token_urlsafe(24)
        await security.set_password(user, w.passwords[user])
    seed = Producer(confluent_config(w.admin, "seed"))
    for topic in all_topics(w):
        seed.produce(topic, b"seed", key=b"seed", partition=0)  # compacted topics need a key
    assert seed.flush(30) == 0
    return w


def all_topics(w: World) -> list[str]:
    declarations = load_declarations()
    return [t.name for t in declarations.all_for(w.codes)]


def described(config: dict[str, Any]) -> set[str]:
    metadata = AdminClient(config).list_topics(timeout=15)
    return {name for name in metadata.topics if not name.startswith("__")}


def write_outcomes(config: dict[str, Any], topics: list[str]) -> dict[str, bool]:
    """topic -> whether a produce was acknowledged (False: refused with an authorization error)."""
    outcomes: dict[str, bool] = {}

    def done(error: KafkaError | None, message: Any) -> None:
        outcomes[message.topic()] = error is None
        if error is not None:
            assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error

    p = Producer({**config, "message.timeout.ms": 15000})
    for topic in topics:
        p.produce(topic, b"probe", key=b"probe", partition=0, on_delivery=done)
    assert p.flush(30) == 0
    return outcomes


def read_outcomes(config: dict[str, Any], topics: list[str], group: str) -> dict[str, bool]:
    """topic -> whether its seed record could be fetched (False: the fetch was refused)."""
    c = Consumer({**config, "group.id": group, "enable.auto.commit": False})
    outcomes: dict[str, bool] = {}
    try:
        c.assign([TopicPartition(t, 0, OFFSET_BEGINNING) for t in topics])
        deadline = time.monotonic() + 30
        while len(outcomes) < len(topics) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error() is None:
                outcomes.setdefault(m.topic(), True)
            elif m.error().code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
                continue  # librdkafka looks up the coordinator of the group it must name; fetching goes on
            else:
                assert m.error().code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, m.error()
                outcomes[m.topic()] = False
    finally:
        c.close()
    return outcomes


def principals(w: World) -> list[str]:
    return [f"service-{n}" for n in SERVICES] + ["operator-cli"] + [f"agency-{c}" for c in w.codes]


async def test_every_principal_reads_writes_and_describes_exactly_what_the_declaration_says(world: World) -> None:
    """For every service, the operator and every agency: each topic is described, written and read exactly
    where topics.yaml (and, for agencies, being active) allows it, and refused everywhere else."""
    w = world
    topics = all_topics(w)
    active = set(w.codes[:2])
    for principal in principals(w):
        want = expected(principal, w.codes, active)
        config = w.config(principal)
        seen = await asyncio.to_thread(described, config)
        assert sorted(seen) == sorted(want), principal
        writes = await asyncio.to_thread(write_outcomes, config, topics)
        assert {t for t, ok in writes.items() if ok} == {t for t, ops in want.items() if "write" in ops}, principal
        assert set(writes) == set(topics), principal  # every refusal was reported, none timed out
        group = f"agency-{principal.removeprefix('agency-')}.probe" if principal.startswith("agency-") else "x"
        reads = await asyncio.to_thread(read_outcomes, config, sorted(seen), group)
        assert {t for t, ok in reads.items() if ok} == {t for t, ops in want.items() if "read" in ops}, principal


async def test_the_tracker_writes_reminders_to_agency_alerts_topics_and_an_agency_still_may_not(world: World) -> None:
    """The tracker may write every listed agency's alerts topic (its reminders), suspended ones included, and
    no other agency topic; an agency still may not write its own alerts topic (only the center does)."""
    w = world
    a = w.codes[0]
    alerts = [f"agency.{code}.alerts" for code in w.codes]
    others = [f"agency.{a}.{kind}" for kind in ("acks", "submissions", "rejections")]
    tracker = await asyncio.to_thread(write_outcomes, w.config("service-tracker"), alerts + others)
    assert tracker == {**dict.fromkeys(alerts, True), **dict.fromkeys(others, False)}
    own = await asyncio.to_thread(write_outcomes, w.config(f"agency-{a}"), [f"agency.{a}.alerts"])
    assert own == {f"agency.{a}.alerts": False}


async def test_the_tracker_reads_correlations_and_an_agency_neither_reads_nor_writes_them(world: World) -> None:
    """alerts.correlated names both originators of every correlation: the tracker reads it for the duty desk
    (and does not write it); an agency, even one whose alerts it names, cannot even see that it exists (a read
    of a topic it may not describe is never answered: only the matrix's described topics are read) nor write it."""
    w = world
    topic = ["alerts.correlated"]
    agency = w.config(f"agency-{w.codes[0]}")
    tracker_reads = await asyncio.to_thread(read_outcomes, w.config("service-tracker"), topic, "x")
    agency_sees = topic[0] in await asyncio.to_thread(described, agency)
    writes = [
        await asyncio.to_thread(write_outcomes, w.config("service-tracker"), topic),
        await asyncio.to_thread(write_outcomes, agency, topic),
    ]
    assert (tracker_reads, agency_sees, writes) == ({topic[0]: True}, False, [{topic[0]: False}] * 2)


async def test_the_router_tells_every_agency_of_its_refused_follow_ups_and_writes_nothing_an_agency_writes(
    world: World,
) -> None:
    """The router may write every listed agency's alerts and rejections topics (its copies, and its refusals of
    follow-ups, services/router/refusals.py), suspended ones included, and neither of the topics an agency
    writes itself (acks and submissions: their writer is the agency's identity)."""
    w = world
    a = w.codes[0]
    told = [f"agency.{code}.{kind}" for code in w.codes for kind in ("alerts", "rejections")]
    others = [f"agency.{a}.{kind}" for kind in ("acks", "submissions")]
    router = await asyncio.to_thread(write_outcomes, w.config("service-router"), told + others)
    assert router == {**dict.fromkeys(told, True), **dict.fromkeys(others, False)}


def group_allowed(config: dict[str, Any], group: str) -> bool:
    admin = AdminClient(config)
    future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=15)[group]
    try:
        future.result()
        return True
    except KafkaException as exc:
        assert exc.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED, exc
        return False


def transactional_id_allowed(config: dict[str, Any], transactional_id: str) -> bool:
    p = Producer({**config, "transactional.id": transactional_id})
    try:
        p.init_transactions(15)
        return True
    except KafkaException as exc:
        assert exc.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, exc
        return False


async def test_groups_and_transactional_ids_stay_under_their_owners_prefix(world: World) -> None:
    """An agency uses groups and transactional ids under `agency-<CODE>.` only: not another agency's (even
    one whose code its own is a prefix of), not a service's; a service uses its own and no other's."""
    w = world
    a, a2, _ = w.codes
    agency_a = w.config(f"agency-{a}")
    cases = [
        (agency_a, f"agency-{a}.analysts", True),
        (agency_a, f"agency-{a2}.analysts", False),
        (agency_a, f"agency-{a}2.analysts", False),
        (agency_a, f"{PREFIX}-router", False),
        (w.config("service-router"), f"{PREFIX}-router", True),
        (w.config("service-router"), f"{PREFIX}-tracker", False),
        (w.config("service-router"), f"agency-{a}.analysts", False),
        # The correlator's group is its faust app's id.
        (w.config("service-correlator"), f"{PREFIX}-correlator", True),
        (w.config("service-correlator"), f"{PREFIX}-router", False),
        (agency_a, f"{PREFIX}-correlator", False),
    ]
    got = [await asyncio.to_thread(group_allowed, config, group) for config, group, _ in cases]
    assert got == [ok for _, _, ok in cases]
    transactional = [
        (agency_a, f"agency-{a}.tx-1", True),
        (agency_a, f"agency-{a2}.tx-1", False),
        (agency_a, f"{PREFIX}-router-alerts.enriched-0", False),
        (w.config("service-router"), f"{PREFIX}-router-alerts.enriched-0", True),
        (w.config("service-router"), f"{PREFIX}-tracker-escalations-0", False),
        (w.config("service-gateway"), f"{PREFIX}-router-alerts.enriched-0", False),
    ]
    got = [await asyncio.to_thread(transactional_id_allowed, config, tid) for config, tid, _ in transactional]
    assert got == [ok for _, _, ok in transactional]


async def test_a_wrong_password_is_refused(world: World) -> None:
    """A principal with a wrong password connects to nothing (no metadata at all)."""
    config = world.config("service-router", password="not-the-password")
    with pytest.raises(KafkaException):
        await asyncio.to_thread(lambda: AdminClient(config).list_topics(timeout=5))


async def test_a_suspended_agency_is_cut_off_and_a_rotated_password_replaces_the_old(world: World) -> None:
    """Suspending an agency in the registry removes its access at the next request of a client already
    reading; rotating a password makes the old one fail and the new one work."""
    w = world
    a, a2, s = w.codes
    principal = f"agency-{a2}"
    config = w.config(principal)
    own = f"agency.{a2}.alerts"
    reader = Consumer(
        {
            **config,
            "group.id": f"agency-{a2}.reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 100,
        }
    )

    def read_to_the_end() -> int:
        records = 0
        while (m := reader.poll(15)) is not None and m.error() is None:
            records += 1
        assert m is not None and m.error().code() == KafkaError._PARTITION_EOF, m and m.error()
        return records

    try:
        reader.assign([TopicPartition(own, 0, OFFSET_BEGINNING)])
        assert await asyncio.to_thread(read_to_the_end) > 0  # it reads while active
        await apply_acls(w.admin, [AgencyAccess(a, True), AgencyAccess(a2, False), AgencyAccess(s, False)])
        # A fetch the broker authorised before the ACLs went may still be waiting (fetch.wait.max.ms); what
        # is written once it has returned must never reach the suspended agency.
        await asyncio.sleep(1.0)
        seed = Producer(confluent_config(w.admin, "seed"))
        seed.produce(own, b"after-suspension", key=b"k", partition=0)
        assert seed.flush(15) == 0

        def next_outcome() -> KafkaError | bytes | None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                m = reader.poll(0.5)
                if m is not None:
                    return m.error() or m.value()
            return None

        outcome = await asyncio.to_thread(next_outcome)
        assert isinstance(outcome, KafkaError) and outcome.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, outcome
    finally:
        reader.close()
        await apply_acls(w.admin, [AgencyAccess(a, True), AgencyAccess(a2, True), AgencyAccess(s, False)])

    old = w.passwords[principal]
    new = secrets.token_urlsafe(24)
    await SecurityAdmin(w.admin).set_password(principal, new)
    w.passwords[principal] = new
    assert own in await asyncio.to_thread(described, w.config(principal))
    with pytest.raises(KafkaException):
        await asyncio.to_thread(lambda: AdminClient(w.config(principal, password=old)).list_topics(timeout=5))


async def test_an_agency_submits_only_on_its_own_topic_and_reads_only_its_own_rejections(world: World) -> None:
    """An agency's submission is taken on its own submissions topic and refused by the broker on another's
    (even one whose code its own is a prefix of); it reads its own rejections, and another's are not even
    described to it (librdkafka reports no error for a topic missing from metadata: it is simply absent)."""
    w = world
    a, a2, _ = w.codes
    config = w.config(f"agency-{a}")
    own, other = f"agency.{a}.submissions", f"agency.{a2}.submissions"
    writes = await asyncio.to_thread(write_outcomes, config, [own, other])
    assert writes == {own: True, other: False}
    own, other = f"agency.{a}.rejections", f"agency.{a2}.rejections"
    reads = await asyncio.to_thread(read_outcomes, config, [own], f"agency-{a}.rejections")
    seen = await asyncio.to_thread(described, config)
    assert (reads, own in seen, other in seen) == ({own: True}, True, False)


def commit_refused(config: dict[str, Any], group: str, topic: str) -> bool:
    """Whether committing an offset for `group` is refused (GROUP_AUTHORIZATION_FAILED)."""
    c = Consumer({**config, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
        return False
    except KafkaException as exc:
        assert exc.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED, exc
        return True
    finally:
        c.close()


async def test_the_operator_sees_every_groups_lag_and_commits_into_none(world: World) -> None:
    """`rctc lag` as operator-cli: it lists and describes this system's groups (the router's, committed at the end
    of a retry tier it does not read, and of alerts.routed), reads their offsets and the topics' ends, and may
    not commit into a service's group; an agency's group it may not even describe."""
    w = world
    operator = w.config("operator-cli")
    group = f"{PREFIX}-router"
    await commit_at_end(w.admin, group, ["alerts.routed", "deliveries.retry.5s"])
    agency_group = f"agency-{w.codes[0]}.analysts"
    await commit_at_end(w.admin, agency_group, [f"agency.{w.codes[0]}.alerts"])
    settings = w.admin.model_copy(
        update={"username": "operator-cli", "password": SecretStr(w.passwords["operator-cli"])}
    )
    rows = await fetch_lag(settings)
    assert [(r.group, r.topic, r.lag, r.end > 0) for r in rows] == [
        (group, "alerts.routed", 0, True),
        (group, "deliveries.retry.5s", 0, True),
    ]
    allowed = [
        await asyncio.to_thread(group_allowed, operator, group),
        await asyncio.to_thread(group_allowed, operator, agency_group),
    ]
    refused = await asyncio.to_thread(commit_refused, operator, group, "alerts.routed")
    assert (allowed, refused) == ([True, False], True)
