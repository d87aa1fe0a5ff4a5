"""Operating the hub: the API docs toggle, the dispatcher's provider metrics, and the Grafana
dashboard and Prometheus alert rules under deploy/, which may name only metrics the hub
registers (or Prometheus' own ``up``). The workers' consumer lag and the processors'
acceptance-to-timeline histogram are tested on live processes in tests/test_traces.py."""

from __future__ import annotations

import importlib
import json
import re
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml
from prometheus_client import REGISTRY

from channels.base import SendError
from schemas import OutboundCommand
from services import supervisor
from services.api.app import create_app
from services.config import Settings
from services.dispatcher import send

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "omnihub.json"
ALERTS = ROOT / "deploy" / "prometheus" / "omnihub-alerts.yaml"

#: Metrics the dashboard and the rules may name that the hub does not register: Prometheus'
#: own scrape health (deploy/README.md#dashboard-and-alerts).
EXTERNAL = {"up"}

# --- the API docs toggle -------------------------------------------------------------------


@pytest.mark.parametrize(("docs", "status"), [(False, 404), (True, 200)])
async def test_openapi_and_docs_answer_only_when_the_setting_says(docs: bool, status: int) -> None:
    settings = Settings(OMNIHUB_API_DOCS=docs)
    app = create_app(settings, "127.0.0.1:1", None, core=False, adapters={})
    transport = httpx.ASGITransport(app=app)  # no lifespan: nothing is started
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as http:
        for path in ("/openapi.json", "/docs", "/redoc"):
            response = await http.get(path)
            assert response.status_code == status, path
        assert (await http.get("/healthz")).status_code == 200
        if docs:
            assert (await http.get("/openapi.json")).json()["info"]["title"] == "omnihub"


def test_the_docs_are_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMNIHUB_API_DOCS", raising=False)
    assert Settings().api_docs is False


def test_omnihub_up_turns_the_docs_on_unless_the_environment_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = Settings(OMNIHUB_DATA_DIR=tmp_path)
    monkeypatch.delenv("OMNIHUB_API_DOCS", raising=False)
    env = supervisor.component_env(settings, "127.0.0.1:9092", "postgresql://x/omnihub")
    assert env["OMNIHUB_API_DOCS"] == "true"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092"
    monkeypatch.setenv("OMNIHUB_API_DOCS", "false")
    env = supervisor.component_env(settings, "127.0.0.1:9092", "postgresql://x/omnihub")
    assert env["OMNIHUB_API_DOCS"] == "false"


# --- the dispatcher's provider metrics ------------------------------------------------------


class FailingAdapter:
    name = "fake"
    channels = frozenset({"sms"})

    async def send(self, command: OutboundCommand) -> Any:
        raise SendError("the number is unsubscribed", code="21610")


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_failed_send_is_counted_by_channel_and_error_code(pool: asyncpg.Pool) -> None:
    """Sent through the dispatcher's real claim and consent check (the session's PostgreSQL),
    by an adapter the provider refuses."""
    command = OutboundCommand(
        customer_id=uuid.uuid4(),
        channel="sms",
        to={"type": "phone", "value": "+33612345678"},
        text="hi",
    )
    failures = {"channel": "sms", "error_code": "21610"}
    failed = {"channel": "sms", "state": "failed"}
    before = (
        sample("omnihub_send_failures_total", failures),
        sample("omnihub_sends_total", failed),
        sample("omnihub_send_seconds_count", {"channel": "sms"}),
    )
    outcome = await send.dispatch(pool, {"fake": FailingAdapter()}, command)  # type: ignore[dict-item]
    assert outcome.status.error_code == "21610"
    after = (
        sample("omnihub_send_failures_total", failures),
        sample("omnihub_sends_total", failed),
        sample("omnihub_send_seconds_count", {"channel": "sms"}),
    )
    assert after == (before[0] + 1, before[1] + 1, before[2] + 1)


# --- the dashboard and the alert rules ------------------------------------------------------


def metric_modules() -> list[str]:
    """Every module of ours that imports prometheus_client (where the metrics are defined)."""
    found = []
    for path in sorted((ROOT / "services").rglob("*.py")):
        if re.search(
            r"^from prometheus_client import .*\b(Counter|Gauge|Histogram|Summary)\b",
            path.read_text(),
            re.MULTILINE,
        ):
            found.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return found


def registered() -> set[str]:
    """The series names the hub's metrics expose (``_total``, ``_bucket`` ...)."""
    for module in metric_modules():
        importlib.import_module(module)
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
    }
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("omnihub_"):
            names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


#: PromQL words that are not metric names.
KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group()
        if word.lower() in KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue  # a function or an operator
        names.add(word)
    return names


def test_the_metric_name_reader_reads_promql() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (route, le) (rate(x_bucket{route="/a b"}[5m]))) > 0.25'
    ) == {"x_bucket"}
    assert metric_names("sum(rate(a_total[5m])) / sum(rate(b_total[5m])) and up == 0") == {
        "a_total",
        "b_total",
        "up",
    }


def test_the_hub_registers_the_metrics_the_dashboard_needs() -> None:
    names = registered()
    for wanted in (
        "omnihub_dead_letters_total",
        "omnihub_send_failures_total",
        "omnihub_http_request_seconds_bucket",
        "omnihub_processed_total",
        "omnihub_consumer_lag",
        "omnihub_acceptance_to_timeline_seconds_bucket",
    ):
        assert wanted in names


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    panels = list(dashboard["panels"])
    exprs = []
    while panels:
        panel = panels.pop()
        panels.extend(panel.get("panels", []))
        exprs.extend(t["expr"] for t in panel.get("targets", []))
    return exprs


def test_the_dashboard_names_only_metrics_the_hub_registers() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "omnihub"
    assert all("gridPos" in p and p.get("title") for p in dashboard["panels"])
    exprs = dashboard_exprs(dashboard)
    assert len(exprs) >= 10
    known = registered() | EXTERNAL
    named = set().union(*(metric_names(e) for e in exprs))
    assert named <= known, f"unknown metrics: {sorted(named - known)}"
    for wanted in (
        "omnihub_consumer_lag",
        "omnihub_acceptance_to_timeline_seconds_bucket",
        "omnihub_dead_letters_total",
        "omnihub_send_failures_total",
        "omnihub_http_requests_total",
        "omnihub_http_request_seconds_bucket",
        "omnihub_send_seconds_bucket",
    ):
        assert wanted in named


def test_the_alert_rules_are_a_rule_file_naming_only_known_metrics() -> None:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    known = registered() | EXTERNAL
    alerts = {}
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"} and group["name"]
        for rule in group["rules"]:
            assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert {"summary", "description"} <= set(rule["annotations"])
            named = metric_names(rule["expr"])
            assert named, rule["alert"]
            assert named <= known, f"{rule['alert']}: unknown {sorted(named - known)}"
            alerts[rule["alert"]] = rule["expr"]
    assert len(alerts) == sum(len(g["rules"]) for g in document["groups"])  # names unique
    read = set().union(*(metric_names(e) for e in alerts.values()))
    for wanted in (
        "up",
        "omnihub_consumer_lag",
        "omnihub_acceptance_to_timeline_seconds_bucket",
        "omnihub_dead_letters_total",
        "omnihub_send_failures_total",
        "omnihub_http_request_seconds_bucket",
    ):
        assert wanted in read
    assert any("0.25" in expr for expr in alerts.values())  # the 250 ms target
