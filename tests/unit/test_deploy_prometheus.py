"""deploy/prometheus and deploy/grafana: the alerting rules, the scrape configs and the dashboard.

Prometheus' own promtool checks the rules and the compose scrape config and runs the rules' unit tests
(rules.test.yml: each alert fires on its input series, and series that must not page do not). Every metric
and label the rules and the dashboard name is read against what the services define, in prometheus-client's
registry once every service module is imported, so a misspelt name fails here and not, silently, on the
night it should have paged. The scrape configs are read against docker-compose.yml and deploy/k8s/rctc.yaml.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from services.common.acls import SERVICES
from tests.support.deploy import ROOT, compose, k8s_documents

PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules.yml"
RULES_TEST = PROMETHEUS / "rules.test.yml"
SCRAPE_COMPOSE = PROMETHEUS / "prometheus.yml"
SCRAPE_K8S = PROMETHEUS / "prometheus-k8s.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "rctc-dashboard.json"

# Labels a target gets from its scrape config (prometheus.yml, prometheus-k8s.yml), not from the service.
TARGET_LABELS = {"job", "instance", "app", "pod"}
# PromQL words that look like names and are not metrics.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
# The sample names each kind of metric family exposes (prometheus-client appends these to the family's name).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}
# Metrics the dashboard need not show, and why.
UNSHOWN = {
    # The process stops right after counting one: its restart (process_start_time_seconds) is what shows.
    "rctc_loop_crashes_total",
}
CORE_PANELS = {"row", "timeseries", "stat", "gauge", "bargauge", "table", "text", "heatmap", "state-timeline"}


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """promtool with these arguments; a missing promtool fails the test rather than skipping it."""
    path = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(path).exists():
        pytest.fail("promtool is not installed: install Debian's `prometheus` package (.ci/run does)")
    return subprocess.run([path, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def defined_metrics() -> dict[str, set[str]]:
    """Every sample name a service can export, with its metric's label names.

    Each services/<name>/service.py is imported (with it services/common's metrics), so what counts is what
    the code registers, not what a comment says; the process and GC collectors prometheus-client registers by
    default are in the same registry.
    """
    for path in sorted((ROOT / "services").glob("*/service.py")):
        importlib.import_module(f"services.{path.parent.name}.service")
    # The registry's own map from names to collectors is the only place that gives a metric's label names
    # before any child exists; labels() would create one in this process's registry.
    collectors = REGISTRY._names_to_collectors
    names: dict[str, set[str]] = {}
    for family in REGISTRY.collect():
        labels = set(getattr(collectors.get(family.name), "_labelnames", ()))
        for suffix in SUFFIXES[family.type]:
            names[family.name + suffix] = labels
    return names


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """The metric names a PromQL expression selects, each with the label names its matchers use.

    Enough PromQL for what rules.yml and the dashboard write: string literals, Grafana's variables, range
    durations and `by (...)`-style label lists are removed first; a name followed by `(` is a function.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\$\{?\w+\}?", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    found = []
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?", text):
        name, matchers = match.groups()
        if name in KEYWORDS or (matchers is None and text[match.end() :].startswith("(")):
            continue
        found.append((name, set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers or ""))))
    return found


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", [])]


def undefined(exprs: list[str]) -> list[str]:
    """The names and labels in `exprs` that no service defines, as `expr: what`."""
    metrics = defined_metrics()
    wrong = []
    for expr in exprs:
        for name, labels in selectors(expr):
            known = TARGET_LABELS if name == "up" else metrics.get(name)
            if known is None:
                wrong.append(f"{expr}: no metric {name}")
            elif unknown := labels - known - TARGET_LABELS:
                wrong.append(f"{expr}: {name} has no label {sorted(unknown)}")
    return wrong


