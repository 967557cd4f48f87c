"""docker-compose.yml through podman-compose: the default profile comes up, the README's curl works.

podman-compose (pinned, from PyPI) is installed into a venv of its own under the engine's home.
The proxy is published on a free loopback port (CUSTOM_LLM_PROXY_PORT) in a project of its own,
which is taken down again whatever happens.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from tests.container.engine import CommandFailed, Engine, run_command
from tests.container.http import check_chat_answer, free_port, wait_healthy
from tests.container.report import CheckFailed, Report, expect

PODMAN_COMPOSE = "podman-compose==1.6.0"
UP_TIMEOUT = 900.0
DOWN_TIMEOUT = 120.0
START_DEADLINE = 60.0
SERVICES = ("mock-upstream", "proxy")

# The README's request, as the compose file's header shows it.
README_BODY = '{"model":"demo","messages":[{"role":"user","content":"hi"}]}'


def check_compose(engine: Engine, repo: Path, report: Report) -> None:
    """`podman-compose up -d --build`, probe both services and the README's curl, `down`."""
    compose = _podman_compose(engine)
    port = free_port()
    env = dict(engine.env, CUSTOM_LLM_PROXY_PORT=str(port))
    project = f"clp-container-test-{os.getpid()}"
    command = [str(compose), "-f", str(repo / "docker-compose.yml"), "-p", project]
    try:
        started = time.monotonic()
        run_command([*command, "up", "-d", "--build"], env=env, timeout=UP_TIMEOUT, cwd=repo)
        report.ok(f"podman-compose up -d --build ({time.monotonic() - started:.0f} s)")
        names = _containers(engine, project)
        expect(sorted(names) == sorted(SERVICES), f"running services: {names}")
        base_url = f"http://127.0.0.1:{port}"
        took = wait_healthy(base_url, START_DEADLINE, lambda: _stopped(engine, names))
        report.ok(f"services {', '.join(sorted(names))} up; the proxy answered after {took:.1f} s")
        for service, container in sorted(names.items()):
            engine.run("healthcheck", "run", container, timeout=30)
            report.ok(f"the compose healthcheck of {service} passes")
        answer = _readme_curl(base_url)
        report.ok(f"the README's curl through the proxy to the mock-upstream service: {answer!r}")
    finally:
        down = run_command(
            [*command, "down", "-t", "10"], env=env, timeout=DOWN_TIMEOUT, check=False, cwd=repo
        )
    expect(down.returncode == 0, f"podman-compose down failed: {down.stderr[-2000:]}")
    left = _containers(engine, project)
    expect(not left, f"containers left after down: {left}")
    report.ok("podman-compose down removed the project's containers")


def _podman_compose(engine: Engine) -> Path:
    venv = engine.home / "podman-compose-venv"
    script = venv / "bin/podman-compose"
    if not script.exists():
        run_command([sys.executable, "-m", "venv", str(venv)], timeout=120)
        run_command(
            [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", PODMAN_COMPOSE],
            timeout=300,
        )
    return script


def _containers(engine: Engine, project: str) -> dict[str, str]:
    """service name → container name, for the project's containers (running or not)."""
    listing = engine.run(
        "ps",
        "-a",
        "--filter",
        f"label=io.podman.compose.project={project}",
        "--format",
        '{{index .Labels "com.docker.compose.service"}} {{.Names}}',
        timeout=30,
    ).stdout
    return dict(line.split(maxsplit=1) for line in listing.splitlines() if line.strip())


def _stopped(engine: Engine, names: dict[str, str]) -> str | None:
    for container in names.values():
        try:
            running = engine.run(
                "inspect", "--format", "{{.State.Running}}", container, timeout=30
            ).stdout.strip()
        except CommandFailed as exc:
            raise CheckFailed(f"container {container} is gone: {exc}") from exc
        if running != "true":
            logs = engine.run("logs", container, timeout=30, check=False)
            return f"{container} stopped; logs:\n{(logs.stdout + logs.stderr)[-3000:]}"
    return None


def _readme_curl(base_url: str) -> str:
    curl = shutil.which("curl")
    if curl is None:
        raise CheckFailed("curl is not installed: the README's command cannot be run")
    result = run_command(
        [
            curl,
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            f"{base_url}/v1/chat/completions",
            "-H",
            "content-type: application/json",
            "-d",
            README_BODY,
        ],
        timeout=20,
    )
    body, _, status = result.stdout.rpartition("\n")
    return check_chat_answer(int(status), body)
