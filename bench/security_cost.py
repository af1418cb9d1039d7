"""What Kafka security costs the pipeline: the secured run beside a plaintext one of the same invocation.

Issue 14's target is a secured pipeline saturation of at least 0.8 of the plaintext one. Each saturation is
found by a ramp (bench/pipeline.py) that ends with a rate sustained and a higher rate not sustained, within
RAMP_PRECISION of each other, so each true saturation lies between its two, and the ratio of two of them
between the worst and best pairing of those bounds:

    secured sustained s, not sustained s'; plaintext p, p'     ratio s/p, somewhere in (s/p', s'/p)

| verdict | when |
|---|---|
| met | even the lowest ratio the two ramps allow, s/p', is at least the target |
| not met | even the highest, s'/p, is below the target |
| within the ramps' precision | the target lies between: s/p is the estimate, not a verdict |
| not measured | either ramp sustained no rate at all |

On a machine shared with other people's work the two ramps, minutes apart, may not have had the same cores:
each side reports the cores everything else kept busy during its probes (`others_cores_busy`), and the
ratio's second estimate does not depend on it: the CPU the services and the broker spent per alert at the
same constant rate, plaintext over secured (`ratio_if_cpu_bound`), which is what the saturation ratio would
be on cores of their own, the pipeline being CPU-bound there.

What the security costs besides throughput, from the step at the same constant rate on both brokers: the
latency to the agency topics and to the webhooks, and the CPU spent per 1,000 alerts by the services (TLS and
SCRAM on their connections) and by the broker (TLS, SCRAM and an ACL check on every request).
"""

from __future__ import annotations

from typing import Any

TARGET = 0.8


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def others_busy(saturation: dict[str, Any]) -> float | None:
    """The cores the rest of the machine kept busy, on average over a ramp's probes (None: not measured)."""
    values = [p["cores_busy"]["others"] for p in saturation.get("probes", []) if "others" in p.get("cores_busy", {})]
    return round(sum(values) / len(values), 2) if values else None


def saturation_ratio(secured: dict[str, Any], plaintext: dict[str, Any], target: float = TARGET) -> dict[str, Any]:
    """The secured/plaintext ratio of two ramps' saturations (`pipeline()["saturation"]`), its bounds and the
    verdict against `target` (the module's table)."""
    s, s_failed = secured["sustained_per_second"], secured["not_sustained_per_second"]
    p, p_failed = plaintext["sustained_per_second"], plaintext["not_sustained_per_second"]
    ratio, lowest, highest = _ratio(s, p), _ratio(s, p_failed), _ratio(s_failed, p)
    if s is None or p is None:
        verdict = "not measured"
    elif lowest is not None and lowest >= target:
        verdict = "met"
    elif highest is not None and highest < target:
        verdict = "not met"
    else:
        verdict = "within the ramps' precision"
    return {
        "secured_per_second": s,
        "plaintext_per_second": p,
        "ratio": ratio,
        "lowest": lowest,
        "highest": highest,
        "target": target,
        "verdict": verdict,
        "others_cores_busy": {"secured": others_busy(secured), "plaintext": others_busy(plaintext)},
    }


def _p(figures: dict[str, Any], key: str) -> float | None:
    value = figures.get(key)
    return None if value is None else float(value)


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 2)


def steady_cost(secured: dict[str, Any], plaintext: dict[str, Any]) -> dict[str, Any]:
    """Latency (ms) and CPU (s per 1,000 alerts) at the same constant rate, secured beside plaintext, with
    the difference (latency) or the ratio (CPU) of each."""
    latency: dict[str, Any] = {}
    for path in ("submit_to_agency_topic", "submit_to_webhook"):
        for q in ("p50_ms", "p99_ms"):
            a, b = _p(secured["steady"][path], q), _p(plaintext["steady"][path], q)
            latency[f"{path}_{q}"] = {"secured": a, "plaintext": b, "added_ms": _delta(a, b)}
    cpu: dict[str, Any] = {}
    services = (secured["cpu_s_per_1000_alerts"].get("total"), plaintext["cpu_s_per_1000_alerts"].get("total"))
    broker = (secured.get("broker_cpu_s_per_1000_alerts"), plaintext.get("broker_cpu_s_per_1000_alerts"))
    both = tuple(None if a is None or b is None else round(a + b, 2) for a, b in zip(services, broker, strict=True))
    sides = {"services": services, "broker": broker, "both": both}
    for side, (a, b) in sides.items():
        cpu[side] = {"secured": a, "plaintext": b, "ratio": _ratio(a, b)}
    rate = secured["steady"].get("rate_per_second")
    return {"rate_per_second": rate, "latency": latency, "cpu_s_per_1000_alerts": cpu}


def security_cost(secured: dict[str, Any], plaintext: dict[str, Any]) -> dict[str, Any]:
    """Both: the saturation ratio against the target and the cost at the constant rate (`pipeline()` results),
    with the ratio the CPU per alert implies."""
    steady = steady_cost(secured, plaintext)
    both = steady["cpu_s_per_1000_alerts"]["both"]
    return {
        "saturation": saturation_ratio(secured["saturation"], plaintext["saturation"]),
        "ratio_if_cpu_bound": _ratio(both["plaintext"], both["secured"]),
        "steady": steady,
    }
