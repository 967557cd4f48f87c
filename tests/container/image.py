"""The image from the real Dockerfile: build it, run it, and check what the issue asks of it.

- /health answers, the HEALTHCHECK passes, the user is not root, the demo model answers;
- a mounted config file is read (`check-config /etc/custom-llm-proxy/config.yaml`), and `serve`
  uses it with no PROXY_CONFIG set;
- PROXY_WORKERS=2 serves, on a read-only root file system (as deploy/kubernetes.yaml runs it);
- `podman stop` (SIGTERM) ends it cleanly within STOP_LIMIT seconds;
- no compiler in the image, no cache or build litter in the layers it adds to its base.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from pathlib import Path

from tests.container.engine import CommandFailed, Engine
from tests.container.http import ask_demo, free_port, wait_healthy
from tests.container.report import CheckFailed, Report, expect

TAG = "localhost/custom-llm-proxy:container-test"
BUILD_TIMEOUT = 900.0
START_DEADLINE = 30.0
STOP_TIMEOUT = 10  # podman stop's own grace period before SIGKILL
STOP_LIMIT = 5.0  # what "cleanly within a few seconds" means here
CONFIG_MOUNT = "/etc/custom-llm-proxy/config.yaml"
COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "tcc")
_LOG_TAIL = 3000  # characters of a container's log shown in a failure

# Paths the image's own layers must not add: caches, wheels, sources, compiled-file litter.
_LITTER = re.compile(
    r"(/\.cache(/|$)|^/var/cache/|^/tmp/.|^/root/.|^/src(/|$)|^/wheels(/|$)|\.whl$"
    r"|^/(?!opt/venv/lib/python3[^/]*/site-packages/).*__pycache__)"
)


def check_image(engine: Engine, repo: Path, base: str, report: Report) -> None:
    """Build TAG from repo/Dockerfile and check it (see the module docstring)."""
    started = time.monotonic()
    engine.run(
        "build",
        "--pull=never",
        "--format",
        "docker",
        "-t",
        TAG,
        "-f",
        str(repo / "Dockerfile"),
        str(repo),
        timeout=BUILD_TIMEOUT,
    )
    report.ok(f"podman build of the Dockerfile ({time.monotonic() - started:.0f} s)")
    _check_metadata(engine, report)
    _check_contents(engine, base, report)
    _check_mounted_config(engine, repo, report)
    _check_serves_the_mounted_config(engine, repo, report)
    _check_running(engine, report, workers=1, read_only=False)
    _check_running(engine, report, workers=2, read_only=True)


def _check_metadata(engine: Engine, report: Report) -> None:
    fields = {
        "user": "{{.Config.User}}",
        "ports": "{{range $p, $v := .Config.ExposedPorts}}{{$p}} {{end}}",
        "entrypoint": "{{.Config.Entrypoint}}",
        "healthcheck": "{{.Config.Healthcheck}}",
        "env": "{{.Config.Env}}",
    }
    seen = {
        name: engine.run("image", "inspect", "--format", template, TAG, timeout=30).stdout.strip()
        for name, template in fields.items()
    }
    user = seen["user"].split(":", 1)[0]
    expect(user not in ("", "0", "root"), f"the image runs as {seen['user']!r}")
    expect(seen["ports"] == "8000/tcp", f"exposed ports: {seen['ports']!r}")
    expect(seen["entrypoint"] == "[custom-llm-proxy]", f"entrypoint: {seen['entrypoint']!r}")
    expect("/health" in seen["healthcheck"], f"HEALTHCHECK: {seen['healthcheck']!r}")
    env = seen["env"].strip("[]").split()
    expect("PYTHONFAULTHANDLER=1" in env, f"the image's environment has no faulthandler: {env}")
    report.ok(
        f"image config: user {seen['user']}, EXPOSE 8000, ENTRYPOINT custom-llm-proxy, "
        "HEALTHCHECK on /health, faulthandler on"
    )


def _check_contents(engine: Engine, base: str, report: Report) -> None:
    found = engine.run(
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        TAG,
        "-c",
        " ".join(f"command -v {name};" for name in COMPILERS) + " true",
        timeout=60,
    ).stdout.split()
    expect(not found, f"compilers in the image: {found}")
    report.ok(f"no compiler in the image ({', '.join(COMPILERS)})")

    added = engine.run("image", "diff", TAG, base, timeout=120).stdout.splitlines()
    paths = [line.split(maxsplit=1)[1] for line in added if " " in line]
    litter = [path for path in paths if _LITTER.search(path)]
    expect(not litter, f"caches or build litter in the image's layers: {litter[:20]}")
    report.ok(f"no cache, wheel, source or __pycache__ litter among the {len(paths)} added paths")

    size = _image_size(engine, TAG)
    base_size = _image_size(engine, base)
    report.note(
        f"image size {size / 1e6:.0f} MB: base {base} {base_size / 1e6:.0f} MB "
        f"+ {(size - base_size) / 1e6:.0f} MB added (the venv)"
    )


def _check_mounted_config(engine: Engine, repo: Path, report: Report) -> None:
    config = repo / "config/compose.yaml"
    result = engine.run(
        "run",
        "--rm",
        "-v",
        f"{config}:{CONFIG_MOUNT}:ro",
        TAG,
        "check-config",
        CONFIG_MOUNT,
        timeout=60,
    )
    expect(f"{CONFIG_MOUNT}: OK" in result.stdout, f"check-config said: {result.stdout}")
    report.ok(f"a config mounted at {CONFIG_MOUNT} is read by the non-root user")


def _check_serves_the_mounted_config(engine: Engine, repo: Path, report: Report) -> None:
    name = f"clp-container-test-{os.getpid()}-mounted"
    port = free_port()
    engine.run(
        "run",
        "-d",
        "--name",
        name,
        "-p",
        f"127.0.0.1:{port}:8000",
        "-v",
        f"{repo / 'config/compose.yaml'}:{CONFIG_MOUNT}:ro",
        TAG,
        timeout=60,
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_healthy(base_url, START_DEADLINE, lambda: _exited(engine, name))
        with urllib.request.urlopen(f"{base_url}/health/ready", timeout=5) as response:
            ready = json.load(response)
        bases = [d["api_base"] for m in ready["models"] for d in m["deployments"]]
        expect(
            bases == ["http://mock-upstream:9000/inference"],
            f"serve without PROXY_CONFIG did not use the mounted config: {ready}",
        )
        report.ok(f"serve reads a config mounted at {CONFIG_MOUNT} with no PROXY_CONFIG set")
    finally:
        engine.run("rm", "-f", "-t", "0", name, timeout=60, check=False)


def _check_running(engine: Engine, report: Report, *, workers: int, read_only: bool) -> None:
    name = f"clp-container-test-{os.getpid()}-w{workers}"
    port = free_port()
    options = ["--read-only"] if read_only else []
    how = f"workers={workers}" + (", read-only root" if read_only else "")
    engine.run(
        "run",
        "-d",
        "--name",
        name,
        "-p",
        f"127.0.0.1:{port}:8000",
        "-e",
        f"PROXY_WORKERS={workers}",
        *options,
        TAG,
        timeout=60,
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        took = wait_healthy(base_url, START_DEADLINE, lambda: _exited(engine, name))
        report.ok(f"[{how}] /health answered after {took:.1f} s")
        engine.run("healthcheck", "run", name, timeout=30)
        report.ok(f"[{how}] the image's HEALTHCHECK passes")
        uid = engine.run("exec", name, "id", "-u", timeout=30).stdout.strip()
        expect(uid not in ("", "0"), f"the server runs as uid {uid!r}")
        report.ok(f"[{how}] the server runs as uid {uid}, not root")
        answer = ask_demo(base_url)
        report.ok(f"[{how}] the built-in demo model answers: {answer!r}")
        _check_stop(engine, name, how, report)
    finally:
        engine.run("rm", "-f", "-t", "0", name, timeout=60, check=False)


def _check_stop(engine: Engine, name: str, how: str, report: Report) -> None:
    started = time.monotonic()
    engine.run("stop", "-t", str(STOP_TIMEOUT), name, timeout=STOP_TIMEOUT + 30)
    took = time.monotonic() - started
    code = engine.run("inspect", "--format", "{{.State.ExitCode}}", name, timeout=30).stdout.strip()
    full_logs = _logs(engine, name)
    logs = full_logs[-_LOG_TAIL:]
    # PID 1 ignores the SIGTERM uvicorn re-raises after its shutdown, so 0; 143 would also be
    # a clean end, 137 is podman's SIGKILL after the grace period.
    expect(code in ("0", "143"), f"exit code {code} after podman stop; logs:\n{logs}")
    # faulthandler's report of a crash in any of the container's processes (a worker's too)
    expect("Fatal Python error" not in full_logs, f"a process crashed; logs:\n{logs}")
    expect(took < STOP_LIMIT, f"podman stop took {took:.1f} s (limit {STOP_LIMIT:g} s)")
    expect("Finished server process" in logs, f"no graceful shutdown in the logs:\n{logs}")
    report.ok(f"[{how}] SIGTERM: graceful shutdown, exit code {code}, stop took {took:.2f} s")
    report.note(f"podman stop ({how}): {took:.2f} s")


def _exited(engine: Engine, name: str) -> str | None:
    try:
        running = engine.run(
            "inspect", "--format", "{{.State.Running}}", name, timeout=30
        ).stdout.strip()
    except CommandFailed as exc:
        raise CheckFailed(f"container {name} is gone: {exc}") from exc
    if running == "true":
        return None
    return f"container stopped; logs:\n{_logs(engine, name)[-_LOG_TAIL:]}"


def _logs(engine: Engine, name: str) -> str:
    result = engine.run("logs", name, timeout=30, check=False)
    return result.stdout + result.stderr


def _image_size(engine: Engine, image: str) -> int:
    return int(engine.run("image", "inspect", "--format", "{{.Size}}", image, timeout=30).stdout)