def test_the_rules_pass_promtool() -> None:
    """promtool accepts the alerting rules."""
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_scrape_config_passes_promtool() -> None:
    """promtool accepts the docker-compose scrape config, with the rule file it names."""
    result = promtool("check", "config", str(SCRAPE_COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_k8s_scrape_config_passes_promtool_but_for_its_discovery(tmp_path: Path) -> None:
    """The Kubernetes scrape config passes promtool once its kubernetes_sd_configs (which Debian's build lacks)
    stand aside: the relabelling, the jobs and the rule file are checked."""
    config = yaml.safe_load(SCRAPE_K8S.read_text())
    for job in config["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs")
        job["static_configs"] = [{"targets": []}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(RULES, tmp_path / "rules.yml")
    result = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_in_the_rules_unit_tests() -> None:
    """promtool's unit tests of the rules pass, and they make every alert fire at least once."""
    result = promtool("test", "rules", RULES_TEST.name, cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr
    cases = [case for test in yaml.safe_load(RULES_TEST.read_text())["tests"] for case in test["alert_rule_test"]]
    fired = {case["alertname"] for case in cases if case.get("exp_alerts")}
    assert {rule["alert"] for rule in rules()} == fired


def test_every_alert_tells_the_duty_operator_what_and_how_bad() -> None:
    """Each alert waits (`for`), has a severity, and a summary and a description in words."""
    for rule in rules():
        assert "for" in rule, rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_the_rules_watch_what_the_operators_asked_for() -> None:
    """The rules select the signals issue 17 names (and the parser finds them: it is not vacuous)."""
    selected = {name for rule in rules() for name, _ in selectors(rule["expr"])}
    wanted = {
        "up",
        "rctc_correlator_lag",
        "rctc_webhook_attempts_total",
        "rctc_escalations_total",
        "rctc_webhook_circuit_open",
    }
    assert wanted <= selected


def test_every_metric_the_rules_name_is_defined() -> None:
    """Every metric and label a rule selects is one a service exports (a misspelling fails here)."""
    assert undefined([rule["expr"] for rule in rules()]) == []


def test_every_metric_the_dashboard_names_is_defined() -> None:
    """Every metric and label a dashboard query selects is one a service exports."""
    assert undefined(dashboard_exprs()) == []


def test_the_dashboard_shows_every_metric_the_services_define() -> None:
    """Each rctc_ metric a service defines is on the dashboard (but those UNSHOWN says why not)."""
    shown = {name for expr in dashboard_exprs() for name, _ in selectors(expr)}
    defined_metrics()  # imports the services, so that their metrics are registered
    families = {family.name: family.type for family in REGISTRY.collect() if family.name.startswith("rctc_")}
    missing = {
        name
        for name, kind in families.items()
        if not any(name + suffix in shown for suffix in SUFFIXES[kind]) and name + SUFFIXES[kind][0] not in UNSHOWN
    }
    assert set() == missing


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses every dashboard query (each as a recording rule, Grafana's interval as 5m)."""
    exprs = [expr.replace("$__rate_interval", "5m") for expr in dashboard_exprs()]
    records = [{"record": f"rctc:dashboard_{n}", "expr": expr} for n, expr in enumerate(exprs)]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_uses_only_its_datasource_variable() -> None:
    """The dashboard is importable anywhere: a `datasource` variable of Prometheus data sources, every panel and
    query on it, unique panel ids, Grafana's own panel types, no links out."""
    data = dashboard()
    assert 36 <= data["schemaVersion"] <= 41
    assert data["uid"]
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "prometheus")
    on_variable = {"type": "prometheus", "uid": "${datasource}"}
    panels = data["panels"]
    assert all(on_variable == panel["datasource"] for panel in panels)
    assert all(on_variable == target["datasource"] for panel in panels for target in panel.get("targets", []))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    assert {panel["type"] for panel in panels} <= CORE_PANELS
    assert data["links"] == []
    assert "http" not in json.dumps([panel.get("links", []) for panel in panels])


def test_the_compose_job_scrapes_every_service_at_its_ops_port() -> None:
    """prometheus.yml's targets are docker-compose.yml's services at their RCTC_OPS__PORT, each listening on the
    compose network rather than on its own loopback."""
    services_ = compose()["services"]
    expected = {name: f"{name}:{services_[name]['environment']['RCTC_OPS__PORT']}" for name in SERVICES}
    (job,) = yaml.safe_load(SCRAPE_COMPOSE.read_text())["scrape_configs"]
    actual = {group["labels"]["app"]: target for group in job["static_configs"] for target in group["targets"]}
    assert expected == actual
    assert all(services_[name]["environment"]["RCTC_OPS__HOST"] == "0.0.0.0" for name in SERVICES)


def test_the_k8s_job_finds_every_service_pod_at_its_ops_port() -> None:
    """Every service's pods carry the annotation prometheus-k8s.yml keeps and one port of the name it keeps,
    the port the pods' RCTC_OPS__PORT opens; the job looks in the manifest's namespace."""
    (job,) = yaml.safe_load(SCRAPE_K8S.read_text())["scrape_configs"]
    (discovery,) = job["kubernetes_sd_configs"]
    keeps = {r["source_labels"][0]: r["regex"] for r in job["relabel_configs"] if r.get("action") == "keep"}
    scrape = keeps["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
    port_name = keeps["__meta_kubernetes_pod_container_port_name"]
    documents = k8s_documents()
    env = next(d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "rctc-env")["data"]
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    assert set(SERVICES) <= set(deployments)
    for name in SERVICES:
        pod = deployments[name]["spec"]["template"]
        assert [deployments[name]["metadata"]["namespace"]] == discovery["namespaces"]["names"]
        assert name == pod["metadata"]["labels"]["app"]
        annotations = pod["metadata"]["annotations"]
        assert re.fullmatch(scrape, annotations["prometheus.io/scrape"])
        (container,) = pod["spec"]["containers"]
        (ops,) = [p["containerPort"] for p in container["ports"] if re.fullmatch(port_name, p["name"])]
        assert str(ops) == annotations["prometheus.io/port"] == env["RCTC_OPS__PORT"]
