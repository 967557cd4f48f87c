"""docker-compose.yml's profiles (`replicated`, `monitoring`): which images they need, and why
this step does not run them.

Their services use images other than the project's (Redis, nginx, Prometheus, Grafana). Each is
looked for in the engine's store (never pulled: no registry reaches the project's machines);
where any is missing the profile is reported as skipped, naming the images.
The step never runs the profiles, and the skip says so rather than passing. What checks them
instead: tests/unit/test_deploy_files.py statically (services, files, ports, env, load-balancer
upstreams, scrape targets, the dashboard's metrics), and tests/e2e/test_compose_replicated.py runs
the files of `replicated` with local processes (nginx, redis-server, two `serve`).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.container.engine import Engine
from tests.container.report import Report

CHECKED_BY = {
    "replicated": "tests/unit/test_deploy_files.py, and its files with local processes by "
    "tests/e2e/test_compose_replicated.py",
    "monitoring": "tests/unit/test_deploy_files.py",
}


def profile_images(compose_file: Path) -> dict[str, list[str]]:
    """profile → the images of its services that are not built from this repository."""
    services = yaml.safe_load(compose_file.read_text(encoding="utf-8"))["services"]
    found: dict[str, list[str]] = {}
    for service in services.values():
        for profile in service.get("profiles", []):
            images = found.setdefault(profile, [])
            if "build" not in service and service["image"] not in images:
                images.append(service["image"])
    return found


def check_profiles(engine: Engine, repo: Path, report: Report) -> None:
    """One skip line per profile, naming what is missing (or that the step does not run it)."""
    for profile, images in sorted(profile_images(repo / "docker-compose.yml").items()):
        missing = {image: why for image in images if (why := _unavailable(engine, image))}
        if missing:
            reasons = "; ".join(f"{image}: {why}" for image, why in missing.items())
            report.skip(
                f"compose --profile {profile}",
                f"its images cannot be had here ({reasons}); checked by "
                f"{CHECKED_BY.get(profile, 'nothing')} instead",
            )
        else:
            report.skip(
                f"compose --profile {profile}",
                f"images present ({', '.join(images)}), but this step does not run profiles; "
                f"checked by {CHECKED_BY.get(profile, 'nothing')} instead",
            )


def _unavailable(engine: Engine, image: str) -> str | None:
    """None when the engine already has the image; else why not. Nothing is pulled: the
    project's machines reach no container registry, and tests fetch nothing from outside."""
    if engine.image_exists(image):
        return None
    return "not in the local image store (nothing is pulled)"
