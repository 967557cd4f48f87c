"""An agent CLI from npm for the end-to-end tests: installed from its directory's lock file
(`npm ci`) when missing, else the test is skipped saying why (no node or npm, no registry)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

INSTALL_SECONDS = 600


def npm_cli(package_dir: Path, name: str, what: str) -> Path:
    """`package_dir`/node_modules/.bin/`name`, installed if it is not yet; `what` names the
    package in a skip's reason."""
    executable = package_dir / "node_modules" / ".bin" / name
    if executable.exists():
        return executable
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip(f"node and npm are not installed: {what} cannot be had (apt-get install npm)")
    try:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=package_dir,
            capture_output=True,
            text=True,
            timeout=INSTALL_SECONDS,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"npm ci of {what} took over {INSTALL_SECONDS} s (no npm registry?)")
    if done.returncode != 0 or not executable.exists():
        pytest.skip(f"npm ci of {what} failed: {done.stderr.strip()[-1500:]}")
    return executable
