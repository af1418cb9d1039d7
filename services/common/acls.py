"""Which principal may do what on the brokers: the least-privilege ACLs, computed. Pure: no I/O.

    wanted = desired_acls(load_declarations(), agencies, client_id_prefix="rctc")
    plan = reconcile(wanted, on_the_broker)          # what to create, what to delete

The rules come from two places and nowhere else: `services/common/topics.yaml` says, per topic, which principals
write and read it (services by name, `operator` for the `rctc` command line, `services` for every service,
`agency` for the agency an agency topic belongs to), and the registry says which agencies exist and which
are active. A suspended or removed agency has no ACL at all, so it loses access with the next apply.

| principal              | topics                                   | groups, transactional ids                 |
|------------------------|------------------------------------------|-------------------------------------------|
| `service-<name>`       | what topics.yaml lists for it (literal)  | its own, under the client-id prefix       |
| `service-console`      | and, like `operator-cli`, describe the   | and describe the system's groups (its lag |
|                        | other declared topics                    | page)                                     |
| `operator-cli`         | what topics.yaml lists for `operator`;   | describe the groups under the client-id   |
|                        | describe every other declared topic      | prefix (`rctc lag`); no READ: it reads by |
|                        | (the retry tiers: their groups' lag)     | assignment, and must not commit offsets   |
|                        |                                          | into a service's group                    |
| `agency-<CODE>`        | what topics.yaml's `agency_topics` give  | prefixed `agency-<CODE>.` (the dot ends   |
|   (active only)        | `agency` on its own topics: read         | the code: `agency-IQ-NAB2.` is not under  |
|                        | `agency.<CODE>.alerts` and `.rejections`,| `agency-IQ-NAB.`)                         |
|                        | write `.acks` and `.submissions`         |                                           |
|                        | (literal names)                          |                                           |

Every topic ACL is LITERAL: a prefixed `agency.IQ-NAB` would also match `agency.IQ-NAB2.alerts`. READ and
WRITE imply DESCRIBE on Kafka, so describing needs an ACL of its own only where neither is given: the
operator's on groups and on the topics it neither reads nor writes, so that `rctc lag` (services/common/lag.py)
sees every group's offsets and every topic's end. The bootstrap admin is a super user and has none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from services.common.topics import Declarations, TopicSpec

SERVICES = ("gateway", "enricher", "router", "auditor", "dispatcher", "tracker", "correlator", "console")
OPERATOR = "operator-cli"

Resource = Literal["topic", "group", "transactional_id"]
Pattern = Literal["literal", "prefixed"]
Operation = Literal["read", "write", "describe"]


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule for a principal from any host (nothing here denies: what no rule allows is denied)."""

    principal: str  # the SCRAM user name, without Kafka's `User:` type
    resource: Resource
    name: str
    pattern: Pattern
    operation: Operation

    def __str__(self) -> str:
        return (
            f"{self.principal} {self.operation} {self.resource} {self.name}{'*' if self.pattern == 'prefixed' else ''}"
        )


@dataclass(frozen=True)
class AgencyAccess:
    """What the ACLs need to know of an agency in the registry."""

    code: str
    active: bool


