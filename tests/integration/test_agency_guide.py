"""docs/agencies.md, run: an agency's own systems connect as the agency, and read, decode and acknowledge what
the router wrote, with libraries nobody here wrote (kcat, Apache Avro's Java `BinaryMessageDecoder` and the
Kafka Java client, confluent-kafka with fastavro).

On a broker of its own (ACLs are reconciled for the whole broker, so this module owns them all): two agencies,
their ACLs as `rctc acls apply` makes them, a SCRAM password for the reading agency, the pipeline running (as
the admin), and every kind of record an agency's topic holds: three alerts shared with the reader (content),
the tracker's reminder of the first one's overdue acknowledgement, and the notice that the third was
cancelled (both without content: `alert` is null). Each fenced block of the guide runs as written, in a
directory that holds the repository's schemas as `schemas/` and its `deploy/`, with the agency's settings in
the environment.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from services.cli.local_broker import LocalBroker
from services.cli.security import apply_acls
from services.common.acls import AgencyAccess
from services.common.codec import SCHEMA_DIR, Codec
from services.common.kafka_admin import SecurityAdmin
from services.common.records import AckSubmitted, AlertShared
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import ACKS_SUBMITTED, agency_topic, apply_topics, load_declarations
from tests.support.system import system
from tests.support.world import Cast, agreement, alert_json, eventually, read_topic, registry

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "agencies.md"
JAVA = ROOT / "deploy" / "agency-examples" / "java"
JAVA_SOURCE = JAVA / "src" / "main" / "java" / "example" / "AlertReader.java"
BLOCK = re.compile(r"^```(\w*)(?: ([\w-]+))?\n(.*?)^```$", re.MULTILINE | re.DOTALL)
# Every block of the guide, and the test below that runs it.
RUN = {
    "kcat-librdkafka": "test_kcat_connects_as_the_agency_and_reads_its_copies",
    "kcat-config": "test_kcat_connects_as_the_agency_and_reads_its_copies",
    "kcat-list": "test_kcat_connects_as_the_agency_and_reads_its_copies",
    "kcat-read": "test_kcat_connects_as_the_agency_and_reads_its_copies",
    "kcat-header": "test_kcat_connects_as_the_agency_and_reads_its_copies",
    "schema-fetch": "test_kcat_connects_as_the_agency_and_reads_its_copies",
    "java-reader": "test_apache_avros_java_decoder_reads_every_copy_as_the_agency",
    "java-run": "test_apache_avros_java_decoder_reads_every_copy_as_the_agency",
    "python-reader": "test_python_reads_and_decodes_every_copy_as_the_agency",
    "python-ack": "test_an_ack_written_to_kafka_reaches_the_tracker_as_the_agencys",
}


def snippets() -> dict[str, tuple[str, str]]:
    """name -> (language, text) of every fenced block in the guide (an unnamed block is named "")."""
    found: dict[str, tuple[str, str]] = {}
    for language, name, text in BLOCK.findall(GUIDE.read_text()):
        assert name not in found, f"two blocks named {name!r}"
        found[name] = (language, text)
    return found


@dataclass
class Onboarded:
    admin: KafkaSettings
    codec: Codec
    code: str
    alert_ids: list[str]
    cancel_id: str
    env: dict[str, str]
    workdir: Path

    async def run(self, *names: str, **env: str) -> tuple[int, str, str]:
        """Run the guide's blocks `names`, all of one language, as one script (a shell session, or one
        Python program): (exit code, stdout, stderr)."""
        blocks = snippets()
        languages = {blocks[name][0] for name in names}
        assert len(languages) == 1, languages
        text = "\n".join(blocks[name][1] for name in names)
        argv = ["bash", "-euo", "pipefail", "-c", text] if languages == {"sh"} else [sys.executable, "-c", text]
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self.workdir,
            env={**self.env, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=90)
        return process.returncode or 0, out.decode(), err.decode()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def onboarded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Onboarded]:
    """The reading agency onboarded as the guide says, with three copies, a reminder and a cancellation notice
    on its topic, and the pipeline up."""
    # The Java reader is built (once per version of its sources, cached under ~/.cache/rctc) before the
    # broker starts, so a first build's Maven resolution is not spent with a broker idling beside it.
    built = await asyncio.to_thread(
        subprocess.run, [str(JAVA / "build.sh")], capture_output=True, text=True, timeout=600
    )
    assert built.returncode == 0, built.stderr
    broker = await asyncio.to_thread(LocalBroker.start, tmp_path_factory.mktemp("guide-kafka"))
    try:
        admin = broker.admin_settings(client_id_prefix=f"t{uuid.uuid4().hex[:10]}", linger_ms=1)
        codec = Codec.from_directory()
        cast = Cast()
        origin, reader = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO")
        await apply_topics(admin, list(load_declarations().topics), replication_factor=1)
        doc = registry([origin, reader], [agreement(f"GUIDE-{cast.suffix}", [origin.code, reader.code])])
        await publish_registry(admin, codec, doc, source="guide-test", replication_factor=1)
        await apply_acls(admin, [AgencyAccess(origin.code, True), AgencyAccess(reader.code, True)])
        password = secrets.token_urlsafe(24)
        await SecurityAdmin(admin).set_password(f"agency-{reader.code}", password)

        workdir = tmp_path_factory.mktemp("agency-workdir")
        (workdir / "schemas").symlink_to(ROOT / "services" / "common" / "schemas")
        (workdir / "deploy").symlink_to(ROOT / "deploy")
        secret = workdir / "password"
        secret.write_text(password + "\n")
        secret.chmod(0o600)
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # python3: the one with the clients
            "BOOTSTRAP": broker.bootstrap,
            "CODE": reader.code,
            "PASSWORD_FILE": str(secret),
            "CA_FILE": str(broker.directory / "tls" / "ca.pem"),
        }
        # Deadlines shrunk so that the first alert's (Severe, Immediate: 30 min) passes in 5 s, and the others'
        # (Minor, Future: 48 h) not before 8 minutes, long after this module is done.
        deadlines = {"router": {"ack_deadline_scale": 0.003}, "tracker": {"escalation_check_s": 0.2}}
        async with system(admin, codec, **deadlines) as sys_, aiohttp.ClientSession() as http:
            env.update(GATEWAY=sys_.url, TOKEN=cast.tokens[reader.code])

            async def submit(**fields: object) -> str:
                body = alert_json(affected_countries=["IQ", "JO"], **fields)
                async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=cast.bearer(origin.code)) as r:
                    assert r.status == 202, await r.text()
                    alert_id: str = (await r.json())["alert_id"]
                    return alert_id

            later = {"severity": "Minor", "urgency": "Future"}
            ids = [await submit(title="Guide alert 0")]
            ids += [await submit(title=f"Guide alert {n}", **later) for n in (1, 2)]
            cancel_id = await submit(title="Guide alert 2 withdrawn", msg_type="Cancel", references=[ids[2]], **later)
            expected = sorted(
                [(i, "alert.created") for i in ids] + [(ids[0], "alert.escalated"), (cancel_id, "alert.cancelled")]
            )

            async def all_written() -> bool:
                copies = await read_topic(admin, codec, agency_topic(reader.code), AlertShared)
                return sorted((c.alert_id, c.event_type) for _, c in copies) == expected

            await eventually(all_written, within_s=60)
            yield Onboarded(admin, codec, reader.code, ids, cancel_id, env, workdir)
    finally:
        await asyncio.to_thread(broker.stop)


def current_fingerprint(record: str) -> str:
    listed = dict(
        line.split()
        for line in (SCHEMA_DIR / "FINGERPRINTS").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    return listed[record]


async def test_every_block_of_the_guide_is_named_and_run_here() -> None:
    """Each code block in docs/agencies.md has a name that a test below runs, and the Java block is the
    reader's source file exactly, so what the guide shows is what the test runs."""
    blocks = snippets()
    assert sorted(RUN) == sorted(blocks)
    assert JAVA_SOURCE.read_text() == blocks["java-reader"][1]


