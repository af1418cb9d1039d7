"""`make bench`: the pipeline's speed and cost against raw Kafka and raw HTTP, measured in the same run.

On a shared two-core machine an absolute number means little; a ratio to a baseline measured minutes
apart on the same broker does. Steps, each on a fresh consumer group and a quiet machine:

1. baseline: raw aiokafka consume-then-produce of the same records; raw aiohttp POSTs to the same receivers
   (and, for the report's explanation, each with the layout the router and the dispatcher must write, and the
   pass-through as a faust-streaming agent)
2. router saturation: a backlog of enriched alerts, fanned out to 10 agencies, routed as fast as it can
3. dispatcher saturation: a backlog of webhook deliveries, signed and POSTed as fast as it can
4. pipeline: its saturation (the highest constant rate it sustains, gateway to every topic and webhook, found
   by a ramp), then alerts submitted to the gateway at a constant rate (--rate; then half of that saturation),
   latency from submit to each agency's topic and to each webhook receiver; CPU seconds and peak memory
5. burst: ten times that rate for ten seconds; nothing lost, and how soon latency is back under target
6. the correlator (issue 16; bench/correlator.py): its throughput on a backlog of overlapping alerts (after
   step 3, as a ratio to the faust pass-through of step 1), and after step 4, on the pipeline's broker with
   the services stopped, whether its lag stays flat while alerts arrive at half the pipeline's saturation
7. what security costs: just before step 4, the same pipeline on a plaintext broker (no TLS, no SCRAM, no
   authorizer; `kafka-local.sh --plaintext`, which nothing but this step uses), its saturation and its step
   at --rate only; the secured/plaintext saturation ratio against issue 14's 0.8 and the latency and CPU
   the security adds (bench/security_cost.py). --no-plaintext leaves it out.

Results go to bench/results/<time>/: report.json, report.md, latency.png and logs/<step>/<service>.log.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from typing import Any

from bench.baselines import (
    baseline_consume_post,
    baseline_faust,
    baseline_http,
    baseline_kafka,
    one_topic,
    prepare_input,
    router_layout,
)
from bench.correlator import correlator_lag, correlator_throughput, half_rate
from bench.harness import ROOT, Broker, TimedReceivers, collector_off
from bench.pipeline import pipeline
from bench.report import write_report
from bench.saturation import delivery_backlog, dispatcher_saturation, router_saturation
from bench.security_cost import security_cost
from bench.workload import RECIPIENTS, enriched_record, prepared
from services.common import gc_pauses
from services.common.codec import Codec
from services.common.logs import configure_logging
from services.common.records import utcnow
from services.common.settings import LogSettings
from services.router.payload import recipient_copy, webhook_request
from services.router.policy import Verdict


async def main(args: argparse.Namespace) -> None:
    # The receivers log each webhook at info; at hundreds a second that would load the measuring process.
    configure_logging(LogSettings(level="warning"), "bench")
    # The baselines run in this process: the same collector policy as the services', so neither side of a
    # ratio gains from it alone.
    gc_pauses.settle()
    out = ROOT / "bench" / "results" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    codec = Codec.from_directory()
    receivers = TimedReceivers()
    await receivers.start()
    report: dict[str, Any] = {"started": datetime.now(UTC).isoformat(), "recipients": RECIPIENTS}
    try:
        with Broker(keep_logs_in=out / "logs" / "broker-saturation") as broker:
            bench = await prepared(broker, codec, receivers, out)
            await prepare_input(bench, args.records)
            kafka_base = await baseline_kafka(bench, args.records, one_topic, transactional=False)
            # Not the baseline: the same pass-through with the router's layout of topics, and with its
            # transactions too, so the report says how much of the router's cost is its layout and its
            # transactions and how much its routing.
            layout = await baseline_kafka(bench, args.records, router_layout, transactional=False)
            layout_txn = await baseline_kafka(bench, args.records, router_layout, transactional=True)
            # The issue asks whether Faust belongs on the hot path: the same pass-through as a Faust agent.
            faust = await baseline_faust(bench, args.records)
            faust["ratio_to_raw_passthrough"] = round(faust["per_second"] / kafka_base["per_second"], 3)
            sample = webhook_request(
                recipient_copy(enriched_record("x"), Verdict(bench.codes[0], True, "shared", "b", "B"), utcnow()),
                "Immediate",
                utcnow(),
            ).payload
            http_base = await baseline_http(receivers, args.deliveries, sample)
            # Not the baseline either: the Kafka either side of each POST, as the dispatcher has it.
            deliveries = delivery_backlog(bench, args.deliveries)
            consume_post = await baseline_consume_post(bench, deliveries)
            report["baseline"] = {
                "kafka": kafka_base,
                "kafka_router_layout": layout,
                "kafka_router_layout_transactional": layout_txn,
                "http": http_base,
                "kafka_http_dispatcher_layout": consume_post,
                "faust_agent": faust,
            }
            report["router"] = await router_saturation(bench, args.alerts, kafka_base["per_second"])
            routed = report["router"]["alerts_per_second"]
            report["router"]["ratio_to_layout_passthrough"] = round(routed / layout["per_second"], 3)
            report["router"]["ratio_to_transactional_layout_passthrough"] = round(routed / layout_txn["per_second"], 3)
            report["dispatcher"] = await dispatcher_saturation(bench, deliveries, http_base["per_second"])
            delivered = report["dispatcher"]["per_second"]
            report["dispatcher"]["ratio_to_consume_post_record"] = round(delivered / consume_post["per_second"], 3)
            report["correlator"] = await correlator_throughput(bench, args.correlator_alerts, faust["per_second"])
        # Brokers of their own: services starting on the saturation steps' topics would first work through
        # their backlogs (every group starts from the beginning), and measure that instead. The plaintext
        # baseline goes first so that its ramp and the secured one are minutes apart, under the same harness.
        if args.plaintext:
            with Broker(keep_logs_in=out / "logs" / "broker-plaintext", plaintext=True) as broker:
                bench = await prepared(broker, codec, receivers, out)
                with collector_off():
                    report["plaintext_pipeline"] = await pipeline(
                        bench, args.rate, args.seconds, False, logs="pipeline-plaintext", full=False
                    )
        with Broker(keep_logs_in=out / "logs" / "broker-pipeline") as broker:
            bench = await prepared(broker, codec, receivers, out)
            # At --rate, and for a shorter while at half the pipeline's own saturation (measured in the step).
            with collector_off():
                report["pipeline"] = await pipeline(bench, args.rate, args.seconds, args.burst)
            # The services have stopped: the cores are the correlator's, fed at half the saturation just found.
            rate, source = half_rate(report["pipeline"])
            report["correlator_lag"] = await correlator_lag(bench, rate)
            report["correlator_lag"]["rate_source"] = source
        if args.plaintext:
            report["security_cost"] = security_cost(report["pipeline"], report["plaintext_pipeline"])
    finally:
        await receivers.stop()
    report["seconds"] = round((datetime.now(UTC) - datetime.fromisoformat(report["started"])).total_seconds())
    write_report(report, out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000, help="records for the raw Kafka baseline")
    parser.add_argument("--alerts", type=int, default=5_000, help="backlog for router saturation")
    parser.add_argument("--correlator-alerts", type=int, default=3_000, help="backlog for correlator throughput")
    parser.add_argument("--deliveries", type=int, default=20_000, help="backlog for dispatcher saturation")
    parser.add_argument("--seconds", type=float, default=20, help="constant-rate phase of the pipeline run")
    parser.add_argument("--rate", type=float, default=20, help="constant rate of the latency step, alerts/s")
    parser.add_argument("--burst", action="store_true", help="add the 10x burst for 10 s")
    parser.add_argument(
        "--no-plaintext",
        dest="plaintext",
        action="store_false",
        help="leave out the plaintext baseline (what security costs)",
    )
    asyncio.run(main(parser.parse_args()))
