"""The deployment artefacts under deploy/ and docker-compose.yml: Prometheus config and alert
rules (promtool, and promtool's rule unit tests), the Grafana dashboard's PromQL against what the
services really export, and a real Prometheus scraping the session pipeline with the rules."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from streamscribe.common import metrics
from streamscribe.common.settings import ServiceSection, TopicSettings
from streamscribe.embed.settings import EmbedSection
from streamscribe.ingest.settings import IngestSection
from streamscribe.transcribe.settings import TranscribeSection
from tests.conftest import require_tool
from tests.integration import validators
from tests.integration.conftest import Pipeline, free_port, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS_YML = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "streamscribe.json"
DEFAULT_PORTS = {
    "ingest": IngestSection().http_port,
    "transcribe": TranscribeSection().http_port,
    "embed": EmbedSection().http_port,
}
SERVICES = tuple(DEFAULT_PORTS)
PROMETHEUS_MADE = {"up"}  # series Prometheus writes per target, not scraped
# Grafana's variables, as the dashboard's queries use them, for a Prometheus without Grafana
GRAFANA_VARIABLES = {"$service": ".+", "$__rate_interval": "1m", "$__range": "1h"}
ENV_FROM = {"configMapRef": "ConfigMap", "secretRef": "Secret"}
SAMPLE_SUFFIXES = {  # family type -> the sample names it may have (text format)
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


# the secrets docker-compose.yml takes from the environment (or .env): compose refuses the
# file without them
API_SECRETS = {
    "STREAMSCRIBE_API__ADMIN_KEY": "k" * 64,
    "STREAMSCRIBE_API__CALLBACK_SECRET": "s" * 64,
}


def run(
    *command: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=None if env is None else os.environ | env,
    )


# --- promtool ---------------------------------------------------------------------------------


def test_promtool_checks_config() -> None:
    result = run(require_tool("promtool"), "check", "config", PROMETHEUS_YML)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_rules() -> None:
    """Parses every rule and its PromQL expression."""
    result = run(require_tool("promtool"), "check", "rules", ALERTS_YML)
    assert result.returncode == 0, result.stdout + result.stderr


def _series(name: str, service: str, values: str, **labels: str) -> dict[str, str]:
    job = f"streamscribe-{service}"
    pairs = {"job": job, "instance": f"{service}:{DEFAULT_PORTS[service]}", "service": service}
    text = ", ".join(f'{k}="{v}"' for k, v in (pairs | labels).items())
    return {"series": f"{name}{{{text}}}", "values": values}


def _alert(service: str, *keys: str, **labels: str) -> dict[str, Any]:
    """An expected alert of `service`; `keys` names its target labels the rule keeps."""
    own = {"job": f"streamscribe-{service}", "service": service}
    own["instance"] = f"{service}:{DEFAULT_PORTS[service]}"
    return {"exp_labels": {k: own[k] for k in keys} | {"severity": "warning"} | labels}


def test_alert_rules_fire_as_intended(tmp_path: Path) -> None:
    """promtool's rule unit tests on synthetic series: each alert fires when it should and not
    when it should not (no ceiling, other jobs, a counter that stopped, a first dead letter).
    Annotations are left out of the comparison: promtool would compare their full text."""
    promtool = require_tool("promtool")
    rules = yaml.safe_load(ALERTS_YML.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(json.dumps(rules))
    all_labels = ("job", "instance", "service")
    dead, failed = "streamscribe_dead_letters_total", "streamscribe_failures_total"
    lag = "streamscribe_consumer_lag_messages"
    by_topic = ("job", "service")
    tests = [
        {
            "interval": "1m",
            "input_series": [
                # embed at 93% of a 512 MiB ceiling; ingest without a ceiling; transcribe at 50%
                _series("process_resident_memory_bytes", "embed", "500000000x10"),
                _series("streamscribe_memory_ceiling_bytes", "embed", "536870912x10"),
                _series("process_resident_memory_bytes", "ingest", "500000000x10"),
                _series("streamscribe_memory_ceiling_bytes", "ingest", "0x10"),
                _series("process_resident_memory_bytes", "transcribe", "268435456x10"),
                _series("streamscribe_memory_ceiling_bytes", "transcribe", "536870912x10"),
                _series("streamscribe_memory_paused", "embed", "0 0 1x10"),
                _series("streamscribe_ready", "ingest", "0x10"),
                _series("streamscribe_ready", "embed", "1x10"),
                _series("up", "transcribe", "1 0x10"),
                {"series": 'up{job="other", instance="x:1"}', "values": "0x10"},
            ],
            "alert_rule_test": [
                {
                    "eval_time": "5m",
                    "alertname": "StreamscribeMemoryNearCeiling",
                    "exp_alerts": [_alert("embed", *all_labels)],
                },
                {"eval_time": "5m", "alertname": "StreamscribeMemoryPaused", "exp_alerts": []},
                {
                    "eval_time": "8m",
                    "alertname": "StreamscribeMemoryPaused",
                    "exp_alerts": [_alert("embed", *all_labels)],
                },
                {
                    "eval_time": "6m",
                    "alertname": "StreamscribeNotReady",
                    "exp_alerts": [_alert("ingest", *all_labels)],
                },
                {
                    "eval_time": "4m",
                    "alertname": "StreamscribeServiceDown",
                    "exp_alerts": [_alert("transcribe", *all_labels, severity="critical")],
                },
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                # a first dead letter: the series appears at 1 and stays
                _series(dead, "embed", "_x20 1x20", stage="embed"),
                # dead letters long ago: the counter no longer moves
                _series(dead, "ingest", "3x40", stage="ingest"),
                _series(dead, "transcribe", "0x20 1 2 3x20", stage="transcribe"),
                # 1 failure per minute: above 0.5 per minute; 1 per 10 minutes: below
                _series(failed, "ingest", "0+1x40", stage="ingest", reason="too_long"),
                _series(failed, "ingest", "0+0.1x40", stage="ingest", reason="refused_url"),
                _series(failed, "embed", "_x20 1x20", stage="embed", reason="index_error"),
                _series(lag, "transcribe", "0+10x60", topic="media.audio"),
                _series(lag, "embed", "2000x60", topic="media.transcript"),
                _series("process_start_time_seconds", "ingest", "100x5 400x5 700x5 1000x20"),
                _series("process_start_time_seconds", "embed", "100x40"),
            ],
            "alert_rule_test": [
                {
                    "eval_time": "22m",
                    "alertname": "StreamscribeDeadLetters",
                    "exp_alerts": [
                        _alert("embed", *by_topic, stage="embed"),
                        _alert("transcribe", *by_topic, stage="transcribe"),
                    ],
                },
                {
                    "eval_time": "25m",
                    "alertname": "StreamscribeFailureRateHigh",
                    "exp_alerts": [_alert("ingest", *by_topic, stage="ingest", reason="too_long")],
                },
                {
                    "eval_time": "22m",
                    "alertname": "StreamscribeInternalFailures",
                    "exp_alerts": [_alert("embed", *by_topic, stage="embed", reason="index_error")],
                },
                {
                    "eval_time": "50m",
                    "alertname": "StreamscribeConsumerLagGrowing",
                    "exp_alerts": [_alert("transcribe", *by_topic, topic="media.audio")],
                },
                {
                    "eval_time": "20m",
                    "alertname": "StreamscribeConsumerLagHigh",
                    "exp_alerts": [_alert("embed", *by_topic, topic="media.transcript")],
                },
                {
                    "eval_time": "20m",
                    "alertname": "StreamscribeRestarting",
                    "exp_alerts": [_alert("ingest", *all_labels)],
                },
            ],
        },
    ]
    unit = {"rule_files": [str(tmp_path / "rules.yml")], "evaluation_interval": "1m"}
    (tmp_path / "test.yml").write_text(json.dumps(unit | {"tests": tests}))
    result = run(promtool, "test", "rules", tmp_path / "test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


# --- the dashboard and the metric names -------------------------------------------------------

_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_IDENTIFIER = re.compile(r"(?<![\w.:$])[A-Za-z_:][\w:]*(?![\w:])(?!\s*\()")  # not a call
_KEYWORDS = {"and", "or", "unless", "bool", "atan2", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (Grafana variables allowed)."""
    text = _STRING.sub('""', expr)
    for pattern in (_MATCHERS, _RANGE, _GROUPING, _OFFSET, _VARIABLE):
        text = pattern.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


