"""The deployment files agree with the app: Dockerfile, docker-compose.yml and the files its
profiles mount (nginx, Prometheus, Grafana), deploy/kubernetes.yaml.

Parsed, not run (`make container-test` runs the image and the default compose services; the
images of the profiles cannot be pulled on the project's machine): every service, file, ConfigMap
and stage they name exists, every PROXY_* variable is a setting with a valid value, ports, probes,
health checks, load-balancer upstreams and scrape targets point at the port the proxy listens on,
the configs they mount pass `check-config`, and every metric the Grafana dashboard queries is one
the proxy's GET /metrics exports (asked of the real app, in process).
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import orjson
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from app import metrics
from app.cli import _parser, main
from app.config import ProxyConfig, load_config
from app.limits import plan_limits
from app.main import create_app
from app.mock_upstream import complete
from app.settings import Settings
from app.upstream import HttpxUpstream

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
KUBERNETES = ROOT / "deploy/kubernetes.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DASHBOARD = ROOT / "config/grafana/dashboards/custom-llm-proxy.json"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
IMAGE = f"custom-llm-proxy:{PROJECT['version']}"
_COMPOSE_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")

PROFILES = {
    "replicated": {"redis", "proxy-a", "proxy-b", "lb"},
    "monitoring": {"prometheus", "grafana"},
}
REPLICAS = ("proxy-a", "proxy-b")
# What the dashboard must show (the issue's list): requests, errors, latency percentiles, the
# proxy's own overhead, time to first byte, tokens, in flight, upstream health, rate limits.
DASHBOARD_METRICS = {
    "proxy_requests_total",
    "proxy_request_duration_seconds_bucket",
    "proxy_overhead_duration_seconds_bucket",
    "proxy_time_to_first_byte_seconds_bucket",
    "proxy_upstream_duration_seconds_bucket",
    "proxy_tokens_total",
    "proxy_requests_in_flight",
    "proxy_upstream_retries_total",
    "proxy_fallbacks_total",
    "proxy_deployment_cooldowns_total",
    "proxy_deployment_up",
    "proxy_rate_limited_total",
}
# Labels Prometheus adds to every scraped series, and the bucket label of histograms.
SCRAPE_LABELS = {"job", "instance"}
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


# ---- helpers ------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            found.append((keyword.upper(), arguments.strip()))
    return found


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in dockerfile_instructions():
        if keyword == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(arguments))
    return env


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    return services


def compose_defaults(text: str) -> str:
    """`${VAR:-default}` as docker compose reads it when VAR is not set."""
    return _COMPOSE_VARIABLE.sub(lambda match: match.group(2) or "", text)


def project_services() -> dict[str, Any]:
    """The services built from this repository's Dockerfile."""
    return {name: service for name, service in compose_services().items() if "build" in service}


def proxy_services() -> dict[str, Any]:
    """The services that run `serve`: the default proxy and the replicas."""
    return {
        name: service
        for name, service in project_services().items()
        if _parser().parse_args(service["command"]).command == "serve"
    }


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Mount target → source (relative to the repository) of a service's `./source:target`."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        assert source.startswith("./"), f"not a bind mount of this repository: {volume}"
        found[target] = source
    return found