@dataclass(frozen=True)
class Plan:
    create: tuple[Acl, ...]
    delete: tuple[Acl, ...]
    # ACLs of principals this system does not own (left alone, and reported as drift).
    foreign: tuple[Acl, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.create and not self.delete


def service_principal(name: str) -> str:
    return f"service-{name}"


def agency_principal(code: str) -> str:
    return f"agency-{code}"


def agency_group_prefix(code: str) -> str:
    """The consumer groups and transactional ids an agency may use start with this."""
    return f"agency-{code}."


def _service_groups(prefix: str) -> dict[str, list[tuple[Resource, str, Pattern]]]:
    """Consumer groups and transactional ids of each service, as its code names them (kafka.py prefixes
    every one with the client-id prefix)."""
    p = f"{prefix}-"
    return {
        "gateway": [("group", f"{p}gateway-acks", "literal"), ("group", f"{p}gateway-submissions", "literal")],
        "enricher": [("group", f"{p}enricher", "literal")],
        "router": [
            ("group", f"{p}router", "literal"),
            # Only its offsets, committed in the partitions' transactions (router/service.py, onward sharing).
            ("group", f"{p}router-onward", "literal"),
            # Likewise for alerts.correlated (router/correlation.py).
            ("group", f"{p}router-correlated", "literal"),
            ("transactional_id", f"{p}router-", "prefixed"),
        ],
        "auditor": [("group", f"{p}auditor", "literal"), ("transactional_id", f"{p}auditor", "literal")],
        "dispatcher": [("group", f"{p}dispatcher", "literal"), ("group", f"{p}dispatcher-retry-", "prefixed")],
        "tracker": [
            ("group", f"{p}tracker", "literal"),
            ("transactional_id", f"{p}tracker-escalations-", "prefixed"),
            # Scheduled releases (services/tracker/releases.py).
            ("group", f"{p}tracker-releases", "literal"),
            ("transactional_id", f"{p}tracker-releases-", "prefixed"),
        ],
        # A faust app: its consumer group is its app id (services/correlator/app.py). Its internal topics are
        # declared in topics.yaml like any other, so it creates nothing and needs no CREATE.
        "correlator": [("group", f"{p}correlator", "literal")],
    }


def _principals(role: str, agency: AgencyAccess | None) -> list[str]:
    if role == "services":
        return [service_principal(s) for s in SERVICES]
    if role == "operator":
        return [OPERATOR]
    if role == "agency":
        if agency is None:
            raise ValueError("`agency` may read or write only an agency's own topics (agency_topics templates)")
        return [agency_principal(agency.code)] if agency.active else []
    if role in SERVICES:
        return [service_principal(role)]
    raise ValueError(f"unknown principal {role!r} in services/common/topics.yaml")


def _topic_acls(spec: TopicSpec, agency: AgencyAccess | None = None) -> list[Acl]:
    acls: list[Acl] = []
    for operation, roles in (("write", spec.writers), ("read", spec.readers)):
        for role in roles:
            for principal in _principals(role, agency):
                acls.append(Acl(principal, "topic", spec.name, "literal", operation))  # type: ignore[arg-type]
    return acls


def desired_acls(declarations: Declarations, agencies: Iterable[AgencyAccess], *, client_id_prefix: str) -> set[Acl]:
    """Every ACL the cluster should hold, and no other."""
    wanted: set[Acl] = set()
    for spec in declarations.topics:
        wanted.update(_topic_acls(spec))
    for agency in agencies:
        for spec in declarations.for_agency(agency.code):
            wanted.update(_topic_acls(spec, agency))
        if agency.active:
            prefix = agency_group_prefix(agency.code)
            principal = agency_principal(agency.code)
            wanted.add(Acl(principal, "group", prefix, "prefixed", "read"))
            wanted.add(Acl(principal, "transactional_id", prefix, "prefixed", "write"))
    # The operator and the console (its lag page) see every group's lag (services/common/lag.py): they describe
    # this system's groups and the declared topics they do not already read or write. Never READ on a group:
    # that would let them commit offsets.
    for watcher in (OPERATOR, service_principal("console")):
        wanted.add(Acl(watcher, "group", f"{client_id_prefix}-", "prefixed", "describe"))
        seen = {a.name for a in wanted if a.principal == watcher and a.resource == "topic"}
        for spec in declarations.topics:
            if spec.name not in seen:
                wanted.add(Acl(watcher, "topic", spec.name, "literal", "describe"))
    for service, resources in _service_groups(client_id_prefix).items():
        for resource, name, pattern in resources:
            operation: Operation = "read" if resource == "group" else "write"
            wanted.add(Acl(service_principal(service), resource, name, pattern, operation))
    return wanted


def managed(acl: Acl) -> bool:
    """ACLs of the principals this system owns; `apply` deletes those it does not want and leaves others."""
    return acl.principal.startswith(("service-", "agency-")) or acl.principal == OPERATOR


def reconcile(wanted: set[Acl], present: set[Acl]) -> Plan:
    """What to create and what to delete so that the broker holds exactly `wanted` of the managed ACLs."""
    extra = present - wanted
    return Plan(
        create=tuple(sorted(wanted - present)),
        delete=tuple(sorted(a for a in extra if managed(a))),
        foreign=tuple(sorted(a for a in extra if not managed(a))),
    )
