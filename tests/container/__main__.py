"""`python -m tests.container [STEP ...]`: the container checks (`make container-test`).

Steps, all by default:
  wheel    `python -m build`, install the wheel into a fresh venv, its console script serves
  image    build the real Dockerfile with podman, run it, check it (tests/container/image.py)
  compose  `podman-compose up` of docker-compose.yml, the README's curl against it
  profiles docker-compose.yml's `replicated` and `monitoring` profiles: skipped, saying which of
           their images cannot be had (they are checked statically, tests/unit/test_deploy_files.py)

`image` and `compose` need rootful podman: installed with apt-get when missing, configured under
CTR_HOME (default /tmp/ctr-verify). Where that cannot be had they are skipped with the reason, and
the exit status stays 0; any failed check makes it 1. Every wait has a deadline.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from tests.container.compose import check_compose
from tests.container.engine import (
    CommandFailed,
    Engine,
    Unavailable,
    ensure_base_images,
    final_base_image,
    prepare_engine,
)
from tests.container.image import check_image
from tests.container.profiles import check_profiles
from tests.container.report import CheckFailed, Report, Skipped
from tests.container.wheel import check_wheel

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
STEPS = ("wheel", "image", "compose", "profiles")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.container", description=__doc__)
    parser.add_argument("steps", nargs="*", metavar="STEP", help=f"any of {', '.join(STEPS)}")
    steps = parser.parse_args(argv).steps or list(STEPS)
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}; the steps are {', '.join(STEPS)}")
    report = Report()
    engine: Engine | Unavailable | None = None

    def podman() -> Engine:
        nonlocal engine
        if engine is None:
            engine = _engine(report)
        if isinstance(engine, Unavailable):
            raise Skipped(f"podman cannot be used here: {engine}")
        return engine

    runs: dict[str, Callable[[], None]] = {
        "wheel": lambda: check_wheel(REPO, report),
        "image": lambda: check_image(podman(), REPO, final_base_image(DOCKERFILE), report),
        "compose": lambda: check_compose(podman(), REPO, report),
        "profiles": lambda: check_profiles(podman(), REPO, report),
    }
    for step in STEPS:
        if step in steps:
            _run_step(step, runs[step], report)
    print(report.summary(), flush=True)
    return 1 if report.failed else 0


def _run_step(step: str, run: Callable[[], None], report: Report) -> None:
    print(f"[{step}]", flush=True)
    try:
        run()
    except Skipped as exc:
        report.skip(step, str(exc))
    except (CheckFailed, CommandFailed) as exc:
        report.fail(step, exc)
    except Exception:  # a bug or a surprise: still a failed step, shown with its traceback
        report.fail(step, traceback.format_exc())


def _engine(report: Report) -> Engine | Unavailable:
    home = Path(os.environ.get("CTR_HOME", "/tmp/ctr-verify"))
    print(f"  (preparing podman under {home})", flush=True)
    try:
        engine = prepare_engine(home)
        for image, how in ensure_base_images(engine, DOCKERFILE).items():
            report.note(f"base image {image}: {how}")
    except (Unavailable, CommandFailed) as exc:
        return exc if isinstance(exc, Unavailable) else Unavailable(str(exc))
    return engine


if __name__ == "__main__":
    sys.exit(main())