def published_ports(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each published port, variables defaulted."""
    found = []
    for port in service.get("ports", []):
        address, host, container = compose_defaults(port).split(":")
        found.append((address, int(host), int(container)))
    return found


def healthcheck_text(service: dict[str, Any]) -> str:
    return " ".join(service["healthcheck"]["test"])


def kubernetes_objects() -> dict[str, dict[str, Any]]:
    documents = list(yaml.safe_load_all(KUBERNETES.read_text(encoding="utf-8")))
    kinds = [document["kind"] for document in documents]
    assert len(kinds) == len(set(kinds)), kinds
    return {document["kind"]: document for document in documents}


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as the process would read them from exactly these PROXY_* variables."""
    known = {f"PROXY_{name.upper()}" for name in Settings.model_fields}
    unknown = sorted(set(env) - known)
    assert not unknown, f"not settings of app/settings.py: {unknown}"
    for name in known:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def proxy_env(variables: dict[str, Any]) -> dict[str, str]:
    return {name: str(value) for name, value in variables.items() if name.startswith("PROXY_")}


def mounted_config(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Path:
    """The repository file a proxy service reads as its PROXY_CONFIG."""
    settings = settings_from(proxy_env(service["environment"]), monkeypatch)
    mounts = bind_mounts(service)
    assert str(settings.config) in mounts, "PROXY_CONFIG is not a mounted file"
    return ROOT / mounts[str(settings.config)]


def nginx_text() -> str:
    (source,) = bind_mounts(compose_services()["lb"]).values()
    text = (ROOT / source).read_text(encoding="utf-8")
    return re.sub(r"#[^\n]*", "", text)


def nginx_block(text: str, opening: str) -> str:
    """The body of the first block that starts with `opening` (e.g. 'upstream x', 'server')."""
    match = re.search(r"(?<![\w$])" + re.escape(opening) + r"\s*\{", text)
    assert match is not None, f"no block {opening!r} in the nginx config"
    depth, start = 1, match.end()
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[start:index]
    raise AssertionError(f"the block {opening!r} is not closed")


def nginx_directives(block: str) -> dict[str, list[str]]:
    """Directive → its arguments (the last of each name) in a block, nested blocks left out."""
    while re.search(r"\{[^{}]*\}", block):
        block = re.sub(r"[^;{}]*\{[^{}]*\}", "", block)
    return {
        name: shlex.split(arguments)
        for name, arguments in re.findall(r"^\s*(\w+)\s*([^;]*);", block, re.MULTILINE)
    }


def nginx_seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h)?", value)
    assert match is not None, value
    scale = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[match.group(2)]
    return int(match.group(1)) * scale


def container_path(service: dict[str, Any], path: str) -> Path:
    """The repository file behind a path inside a service's container (through its mounts)."""
    for target, source in bind_mounts(service).items():
        if path == target or path.startswith(target.rstrip("/") + "/"):
            return ROOT / source / PurePosixPath(path).relative_to(target)
    raise AssertionError(f"{path} is not in a mounted directory")


def grafana_file(relative: str) -> Any:
    return yaml.safe_load(container_path(compose_services()["grafana"], relative).read_text())


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and variable queries."""
    queries = [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            selector, _label = label_values(variable["query"]["query"])
            queries.append(selector)
    return queries


def label_values(query: str) -> tuple[str, str]:
    """Grafana's `label_values(selector, label)` → (selector, label)."""
    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
    assert match is not None, query
    return match.group(1), match.group(2)


# ---- PromQL, as much as the checks need ---------------------------------------------------------

PROMQL_FUNCTIONS = {
    "sum", "min", "max", "avg", "count", "topk", "bottomk", "quantile", "rate", "irate",
    "increase", "histogram_quantile", "clamp_min", "clamp_max", "abs", "vector", "scalar",
}  # fmt: skip
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                   "and", "or", "unless", "offset", "inf", "nan"}  # fmt: skip
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, function names) an expression uses. Strings, label matchers, ranges,
    grouping clauses and Grafana's `$variables` are not names."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', " ", expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    metric_names, functions = set(), set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = match.groups()
        if call:
            functions.add(name)
        elif name.lower() not in PROMQL_KEYWORDS:
            metric_names.add(name)
    return metric_names, functions