def test_metric_names_reads_promql() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (stage, le) (rate(streamscribe_stage_duration_seconds_"
        'bucket{service=~"$service", x="a{b}"}[$__rate_interval]))) / on (job) group_left (x) '
        "(up offset 5m > bool 1e3) or process_resident_memory_bytes"
    )
    assert metric_names(expr) == {
        "streamscribe_stage_duration_seconds_bucket",
        "up",
        "process_resident_memory_bytes",
    }


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel, rows' nested panels included."""
    found = []

    def visit(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            visit(panel.get("panels", []))
            found.extend((panel["title"], t["expr"]) for t in panel.get("targets", []))

    visit(dashboard["panels"])
    return found


def variable_queries(dashboard: dict[str, Any]) -> list[str]:
    """The metric selectors of the dashboard's `label_values(selector, label)` variables."""
    selectors = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", text)
            assert match, f"variable {variable['name']}: unexpected query {text!r}"
            selectors.append(match.group(1))
    return selectors


def test_dashboard_is_complete() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "streamscribe"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p.get("targets") for p in panels), "a panel without a query"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    names = set().union(*(metric_names(expr) for _, expr in dashboard_queries(dashboard)))
    shown = {
        "process_resident_memory_bytes",
        "streamscribe_peak_resident_memory_bytes",
        "streamscribe_memory_ceiling_bytes",
        "streamscribe_memory_paused",
        "streamscribe_model_load_bytes",
        "streamscribe_temp_files",
        "streamscribe_temp_bytes",
        "streamscribe_chunks_total",
        "streamscribe_audio_seconds_total",
        "streamscribe_stage_duration_seconds_bucket",
        "streamscribe_failures_total",
        "streamscribe_dead_letters_total",
        "streamscribe_consumer_lag_messages",
    }
    assert shown <= names, f"not on the dashboard: {sorted(shown - names)}"


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def exported_names(text: str) -> tuple[set[str], set[str]]:
    """(family names, sample names) of a scrape. Families without samples (labelled metrics
    before their first use) still have `# HELP`/`# TYPE` lines: their sample names follow from
    the type."""
    families, samples = set(), set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        samples.update(sample.name for sample in family.samples)
        samples.update(family.name + suffix for suffix in SAMPLE_SUFFIXES.get(family.type, ("",)))
    return families, samples


def service_ports(pipeline: Pipeline) -> dict[str, int]:
    return {s: int(pipeline.env[f"STREAMSCRIBE_{s.upper()}__HTTP_PORT"]) for s in SERVICES}


def test_dashboard_and_alerts_use_only_exported_metrics(pipeline: Pipeline) -> None:
    declared = {  # the families streamscribe.common.metrics declares
        family.name
        for collector in vars(metrics).values()
        if isinstance(collector, MetricWrapperBase)
        for family in collector.describe()
    }
    assert "streamscribe_ready" in declared
    exported: set[str] = set()
    for service, port in service_ports(pipeline).items():
        families, samples = exported_names(scrape(port))
        assert declared <= families, f"{service} does not export {sorted(declared - families)}"
        exported |= samples

    dashboard = json.loads(DASHBOARD.read_text())
    queries = dashboard_queries(dashboard) + [("variable", q) for q in variable_queries(dashboard)]
    rules = yaml.safe_load(ALERTS_YML.read_text())
    queries += [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]
    unknown = {}
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        if missing := names - exported - PROMETHEUS_MADE:
            unknown[where] = sorted(missing)
    assert not unknown, f"metrics no service exports: {unknown}"


# --- a real Prometheus --------------------------------------------------------------------------


class Prometheus:
    def __init__(self, base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.base_url = base_url
        self.process = process
        self.log = log

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:  # 400/422 carry the API's error as JSON
            return json.load(exc)

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", f"{expr}: {answer}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def answers(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"prometheus exited {self.process.returncode}: {self.log.read_text()}")
        try:
            with urllib.request.urlopen(f"{self.base_url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False


def scrape_config(pipeline: Pipeline) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with the pipeline's ports as targets, its rule file by
    absolute path, and intervals short enough for a test."""
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    ports = service_ports(pipeline)
    jobs = []
    for job in config["scrape_configs"]:
        [static] = job["static_configs"]
        service = static.get("labels", {}).get("service")
        if service in ports:
            static["targets"] = [f"127.0.0.1:{ports[service]}"]
            jobs.append(job)
    assert {job["static_configs"][0]["labels"]["service"] for job in jobs} == set(SERVICES)
    config["global"] |= {"scrape_interval": "1s", "scrape_timeout": "1s"}
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(ALERTS_YML)]
    config["scrape_configs"] = jobs
    config.pop("alerting", None)
    return config


@pytest.fixture(scope="module")
def prometheus(
    pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    """The Debian `prometheus` on a free loopback port, scraping the session pipeline and
    evaluating alerts.yml, until the module's tests are done."""
    binary = require_tool("prometheus")
    home = tmp_path_factory.mktemp("prometheus")
    (home / "prometheus.yml").write_text(json.dumps(scrape_config(pipeline)))  # YAML ⊃ JSON
    port = free_port()
    log = home / "prometheus.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={home / 'prometheus.yml'}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_for(server.answers, 30, "prometheus to answer /-/ready", 0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def jobs() -> list[str]:
    return [f"streamscribe-{service}" for service in SERVICES]


def test_prometheus_scrapes_every_service(prometheus: Prometheus) -> None:
    def all_up() -> bool:
        values = [prometheus.query(f'up{{job="{job}"}}') for job in jobs()]
        return all(len(v) == 1 and v[0]["value"][1] == "1" for v in values)

    wait_for(all_up, 30, f"up == 1 for {jobs()}", 0.2)

    def ceilings() -> set[str]:
        result = prometheus.query("streamscribe_memory_ceiling_bytes")
        return {series["metric"]["service"] for series in result}

    wait_for(lambda: ceilings() == set(SERVICES), 30, "streamscribe_memory_ceiling_bytes", 0.2)
    ready = prometheus.query("streamscribe_ready == 1")
    assert {series["metric"]["job"] for series in ready} == set(jobs())


def test_prometheus_evaluates_the_alert_rules(prometheus: Prometheus) -> None:
    groups = yaml.safe_load(ALERTS_YML.read_text())["groups"]
    names = {rule["alert"] for group in groups for rule in group["rules"]}

    def evaluated() -> dict[str, dict[str, Any]] | None:
        groups = prometheus.get("/api/v1/rules")["data"]["groups"]
        rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
        return rules if all(rules[n]["health"] != "unknown" for n in rules) else None

    rules = wait_for(evaluated, 30, "the alert rules to be evaluated", 0.2)
    assert set(rules) == names
    broken = {n: r.get("lastError") for n, r in rules.items() if r["health"] != "ok"}
    assert not broken, broken
    # a healthy pipeline: nothing about being down, or not ready
    alerts = prometheus.get("/api/v1/alerts")["data"]["alerts"]
    assert not [a for a in alerts if a["labels"]["alertname"] == "StreamscribeServiceDown"]


def test_prometheus_evaluates_the_dashboard(prometheus: Prometheus) -> None:
    """Every dashboard query, with Grafana's variables filled in, is one the real PromQL engine
    accepts on live data (syntax, functions, vector matching)."""

    def scraped() -> set[str]:  # the RSS panel's series: one per service
        memory = prometheus.query('process_resident_memory_bytes{service=~".+"}')
        return {series["metric"]["service"] for series in memory}

    # every service scraped once: the queries then run on live data of each
    wait_for(lambda: scraped() == set(SERVICES), 30, "a scrape of every service", 0.2)
    for title, expr in dashboard_queries(json.loads(DASHBOARD.read_text())):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{title}: a Grafana variable the test does not know: {expr}"
        prometheus.query(expr)  # asserts success


# --- compose, Kubernetes, Dockerfiles -----------------------------------------------------------


def test_compose_and_manifests_agree_with_the_services() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert compose["kafka"]["image"].startswith("apache/kafka:")
    for service, port in DEFAULT_PORTS.items():
        spec, env = compose[service], compose[service]["environment"]
        assert spec["mem_limit"] == "512m"
        assert env["STREAMSCRIBE_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["STREAMSCRIBE_KAFKA__ENABLE_IDEMPOTENCE"] == "true"
        assert env[f"STREAMSCRIBE_{service.upper()}__HTTP_HOST"] == "0.0.0.0"
        assert int(env[f"STREAMSCRIBE_{service.upper()}__HTTP_PORT"]) == port
        assert (ROOT / spec["build"]["dockerfile"]).is_file()
    # the API's secrets: from the environment (.env), never written here; the embed container
    # and the CLI service send the admin key, the other workers hold none
    embed_env = compose["embed"]["environment"]
    for name in ("STREAMSCRIBE_API__ADMIN_KEY", "STREAMSCRIBE_API__CALLBACK_SECRET"):
        assert embed_env[name].startswith(f"${{{name}:?"), name
    assert embed_env["STREAMSCRIBE_API_KEY"] == embed_env["STREAMSCRIBE_API__ADMIN_KEY"]
    cli = compose["cli"]
    assert cli["environment"]["STREAMSCRIBE_API_KEY"] == embed_env["STREAMSCRIBE_API__ADMIN_KEY"]
    assert cli["environment"]["STREAMSCRIBE_API_URL"] == f"http://embed:{DEFAULT_PORTS['embed']}"
    assert cli["image"] == compose["ingest"]["image"]
    for service in ("ingest", "transcribe"):
        assert not [k for k in compose[service]["environment"] if "API" in k], service
    for service in ("prometheus", "grafana"):
        for volume in compose[service]["volumes"]:
            source = volume.split(":")[0]
            assert not source.startswith(".") or (ROOT / source).exists(), volume

    k8s = DEPLOY / "k8s"
    resources = yaml.safe_load((k8s / "kustomization.yaml").read_text())["resources"]
    docs = [d for name in resources for d in yaml.safe_load_all((k8s / name).read_text()) if d]
    named = {(d["kind"], d["metadata"]["name"]) for d in docs}
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {f"streamscribe-{s}" for s in SERVICES}
    for service, port in DEFAULT_PORTS.items():
        pod = deployments[f"streamscribe-{service}"]["spec"]["template"]
        [container] = pod["spec"]["containers"]
        assert container["resources"]["limits"]["memory"] == "512Mi"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["ports"][0]["containerPort"] == port
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
        assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == service
        for source in container["envFrom"]:
            [(kind, ref)] = source.items()
            assert (ENV_FROM[kind], ref["name"]) in named, f"{service}: no {kind} {ref['name']}"
        for variable in container.get("env", []):
            if ref := variable.get("valueFrom", {}).get("secretKeyRef"):
                [secret] = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"]
                            == ref["name"]]  # fmt: skip
                assert ref["key"] in secret["stringData"], f"{service}: {variable['name']}"
    # the API (in embed) takes its admin key and callback secret from a Secret, never a value;
    # the CLI in the pod sends the same key; a Service reaches it
    [embed] = deployments["streamscribe-embed"]["spec"]["template"]["spec"]["containers"]
    refs = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in embed["env"] if "valueFrom" in v}
    api_names = {"STREAMSCRIBE_API__ADMIN_KEY", "STREAMSCRIBE_API__CALLBACK_SECRET"}
    assert api_names <= set(refs)
    assert refs["STREAMSCRIBE_API_KEY"] == refs["STREAMSCRIBE_API__ADMIN_KEY"]
    [api] = [d for d in docs if d["kind"] == "Service"]
    selector = deployments["streamscribe-embed"]["spec"]["selector"]["matchLabels"]
    assert api["spec"]["selector"] == selector
    assert api["spec"]["ports"][0]["port"] == DEFAULT_PORTS["embed"]

    for service in SERVICES:
        dockerfile = (DEPLOY / "docker" / f"Dockerfile.{service}").read_text()
        assert "\nARG BASE_IMAGE=python:3.11-slim\n" in dockerfile
        assert re.findall(r"^FROM (\S+)", dockerfile, re.M)[-1] == "${BASE_IMAGE}"
        assert re.search(r"^USER 10001:10001$", dockerfile, re.M)
        assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", dockerfile, re.M)
        assert f'CMD ["worker", "{service}"]' in dockerfile
        installs = re.findall(r"pip install[^\n]*", dockerfile)
        if service != "embed":
            assert not [line for line in installs if "torch" in line], service


# --- the validators: Compose v2, hadolint, kubernetes-validate, KEDA's shape ---------------------


def test_compose_v2_validates_the_compose_file() -> None:
    compose = validators.compose()
    for profile in ((), ("--profile", "cli")):  # the stack; with the CLI service
        config = ("-f", ROOT / "docker-compose.yml", *profile, "config", "-q")
        result = run(compose, *config, env=API_SECRETS)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("variable", sorted(API_SECRETS))
def test_compose_refuses_to_run_without_the_api_secrets(variable: str, tmp_path: Path) -> None:
    """No default key: compose stops and says what to set (here, without the repository's own
    .env, if one was made)."""
    (tmp_path / "docker-compose.yml").write_text((ROOT / "docker-compose.yml").read_text())
    (tmp_path / "deploy").symlink_to(DEPLOY)
    unset = {name: value for name, value in API_SECRETS.items() if name != variable}
    environment = {k: v for k, v in os.environ.items() if k not in API_SECRETS} | unset
    result = subprocess.run(
        [validators.compose(), "-f", tmp_path / "docker-compose.yml", "config", "-q"],
        capture_output=True, text=True, timeout=60, check=False, env=environment,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"set {variable} in .env" in result.stderr, result.stderr


def test_compose_v2_refuses_a_broken_compose_file(tmp_path: Path) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    compose["services"]["ingest"]["mem_limit"] = "a lot"
    (tmp_path / "compose.yml").write_text(json.dumps(compose))
    (tmp_path / "deploy").symlink_to(DEPLOY)  # the file's relative paths still resolve
    result = run(
        validators.compose(), "-f", tmp_path / "compose.yml", "config", "-q", env=API_SECRETS
    )
    assert result.returncode != 0
    assert "mem_limit" in result.stderr


@pytest.mark.parametrize("dockerfile", validators.dockerfiles(), ids=lambda path: path.name)
def test_hadolint_passes_the_dockerfile(dockerfile: Path) -> None:
    findings = validators.hadolint(dockerfile)
    assert findings == [], findings


def test_hadolint_config_gives_a_reason_for_every_ignored_rule() -> None:
    reasons = validators.ignored_rules()
    assert reasons, "no rule ignored: then drop `ignored` from .hadolint.yaml"
    for rule, reason in reasons.items():
        assert rule in reason, f"{rule}: the comment above it does not name it"
        assert len(reason) > 60, f"{rule}: no reason given"


def test_hadolint_flags_what_it_should(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install -y curl\nCMD python3 app.py\n")
    rules = {finding.split()[1] for finding in validators.hadolint(bad)}
    assert {"DL3006", "DL3025", "DL3015"} <= rules, rules  # untagged FROM, shell CMD, recommends


def test_every_kubernetes_manifest_is_valid() -> None:
    checked = validators.validate_manifests(DEPLOY / "k8s")
    kinds = {kind for kind, _ in checked}
    assert {"Deployment", "ConfigMap", "Secret", "Namespace", "PersistentVolumeClaim"} <= kinds
    assert {"ScaledObject", "TriggerAuthentication", "Kustomization"} <= kinds


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        (("spec", "template", "spec", "containers", 0, "resources", "limit"), {}, "limit"),
        (("spec", "replicas"), "two", "two"),
        (("spec", "template", "spec", "containers", 0, "name"), None, "name"),
    ],
)
def test_kubernetes_validate_refuses_a_broken_deployment(
    path: tuple[str | int, ...], value: object, complaint: str
) -> None:
    deployment = validators.load_documents(DEPLOY / "k8s" / "embed.yaml")[0]
    validators.set_path(deployment, path, value)
    with pytest.raises(validators.InvalidManifestError, match=complaint):
        validators.validate_document(deployment)


KEDA_DOCUMENTS = DEPLOY / "k8s" / "keda" / "scaledobjects.yaml"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "triggers", 0, "metadata", "lagThreshold"), 20),  # KEDA wants strings
        (("spec", "triggers", 0, "metadata", "consumerGroup"), None),  # required
        (("spec", "triggers", 0, "metadata", "sasl"), "scram-sha-512"),
        (("spec", "maxReplicas"), 3),  # an HPA field, not a ScaledObject one
        (("spec", "scaleTargetRef"), None),
        (("spec", "triggers"), []),
    ],
)
def test_the_keda_schema_refuses_a_broken_scaled_object(
    path: tuple[str | int, ...], value: object
) -> None:
    scaled = validators.load_documents(KEDA_DOCUMENTS)[0]
    assert scaled["kind"] == "ScaledObject"
    validators.validate_document(scaled)  # as it is: valid
    validators.set_path(scaled, path, value)
    with pytest.raises(validators.InvalidManifestError):
        validators.validate_document(scaled)


