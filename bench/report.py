"""The run's report: report.json (everything), report.md (the table in the README) and latency.png (a CDF)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.correlator import rows as correlator_rows
from bench.workload import RECIPIENTS


def write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    topic, hooks = report["pipeline"].pop("_raw", ([], []))
    report.get("plaintext_pipeline", {}).pop("_raw", None)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    (out / "report.md").write_text(table)
    plot(topic, hooks, report["pipeline"]["steady"]["rate_per_second"], out)
    print(table)
    print(f"took {report.get('seconds')} s; report: {out}")


def _seconds(value: float | None) -> str:
    return "not within the run" if value is None else f"{value} s"


def _cpu(step: dict[str, Any]) -> str:
    """All services' CPU seconds per 1,000 alerts, each service's, and the broker's (issue 19)."""
    per = step.get("cpu_s_per_1000_alerts")
    if not per:
        return "not measured"
    services = ", ".join(f"{k} {v}" for k, v in per.items() if k != "total")
    return f"{per['total']} all services ({services}); broker {step.get('broker_cpu_s_per_1000_alerts')}"


def _latency(figures: dict[str, Any]) -> str:
    if not figures.get("count"):
        return "no samples"
    return (
        f"p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, p99.9 {figures['p99_9_ms']} ms, "
        f"max {figures['max_ms']} ms"
    )


def _hops(hops: dict[str, dict[str, Any]]) -> str:
    parts = [f"{name.replace('_', ' ')} {hop.get('p50_ms')} / {hop.get('p99_ms')} ms" for name, hop in hops.items()]
    return "; ".join(parts)


def _cores(busy: dict[str, float] | None) -> str:
    if not busy:
        return "cores busy not measured"
    return f"cores busy: services {busy['services']}, broker {busy['broker']}, harness {busy['harness']}"


def _saturation(sat: dict[str, Any]) -> str:
    probes = "; ".join(
        f"{pr['rate_per_second']}/s {'sustained' if pr['sustained'] else 'not sustained'}"
        f" (last alert complete {pr['last_complete_s_after_load']} s after the load, "
        f"{pr['cores_busy']['total']} cores busy, others {pr['cores_busy'].get('others')})"
        for pr in sat["probes"]
    )
    return f"{sat['sustained_per_second']} alerts/s ({sat['seconds_per_probe']} s at each rate: {probes})"


def markdown(report: dict[str, Any]) -> str:
    r, d, p = report["router"], report["dispatcher"], report["pipeline"]
    s, h = p["steady"], p.get("half_saturation") or {}
    lines = ["| measure | value | target |", "|---|---|---|"]
    lines += [
        f"| raw aiokafka pass-through | {report['baseline']['kafka']['per_second']} records/s | |",
        f"| the same pass-through as a faust-streaming agent (at least once, its own worker) | "
        f"{report['baseline']['faust_agent']['per_second']} records/s, ratio "
        f"{report['baseline']['faust_agent']['ratio_to_raw_passthrough']} | |",
        f"| router saturation ({RECIPIENTS} recipients) | {r['alerts_per_second']} alerts/s, ratio "
        f"{r['ratio_to_raw_passthrough']} | >= 0.5 (stretch 0.7) |",
        f"| raw pass-through, router's topic layout | {report['baseline']['kafka_router_layout']['per_second']} "
        f"records/s (router ratio {r['ratio_to_layout_passthrough']}); with its transactions "
        f"{report['baseline']['kafka_router_layout_transactional']['per_second']} records/s (router ratio "
        f"{r['ratio_to_transactional_layout_passthrough']}) | |",
        f"| raw aiohttp POST | {report['baseline']['http']['per_second']} requests/s | |",
        f"| dispatcher saturation | {d['per_second']} deliveries/s, ratio {d['ratio_to_raw_aiohttp']} "
        "| >= 0.7 (stretch 0.85) |",
        f"| raw consume, POST and outcome record, the dispatcher's Kafka either side of a POST | "
        f"{report['baseline']['kafka_http_dispatcher_layout']['per_second']} deliveries/s (dispatcher ratio "
        f"{d['ratio_to_consume_post_record']}) | |",
        f"| pipeline saturation: highest constant rate sustained, gateway to every topic and webhook | "
        f"{_saturation(p['saturation'])} | |",
        f"| submit -> agency topic at {s['rate_per_second']}/s | {_latency(s['submit_to_agency_topic'])} "
        "| p99 < 25 ms |",
        f"| submit -> webhook at {s['rate_per_second']}/s | {_latency(s['submit_to_webhook'])} | p99 < 50 ms |",
        f"| submit -> agency topic at half of saturation, {h.get('rate_per_second')}/s for {h.get('seconds')} s "
        f"({_cores(h.get('cores_busy'))}) | {_latency(h.get('submit_to_agency_topic', {}))} | p99 < 25 ms |",
        f"| submit -> webhook at half of saturation | {_latency(h.get('submit_to_webhook', {}))} | p99 < 50 ms |",
        f"| where the time goes at {s['rate_per_second']}/s (p50 / p99) | {_hops(p['steady_hops'])} | |",
        f"| where the time goes at half of saturation | {_hops(p.get('half_saturation_hops', {}))} | |",
        f"| a raw transaction of one alert's outputs beside the half-saturation step, send to readable | "
        f"{_latency(p.get('half_saturation_probe', {}).get('send_to_readable', {}))} | |",
        f"| CPU-s per 1,000 alerts at {s['rate_per_second']}/s | {_cpu(p)} | |",
        f"| CPU-s per 1,000 alerts at half of saturation | {_cpu(h)} | at most 6 (all services; issue 19) |",
        f"| peak memory | {', '.join(f'{k} {v} MB' for k, v in p['peak_rss_mb'].items())} | |",
    ]
    lines += correlator_rows(report)
    if "security_cost" in report:
        lines += _security(report["security_cost"], report["plaintext_pipeline"])
    if "burst" in p:
        b, a = p["burst"], p["after_burst"]
        lines += [
            f"| burst {b['rate_per_second']}/s for {b['seconds']} s | {b['lost']} alerts lost, "
            f"{b['alerts_missing_a_webhook']} missing a webhook | 0 |",
            f"| back under both targets after the burst | {_seconds(b['recovery_s'])} | < 30 s |",
            f"| back to the steady p99 (x1.5) after the burst | {_seconds(b['back_to_steady_s'])} | |",
            f"| submit -> agency topic, 30 s after the burst | {_latency(a['submit_to_agency_topic'])} | p99 < 25 ms |",
            f"| submit -> webhook, 30 s after the burst | {_latency(a['submit_to_webhook'])} | p99 < 50 ms |",
        ]
    return "\n".join(lines) + "\n"