def written(onboarded: Onboarded) -> list[tuple[str, str]]:
    """(alert id, event type) of every record on the reader's topic, sorted: three copies, a reminder, a notice."""
    ids = onboarded.alert_ids
    notices = [(ids[0], "alert.escalated"), (onboarded.cancel_id, "alert.cancelled")]
    return sorted([(i, "alert.created") for i in ids] + notices)


async def test_kcat_connects_as_the_agency_and_reads_its_copies(onboarded: Onboarded) -> None:
    """kcat, with the agency's settings file: it sees only its own four topics, reads a key per record (the
    thread's first alert id: the reminder and the notice share their thread's key), the first record's header
    is C3 01 and AlertShared's fingerprint as services/common/schemas/FINGERPRINTS lists it, and the gateway
    serves that schema by it to the agency's token."""
    assert shutil.which("kcat"), "kcat is not installed (apt-get install kcat; .ci/run installs it)"
    code = onboarded.code
    status, listed, err = await onboarded.run("kcat-librdkafka", "kcat-config", "kcat-list")
    assert status == 0, err
    own = sorted(f"agency.{code}.{kind}" for kind in ("acks", "alerts", "rejections", "submissions"))
    assert sorted(re.findall(r'topic "([^"]+)"', listed)) == own
    status, keys, err = await onboarded.run("kcat-librdkafka", "kcat-read")
    assert status == 0, err
    threads = [*onboarded.alert_ids, onboarded.alert_ids[0], onboarded.alert_ids[2]]
    assert sorted(keys.split()) == sorted(f"{alert_id}:{code}" for alert_id in threads)
    status, header, err = await onboarded.run("kcat-librdkafka", "kcat-header")
    assert status == 0, err
    assert header.strip() == "c301" + current_fingerprint("rctc.AlertShared")
    status, schema, err = await onboarded.run("kcat-librdkafka", "kcat-config", "schema-fetch")
    assert status == 0, err
    assert json.loads(schema)["name"] == "rctc.AlertShared"


