"""The least-privilege ACLs computed from services/common/topics.yaml and the registry (services/common/acls.py)."""

from __future__ import annotations

from services.common.acls import Acl, AgencyAccess, desired_acls, reconcile
from services.common.topics import load_declarations


def test_every_declared_topic_has_a_writer_and_a_reader() -> None:
    """A topic nobody may write (or read) is a declaration that forgot someone: with the authorizer on, the
    service that uses it fails (records.quarantine had neither, and every quarantine write was refused)."""
    declarations = load_declarations()
    specs = [*declarations.topics, *declarations.for_agency("IQ-NAB")]
    missing = [s.name for s in specs if not s.writers or not s.readers]
    assert missing == []


def test_a_suspended_agency_has_no_acl_and_codes_never_share_a_prefix() -> None:
    """An active agency reads its alerts and rejections topics and writes its acks and submissions topics
    (literal names); a suspended one
    has nothing; groups and transactional ids end with a dot so one code's never covers a longer code's."""
    wanted = desired_acls(
        load_declarations(), [AgencyAccess("IQ-NAB", True), AgencyAccess("IQ-NAB2", False)], client_id_prefix="rctc"
    )
    nab = sorted(str(a) for a in wanted if a.principal == "agency-IQ-NAB")
    assert nab == [
        "agency-IQ-NAB read group agency-IQ-NAB.*",
        "agency-IQ-NAB read topic agency.IQ-NAB.alerts",
        "agency-IQ-NAB read topic agency.IQ-NAB.rejections",
        "agency-IQ-NAB write topic agency.IQ-NAB.acks",
        "agency-IQ-NAB write topic agency.IQ-NAB.submissions",
        "agency-IQ-NAB write transactional_id agency-IQ-NAB.*",
    ]
    assert [a for a in wanted if a.principal == "agency-IQ-NAB2"] == []
    assert all(a.pattern == "literal" for a in wanted if a.resource == "topic")


def test_reconcile_deletes_only_what_this_system_manages() -> None:
    """Extra ACLs of managed principals are deleted; another principal's are left alone and reported."""
    keep = Acl("service-router", "topic", "alerts.routed", "literal", "write")
    stale = Acl("agency-OLD", "topic", "agency.OLD.alerts", "literal", "read")
    foreign = Acl("kafka-connect", "topic", "alerts.routed", "literal", "read")
    plan = reconcile({keep}, {keep, stale, foreign})
    assert (plan.create, plan.delete, plan.foreign) == ((), (stale,), (foreign,))


def test_the_router_writes_an_agencys_alerts_and_rejections_and_reads_none_of_its_topics() -> None:
    """The router writes each agency's copies and its refusals of follow-ups (router/refusals.py), and nothing
    the agency writes; so does the gateway its refusals of Kafka submissions."""
    wanted = desired_acls(load_declarations(), [AgencyAccess("IQ-NAB", True)], client_id_prefix="rctc")

    def on_agency_topics(principal: str) -> list[str]:
        return sorted(str(a) for a in wanted if a.principal == principal and a.name.startswith("agency.IQ-NAB."))

    assert on_agency_topics("service-router") == [
        "service-router write topic agency.IQ-NAB.alerts",
        "service-router write topic agency.IQ-NAB.rejections",
    ]
    assert "service-gateway write topic agency.IQ-NAB.rejections" in on_agency_topics("service-gateway")


def test_the_tracker_reads_correlations_and_no_agency_may() -> None:
    """alerts.correlated names both originators of every correlation: the correlator and the router write it,
    the router and the tracker (the duty desk's view) and operators read it, and no agency does anything with it.
    The ACL matrix (tests/integration/test_acl_matrix.py) follows the declaration; this pins the declaration."""
    wanted = desired_acls(load_declarations(), [AgencyAccess("IQ-NAB", True)], client_id_prefix="rctc")
    on_topic = sorted(
        f"{a.principal} {a.operation}" for a in wanted if (a.resource, a.name) == ("topic", "alerts.correlated")
    )
    assert on_topic == [
        "operator-cli read",
        "service-console describe",  # its lag page: the topic's end offsets, never a record
        "service-correlator write",
        "service-router read",
        "service-router write",
        "service-tracker read",
    ]


def test_the_operator_describes_this_systems_groups_and_every_declared_topic_and_reads_no_group() -> None:
    """`rctc lag` needs every group's offsets and every topic's end: the operator may describe the groups under
    the client-id prefix (never read them: READ would let it commit offsets into a service's group) and every
    declared topic, by its own describe ACL where it neither reads nor writes the topic (the retry tiers)."""
    declarations = load_declarations()
    wanted = desired_acls(declarations, [AgencyAccess("IQ-NAB", True)], client_id_prefix="rctc")
    operator = [a for a in wanted if a.principal == "operator-cli"]
    assert sorted(str(a) for a in operator if a.resource != "topic") == ["operator-cli describe group rctc-*"]
    topics = {a.name for a in operator if a.resource == "topic"}
    assert topics >= {t.name for t in declarations.all_for(["IQ-NAB"])}
    describe_only = sorted(a.name for a in operator if a.operation == "describe" and a.resource == "topic")
    assert describe_only == sorted(t.name for t in declarations.topics if t.name.startswith("deliveries.retry."))
    # The console's lag page the same, and nobody else describes anything.
    console = [a for a in wanted if a.principal == "service-console"]
    assert [str(a) for a in console if a.resource == "group"] == ["service-console describe group rctc-*"]
    assert {a.name for a in console if a.resource == "topic"} >= {t.name for t in declarations.topics}
    assert [
        a for a in wanted if a.operation == "describe" and a.principal not in ("operator-cli", "service-console")
    ] == []