def _security(cost: dict[str, Any], plaintext: dict[str, Any]) -> list[str]:
    """The rows for what security costs (bench/security_cost.py)."""
    sat, steady = cost["saturation"], cost["steady"]
    latency, cpu, rate = steady["latency"], steady["cpu_s_per_1000_alerts"], steady["rate_per_second"]
    others = sat["others_cores_busy"]

    def lat(path: str) -> str:
        p50, p99 = latency[f"{path}_p50_ms"], latency[f"{path}_p99_ms"]
        return (
            f"p50 {p50['secured']} vs {p50['plaintext']} ms ({p50['added_ms']:+}), "
            f"p99 {p99['secured']} vs {p99['plaintext']} ms ({p99['added_ms']:+})"
            if p50["added_ms"] is not None and p99["added_ms"] is not None
            else "not measured"
        )

    return [
        f"| pipeline saturation on a plaintext broker (no TLS, SCRAM or ACLs; same run) | "
        f"{_saturation(plaintext['saturation'])} | |",
        f"| secured / plaintext pipeline saturation | {sat['ratio']} (the ramps allow {sat['lowest']} to "
        f"{sat['highest']}): {sat['verdict']}; other work kept {others['secured']} and {others['plaintext']} "
        f"cores busy during the two ramps | >= {sat['target']} |",
        f"| secured / plaintext as the CPU per alert at {rate}/s has it (plaintext CPU over secured, services "
        f"and broker; what the ratio is on cores of their own) | {cost['ratio_if_cpu_bound']} | >= {sat['target']} |",
        f"| what security adds at {rate}/s, submit -> agency topic | {lat('submit_to_agency_topic')} | |",
        f"| what security adds at {rate}/s, submit -> webhook | {lat('submit_to_webhook')} | |",
        f"| CPU per 1,000 alerts, secured vs plaintext | services {cpu['services']['secured']} vs "
        f"{cpu['services']['plaintext']} s (x{cpu['services']['ratio']}); broker {cpu['broker']['secured']} vs "
        f"{cpu['broker']['plaintext']} s (x{cpu['broker']['ratio']}); both {cpu['both']['secured']} vs "
        f"{cpu['both']['plaintext']} s (x{cpu['both']['ratio']}) | |",
    ]


def plot(topic: list[float], hooks: list[float], rate: float, out: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        (out / "latency.png.missing").write_text("matplotlib is not installed: pip install '.[bench]'\n")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for values, label in ((topic, "submit -> agency topic"), (hooks, "submit -> webhook")):
        if values:
            ordered = sorted(v * 1000 for v in values)
            ax.plot(ordered, [i / len(ordered) for i in range(len(ordered))], label=label)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of copies")
    ax.set_title(f"RCTC pipeline latency at {rate} alerts/s, {RECIPIENTS} recipients each")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