def promql_labels(expr: str) -> set[str]:
    """The label names an expression matches on or groups by."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    labels = {
        label
        for _, matchers in _SELECTOR.findall(text)
        for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers)
    }
    for grouping in _GROUPING.findall(text):
        labels |= {label.strip() for label in grouping.split(",") if label.strip()}
    return labels


@pytest.mark.parametrize(
    ("expr", "names", "functions", "labels"),
    [
        (
            'histogram_quantile(0.99, sum by (le) (rate(proxy_x_bucket{job=~"$job"}[5m])))',
            {"proxy_x_bucket"},
            {"histogram_quantile", "sum", "rate"},
            {"le", "job"},
        ),
        (
            'sum(rate(a_total{status=~"5.."}[$__rate_interval])) / sum(rate(b_total[1m])) by (k)',
            {"a_total", "b_total"},
            {"sum", "rate"},
            {"status", "k"},
        ),
        (
            "min by (instance, model) (up_metric) > 1e3 and on (x) other",
            {"up_metric", "other"},
            {"min"},
            {"instance", "model", "x"},
        ),  # fmt: skip
    ],
)
def test_promql_names_and_labels(
    expr: str, names: set[str], functions: set[str], labels: set[str]
) -> None:
    assert promql_names(expr) == (names, functions)
    assert promql_labels(expr) == labels


# ---- what the proxy exports ---------------------------------------------------------------------


def _fake_upstream(_config: ProxyConfig) -> HttpxUpstream:
    async def answer(request: httpx.Request) -> httpx.Response:
        status, payload = complete(orjson.loads(request.content))
        return httpx.Response(status, content=orjson.dumps(payload))

    return HttpxUpstream(transport=httpx.MockTransport(answer))


async def _scrape_after_one_request() -> str:
    """GET /metrics of the real app serving the compose config, after one chat completion."""
    config = load_config(ROOT / "config/compose.yaml")
    settings = Settings(config=None, api_base=None, api_keys=[], redis_url=None)
    app = create_app(settings, config=config, upstream_factory=_fake_upstream)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://proxy.test") as client,
    ):
        body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
        answer = await client.post("/v1/chat/completions", json=body)
        assert answer.status_code == 200, answer.text
        scrape = await client.get("/metrics")
        assert scrape.status_code == 200
        return scrape.text


@pytest.fixture(scope="module")
def exported() -> Iterator[set[str]]:
    """Every sample name GET /metrics can show: the names of the samples it shows now, and those
    the families it declares have by their type (a labelled metric shows samples once used)."""
    text = asyncio.run(_scrape_after_one_request())
    names: set[str] = set()
    samples: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in SAMPLE_SUFFIXES.get(family.type, ())}
        samples |= {sample.name for sample in family.samples}
    assert "proxy_requests_total" in samples  # the request was counted
    assert samples <= names | {name for name in samples if name.endswith("_created")}
    yield names | samples


def declared_labels() -> dict[str, set[str]]:
    """Sample name → its label names, from the metrics app/metrics.py declares."""
    labels: dict[str, set[str]] = {}
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            own = set(metric._labelnames)  # prometheus-client keeps them only there
            for suffix in SAMPLE_SUFFIXES[metric._type]:
                labels[metric._name + suffix] = own | SCRAPE_LABELS
            if metric._type == "histogram":
                labels[metric._name + "_bucket"] |= {"le"}
    return labels


# ---- Dockerfile ---------------------------------------------------------------------------------


def test_dockerfile_bases_are_pinned_python_images() -> None:
    stages: set[str] = set()
    bases = []
    for keyword, arguments in dockerfile_instructions():
        if keyword == "FROM":
            words = arguments.split()
            if words[0] not in stages:
                bases.append(words[0])
            if len(words) == 3 and words[1].upper() == "AS":
                stages.add(words[2])
    assert bases and all(base.startswith("python:") for base in bases), bases
    assert all(":" in base and not base.endswith(":latest") for base in bases), bases
    assert len(set(bases)) == 1, f"build and runtime stages start from different Pythons: {bases}"
    assert len(stages) >= 2, "not a multi-stage build"


def test_dockerfile_serves_the_console_script_on_the_settings_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    instructions = dict(dockerfile_instructions())  # the last of each kind
    settings = settings_from(proxy_env(dockerfile_env()), monkeypatch)
    assert settings.host == "0.0.0.0"
    assert instructions["EXPOSE"] == str(settings.port)
    assert yaml.safe_load(instructions["ENTRYPOINT"]) == list(PROJECT["scripts"])
    _parser().parse_args(yaml.safe_load(instructions["CMD"]))
    assert "/health" in instructions["HEALTHCHECK"]
    assert "PROXY_PORT" in instructions["HEALTHCHECK"]  # the port the proxy listens on
    user, _, group = instructions["USER"].partition(":")
    assert user.isdigit() and int(user) != 0, "USER must be a numeric uid other than root"
    assert not group or (group.isdigit() and int(group) != 0)


# ---- docker-compose.yml: services, profiles, images, files, ports -------------------------------


def test_compose_default_services_are_the_proxy_and_the_mock_upstream() -> None:
    services = compose_services()
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert default == {"proxy", "mock-upstream"}
    profiles: dict[str, set[str]] = {}
    for name, service in services.items():
        for profile in service.get("profiles", []):
            profiles.setdefault(profile, set()).add(name)
    assert profiles == PROFILES


def test_compose_images_are_pinned() -> None:
    for name, service in compose_services().items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and "@" not in repository, f"{name}: {image} is not pinned"
        if "build" in service:
            assert image == IMAGE, f"{name}: {image} is not the project's version"
            assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        else:  # podman knows no default registry: the name says which
            assert re.search(r"\d", tag), f"{name}: {image} names no version"
            assert "." in image.split("/")[0], f"{name}: {image} names no registry"


def test_compose_dependencies_exist_and_run_with_their_dependents() -> None:
    services = compose_services()
    for name, service in services.items():
        for needed, how in service.get("depends_on", {}).items():
            assert needed in services, f"{name} depends on a service that does not exist: {needed}"
            mine, theirs = (set(s.get("profiles", [])) for s in (service, services[needed]))
            assert not theirs or (mine and mine <= theirs), (
                f"{name} can start without {needed} (profiles {sorted(theirs)})"
            )
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[needed], f"{needed} has no healthcheck"


def test_compose_mounts_files_of_this_repository() -> None:
    for name, service in compose_services().items():
        for target, source in bind_mounts(service).items():
            assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
            assert (ROOT / source).is_file() == (PurePosixPath(target).suffix != ""), target
        assert all(volume.endswith(":ro") for volume in service.get("volumes", [])), name


def test_compose_publishes_distinct_loopback_ports() -> None:
    published = []
    variables = []
    for name, service in compose_services().items():
        for address, host, _container in published_ports(service):
            assert address == "127.0.0.1", f"{name} is published beyond loopback"
            published.append(host)
        variables += _COMPOSE_VARIABLE.findall(" ".join(service.get("ports", [])))
    assert len(published) == len(set(published)), f"host ports collide: {sorted(published)}"
    names = [variable for variable, _ in variables]
    assert len(names) == len(set(names)) == len(published), "each port needs its own variable"


def test_compose_commands_are_cli_commands() -> None:
    for name, service in project_services().items():
        args = _parser().parse_args(service["command"])
        assert args.command in ("serve", "mock-upstream"), name


# ---- docker-compose.yml: the proxies ------------------------------------------------------------


def test_compose_proxies_are_the_default_one_and_the_replicas() -> None:
    assert set(proxy_services()) == {"proxy", *REPLICAS}
    first, second = (compose_services()[name] for name in REPLICAS)
    assert first == second, "the replicas differ"


@pytest.mark.parametrize("name", ["proxy", *REPLICAS])
def test_compose_proxy_env_ports_and_healthcheck_agree_with_settings(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = compose_services()[name]
    settings = settings_from(proxy_env(proxy["environment"]), monkeypatch)
    assert settings.host == "0.0.0.0"
    assert settings.workers >= 1
    assert f"http://127.0.0.1:{settings.port}/health" in healthcheck_text(proxy)
    if name == "proxy":
        assert published_ports(proxy) == [("127.0.0.1", 8000, settings.port)]
    else:  # reached through the load balancer only
        assert "ports" not in proxy
        assert [str(port) for port in proxy["expose"]] == [str(settings.port)]
    assert mounted_config(proxy, monkeypatch).is_file()


@pytest.mark.parametrize("name", ["proxy", *REPLICAS])
def test_compose_proxy_config_passes_check_config_and_serves_demo_from_the_mock(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    services = compose_services()
    proxy, mock = services[name], services["mock-upstream"]
    path = mounted_config(proxy, monkeypatch)
    settings_from({}, monkeypatch)  # check-config as it runs with no PROXY_* set
    assert main(["check-config", str(path)]) == 0
    assert f"{path}: OK, 1 model(s)" in capsys.readouterr().out
    config = load_config(path)
    assert [model.name for model in config.models] == ["demo"]  # the README's curl asks for it
    mock_args = _parser().parse_args(mock["command"])
    assert mock_args.host == "0.0.0.0"
    assert str(mock_args.port) in [str(port) for port in mock["expose"]]
    assert f"127.0.0.1', {mock_args.port})" in healthcheck_text(mock)
    assert config.models[0].api_base == f"http://mock-upstream:{mock_args.port}/inference"
    assert "mock-upstream" in proxy["depends_on"]


@pytest.mark.parametrize("name", REPLICAS)
def test_compose_replicas_count_their_limits_in_the_redis_service(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose_services()
    replica, redis = services[name], services["redis"]
    settings = settings_from(proxy_env(replica["environment"]), monkeypatch)
    assert settings.redis_url is not None
    match = re.fullmatch(r"redis://([\w-]+):(\d+)/\d+", settings.redis_url)
    assert match is not None, settings.redis_url
    host, port = match.groups()
    assert host == "redis" and redis["image"].startswith("docker.io/library/redis:")
    assert [str(exposed) for exposed in redis["expose"]] == [port]
    assert f"-p {port} ping" in healthcheck_text(redis)
    assert replica["depends_on"]["redis"]["condition"] == "service_healthy"
    config = load_config(mounted_config(replica, monkeypatch))
    plan = plan_limits(config, settings.redis_url)
    assert plan is not None and plan.redis_url == settings.redis_url, "limits not in Redis"
    assert [key.rpm for key in config.api_keys if key.name] == [60]  # what the compose header says


# ---- docker-compose.yml: the load balancer ------------------------------------------------------


def test_lb_round_robins_to_both_replicas_on_the_proxy_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = compose_services()
    lb = services["lb"]
    assert "/etc/nginx/conf.d/" in next(iter(bind_mounts(lb)))  # inside nginx.conf's http block
    text = nginx_text()
    (upstream_name,) = re.findall(r"\bupstream\s+(\S+)\s*\{", text)
    upstream = nginx_block(text, f"upstream {upstream_name}")
    servers = re.findall(r"^\s*server\s+(\S+)", upstream, re.MULTILINE)
    expected = []
    for name in REPLICAS:
        settings = settings_from(proxy_env(services[name]["environment"]), monkeypatch)
        expected.append(f"{name}:{settings.port}")
    assert servers == expected
    assert not re.search(r"\b(least_conn|ip_hash|hash|random)\b", upstream), "not round-robin"
    assert set(lb["depends_on"]) == set(REPLICAS)
    server = nginx_directives(nginx_block(text, "server"))
    container_port = published_ports(lb)[0][2]
    assert server["listen"] == [str(container_port)]
    assert f"http://127.0.0.1:{container_port}/health" in healthcheck_text(lb)


def test_lb_streams_and_waits_as_long_as_an_llm_call(monkeypatch: pytest.MonkeyPatch) -> None:
    text = nginx_text()
    location = nginx_directives(nginx_block(text, "location /"))
    (upstream_name,) = re.findall(r"\bupstream\s+(\S+)\s*\{", text)
    assert location["proxy_pass"] == [f"http://{upstream_name}"]
    assert location["proxy_http_version"] == ["1.1"]  # keep-alive to the replicas
    assert location["proxy_buffering"] == ["off"]  # server-sent events pass at once
    assert location["proxy_request_buffering"] == ["off"]
    replica = compose_services()[REPLICAS[0]]
    config = load_config(mounted_config(replica, monkeypatch))
    longest = max(deployment.timeout or model.timeout for model in config.models
                  for deployment in model.all_deployments)  # fmt: skip
    assert nginx_seconds(location["proxy_read_timeout"][0]) >= longest
    # The request id passes through (the client's, else nginx's own), and nginx logs it.
    headers = re.findall(r"proxy_set_header\s+(\S+)\s+(\S+);", nginx_block(text, "location /"))
    (id_variable,) = [value for header, value in headers if header.lower() == "x-request-id"]
    mapping = nginx_block(text, f"map $http_x_request_id {id_variable}")
    assert nginx_directives(mapping) == {"default": ["$http_x_request_id"]}
    assert re.search(r'""\s+\$request_id;', mapping)
    assert id_variable in text.split("log_format", 1)[1].split(";", 1)[0]


# ---- docker-compose.yml: Prometheus and Grafana -------------------------------------------------


def test_prometheus_scrapes_metrics_of_every_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose_services()
    prometheus = services["prometheus"]
    (config_flag,) = [flag for flag in prometheus["command"] if flag.startswith("--config.file=")]
    path = container_path(prometheus, config_flag.partition("=")[2])
    scrape = yaml.safe_load(path.read_text(encoding="utf-8"))["scrape_configs"]
    targets = set()
    for job in scrape:
        assert job["metrics_path"] == "/metrics", job["job_name"]
        for static in job["static_configs"]:
            targets |= set(static["targets"])
    expected = set()
    for name, service in proxy_services().items():
        settings = settings_from(proxy_env(service["environment"]), monkeypatch)
        expected.add(f"{name}:{settings.port}")
    assert targets == expected
    assert len({job["job_name"] for job in scrape}) == len(scrape)
    container_port = published_ports(prometheus)[0][2]
    assert f"http://127.0.0.1:{container_port}/-/ready" in healthcheck_text(prometheus)


def test_grafana_provisions_the_prometheus_service_and_the_dashboard() -> None:
    services = compose_services()
    grafana, prometheus = services["grafana"], services["prometheus"]
    assert grafana["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    (datasource,) = grafana_file("/etc/grafana/provisioning/datasources/prometheus.yaml")[
        "datasources"
    ]
    container_port = published_ports(prometheus)[0][2]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == f"http://prometheus:{container_port}"
    (provider,) = grafana_file("/etc/grafana/provisioning/dashboards/custom-llm-proxy.yaml")[
        "providers"
    ]
    assert container_path(grafana, provider["options"]["path"]) == DASHBOARD.parent
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert container_path(grafana, home) == DASHBOARD
    sources = {panel["datasource"]["uid"] for panel in dashboard()["panels"]}
    sources |= {
        target["datasource"]["uid"]
        for panel in dashboard()["panels"]
        for target in panel["targets"]
    }
    assert sources == {datasource["uid"]}
    container_port = published_ports(grafana)[0][2]
    assert f"http://127.0.0.1:{container_port}/api/health" in healthcheck_text(grafana)


def test_dashboard_panels_are_distinct_and_show_what_the_issue_asks() -> None:
    board = dashboard()
    panels = board["panels"]
    assert board["uid"] and len({panel["id"] for panel in panels}) == len(panels)
    assert len({panel["title"] for panel in panels}) == len(panels)
    queried = set()
    for expr in dashboard_queries():
        queried |= promql_names(expr)[0]
    assert queried >= DASHBOARD_METRICS, f"not on the dashboard: {DASHBOARD_METRICS - queried}"
    quantiles = {
        match
        for expr in dashboard_queries()
        for match in re.findall(r"histogram_quantile\((0\.\d+), [^$]*request_duration", expr)
    }
    assert quantiles == {"0.5", "0.95", "0.99"}


def test_dashboard_queries_only_metrics_and_labels_the_proxy_exports(exported: set[str]) -> None:
    labels = declared_labels()
    for expr in dashboard_queries():
        names, functions = promql_names(expr)
        assert names, f"no metric in {expr}"
        assert functions <= PROMQL_FUNCTIONS, f"unknown functions in {expr}"
        unknown = names - exported
        assert not unknown, f"{expr} queries what GET /metrics does not export: {unknown}"
        available = set.intersection(*(labels[name] for name in names))
        assert promql_labels(expr) <= available, f"{expr}: labels beyond {sorted(available)}"
    for variable in dashboard()["templating"]["list"]:
        selector, label = label_values(variable["query"]["query"])
        (name,) = promql_names(selector)[0]
        assert label in labels[name], variable["name"]


# ---- deploy/kubernetes.yaml ---------------------------------------------------------------------


def test_kubernetes_example_has_a_configmap_deployment_and_service() -> None:
    objects = kubernetes_objects()
    assert set(objects) == {"ConfigMap", "Deployment", "Service"}
    deployment, service = objects["Deployment"], objects["Service"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    port_names = {port["name"] for port in container["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= port_names
    assert container["image"] == IMAGE


def test_kubernetes_container_agrees_with_settings_and_the_image(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    template = kubernetes_objects()["Deployment"]["spec"]["template"]
    pod = template["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    names = {item["name"] for item in container["env"]}
    settings_from(dict.fromkeys(names - set(env), ""), monkeypatch)  # secret-fed: names only
    settings = settings_from(env, monkeypatch)
    assert settings.host == "0.0.0.0"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": settings.port}
    scrape = template["metadata"]["annotations"]
    assert scrape == {
        "prometheus.io/scrape": "true",
        "prometheus.io/path": "/metrics",
        "prometheus.io/port": str(settings.port),
    }
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    uid = dict(dockerfile_instructions())["USER"].partition(":")[0]
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert pod["securityContext"]["runAsNonRoot"] is True
    _parser().parse_args(container["args"])


def test_kubernetes_configmap_is_the_mounted_config_and_loads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    objects = kubernetes_objects()
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    config_path = PurePosixPath(str(settings_from(env, monkeypatch).config))
    (mount,) = container["volumeMounts"]
    assert PurePosixPath(mount["mountPath"]) == config_path.parent
    (volume,) = [volume for volume in pod["volumes"] if volume["name"] == mount["name"]]
    configmap = objects["ConfigMap"]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    local = tmp_path / config_path.name
    local.write_text(configmap["data"][config_path.name], encoding="utf-8")
    assert load_config(local).models