async def test_apache_avros_java_decoder_reads_every_copy_as_the_agency(onboarded: Onboarded) -> None:
    """The Java reader (Apache Avro's BinaryMessageDecoder given schemas/, the Kafka Java client with the
    agency's SCRAM credentials and the broker's CA as a PEM trust store) decodes every record on the agency's
    topic: copies with their content, the reminder and the notice with `alert` null. A header in any other
    byte order than the specification's leaves it no schema to find."""
    status, out, err = await onboarded.run("java-run")
    assert status == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert sorted((r["alert_id"], r["event_type"]) for r in records) == written(onboarded)
    assert {r["recipient"] for r in records} == {onboarded.code}
    content = [r for r in records if r["event_type"] == "alert.created"]
    assert sorted(r["alert"]["title"] for r in content) == [f"Guide alert {n}" for n in range(3)]
    notices = [(r["event_type"], r["reason"], r["alert"]) for r in records if r not in content]
    assert sorted(notices, key=str) == [("alert.cancelled", None, None), ("alert.escalated", "ack_overdue", None)]


async def test_python_reads_and_decodes_every_copy_as_the_agency(onboarded: Onboarded) -> None:
    """confluent-kafka and fastavro, as the guide has them, read and decode every record: copies, the
    reminder and the notice."""
    status, out, err = await onboarded.run("python-reader")
    assert status == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert sorted((r["alert_id"], r["event_type"]) for r in records) == written(onboarded)
    assert {r["recipient"] for r in records} == {onboarded.code}


async def test_an_ack_written_to_kafka_reaches_the_tracker_as_the_agencys(onboarded: Onboarded) -> None:
    """The guide's ack, written to agency.<CODE>.acks with the agency's credentials, is forwarded by the
    gateway to acks.submitted as that agency's, over the Kafka channel."""
    alert_id = onboarded.alert_ids[0]
    status, _, err = await onboarded.run("python-ack", ALERT_ID=alert_id)
    assert status == 0, err

    async def forwarded() -> list[AckSubmitted]:
        acks = await read_topic(onboarded.admin, onboarded.codec, ACKS_SUBMITTED, AckSubmitted)
        return [a for _, a in acks if a.alert_id == alert_id]

    acks = await eventually(forwarded)
    assert [(a.agency, a.channel, a.response) for a in acks] == [(onboarded.code, "kafka", "actioned")]