def test_a_scaled_object_per_consumer_group_matches_the_deployment() -> None:
    """One kafka trigger per service, on the group and topic the service consumes, the broker
    and SASL settings the workers use, never more replicas than partitions."""
    k8s = DEPLOY / "k8s"
    settings = validators.load_documents(k8s / "configmap.yaml")[0]["data"]
    secret = validators.load_documents(k8s / "secret.yaml")[0]
    deployments = {
        d["metadata"]["name"]: d
        for name in ("ingest", "transcribe", "embed")
        for d in validators.load_documents(k8s / f"{name}.yaml")
        if d["kind"] == "Deployment"
    }
    keda = validators.load_documents(KEDA_DOCUMENTS)
    auths = {d["metadata"]["name"]: d for d in keda if d["kind"] == "TriggerAuthentication"}
    scaled = {d["metadata"]["name"]: d for d in keda if d["kind"] == "ScaledObject"}
    topics = TopicSettings()
    consumed = {"ingest": topics.requested, "transcribe": topics.audio, "embed": topics.transcript}
    assert set(scaled) == {f"streamscribe-{service}" for service in SERVICES}
    for service in SERVICES:
        spec = scaled[f"streamscribe-{service}"]["spec"]
        assert spec["scaleTargetRef"]["name"] in deployments
        [trigger] = spec["triggers"]
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert meta["consumerGroup"] == ServiceSection().group(service, topics)  # the default
        assert meta["topic"] == consumed[service]
        assert meta["bootstrapServers"] == settings["STREAMSCRIBE_KAFKA__BOOTSTRAP_SERVERS"]
        assert int(meta["lagThreshold"]) >= 1
        assert spec["maxReplicaCount"] <= int(settings["STREAMSCRIBE_TOPICS__PARTITIONS"])
        protocol = settings["STREAMSCRIBE_KAFKA__SECURITY_PROTOCOL"]
        assert meta["tls"] == ("enable" if protocol.endswith("SSL") else "disable")
        mechanism = settings["STREAMSCRIBE_KAFKA__SASL_MECHANISM"]  # SCRAM-SHA-512
        assert meta["sasl"] == mechanism.lower().replace("-", "_").replace("sha_", "sha")
        auth = auths[trigger["authenticationRef"]["name"]]
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["name"] == secret["metadata"]["name"]
            assert ref["key"] in secret["stringData"], ref
    embed = deployments["streamscribe-embed"]["spec"]
    assert scaled["streamscribe-embed"]["spec"]["maxReplicaCount"] == 1  # SQLite on RWO
    # the HTTP API lives in embed: never scaled to zero
    assert scaled["streamscribe-embed"]["spec"]["minReplicaCount"] == 1
    assert embed["strategy"]["type"] == "Recreate"
