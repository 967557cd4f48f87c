"""The deployment files agree with the app: Dockerfile, docker-compose.yml, deploy/kubernetes.yaml.

Parsed, not run (`make container-test` runs them): every service, ConfigMap and stage they name
exists, every PROXY_* variable is a setting with a valid value, ports, probes and health checks
point at the port the proxy listens on, and the configs they mount load.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from app.cli import _parser
from app.config import load_config
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
KUBERNETES = ROOT / "deploy/kubernetes.yaml"
DOCKERFILE = ROOT / "Dockerfile"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
IMAGE = f"custom-llm-proxy:{PROJECT['version']}"
_COMPOSE_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


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


# ---- docker-compose.yml -------------------------------------------------------------------------


def test_compose_default_profile_is_the_proxy_and_the_mock_upstream() -> None:
    services = compose_services()
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert default == {"proxy", "mock-upstream"}
    for name, service in services.items():
        for needed in service.get("depends_on", {}):
            assert needed in services, f"{name} depends on a service that does not exist: {needed}"
        assert service["image"] == IMAGE, f"{name}: {service['image']} is not the project's version"
        assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file()


def test_compose_commands_are_cli_commands() -> None:
    for name, service in compose_services().items():
        args = _parser().parse_args(service["command"])
        assert args.command in ("serve", "mock-upstream"), name


def test_compose_proxy_env_ports_and_healthcheck_agree_with_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = compose_services()["proxy"]
    settings = settings_from(proxy_env(proxy["environment"]), monkeypatch)
    assert settings.host == "0.0.0.0"
    published = [compose_defaults(port) for port in proxy["ports"]]
    assert published == [f"127.0.0.1:8000:{settings.port}"], "publish the proxy on loopback"
    health = " ".join(proxy["healthcheck"]["test"])
    assert f"http://127.0.0.1:{settings.port}/health" in health
    assert settings.config is not None
    mounts = dict(volume.rsplit(":", 2)[:2] for volume in proxy["volumes"])
    assert str(settings.config) in mounts.values(), "PROXY_CONFIG is not a mounted file"


def test_compose_config_serves_demo_from_the_mock_upstream_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = compose_services()
    proxy, mock = services["proxy"], services["mock-upstream"]
    settings = settings_from(proxy_env(proxy["environment"]), monkeypatch)
    source = next(
        volume.split(":")[0] for volume in proxy["volumes"] if str(settings.config) in volume
    )
    config = load_config(ROOT / source)
    assert [model.name for model in config.models] == ["demo"]  # the README's curl asks for it
    mock_args = _parser().parse_args(mock["command"])
    assert mock_args.host == "0.0.0.0"
    assert str(mock_args.port) in [str(port) for port in mock["expose"]]
    assert f"127.0.0.1', {mock_args.port})" in " ".join(mock["healthcheck"]["test"])
    endpoint = config.models[0].model_dump(mode="json")
    assert f"http://mock-upstream:{mock_args.port}/" in str(endpoint)
    assert "mock-upstream" in proxy["depends_on"]


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
    pod = kubernetes_objects()["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    names = {item["name"] for item in container["env"]}
    settings_from(dict.fromkeys(names - set(env), ""), monkeypatch)  # secret-fed: names only
    settings = settings_from(env, monkeypatch)
    assert settings.host == "0.0.0.0"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": settings.port}
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
