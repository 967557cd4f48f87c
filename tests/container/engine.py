"""A podman engine the container checks can use: installed, configured, with its base images.

Rootful podman from Debian's packages, configured under `CTR_HOME` (default /tmp/ctr-verify, the
directory `shared/containers/verify.sh` uses, so the two share their storage):

- runc instead of crun (crun 1.8 refuses a hybrid cgroup setup), ulimits within the hard limits;
- overlay storage with its driver set from the first call (a store made with driver "" makes
  conmon's cleanup hang on every exit).

Base images: whatever the Dockerfile's FROM lines name is used when present; nothing is pulled
(no container registry is reachable here). A missing `python:*` image is played by a stand-in:
a minimal Debian 12 with its Python (debootstrap), trusting this machine's CA bundle so that
`pip install` inside builds works.
Anything that cannot be had raises `Unavailable`, which the caller reports as a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

PODMAN_PACKAGES = ("podman", "runc")
INSTALL_TIMEOUT = 300.0
STANDIN_TIMEOUT = 600.0
STANDIN = "localhost/python-standin:bookworm"

_CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
"""

_STANDIN_DOCKERFILE = """\
FROM localhost/debian-py:bookworm
COPY *.crt /usr/local/share/ca-certificates/
RUN update-ca-certificates && rm -f /usr/lib/python3.*/EXTERNALLY-MANAGED \\
 && ln -sf /usr/bin/python3 /usr/local/bin/python && ln -sf /usr/bin/pip3 /usr/local/bin/pip
ENV LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt \\
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \\
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
"""


class Unavailable(Exception):
    """No usable container engine or base image here; the message says why."""


@dataclass(frozen=True)
class Engine:
    """Runs podman with this project's configuration."""

    home: Path
    env: dict[str, str]

    def run(
        self, *args: str, timeout: float, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`podman ARGS`; raises `CommandFailed` on a non-zero exit when `check`."""
        return run_command(["podman", *args], env=self.env, timeout=timeout, check=check, cwd=cwd)

    def image_exists(self, image: str) -> bool:
        return self.run("image", "exists", image, timeout=30, check=False).returncode == 0


class CommandFailed(Exception):
    """A command failed; the message holds its output."""


def run_command(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float,
    check: bool = True,
    cwd: Path | None = None,
    stdin: IO[bytes] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command with a deadline; stdin closed unless given, output captured as text."""
    try:
        result = subprocess.run(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(f"{' '.join(argv)}: no answer within {timeout:g} s") from exc
    if check and result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-4000:]
        raise CommandFailed(f"{' '.join(argv)}: exit {result.returncode}\n{output}")
    return result


def prepare_engine(home: Path) -> Engine:
    """Install podman if missing (as root, with apt-get), configure it, check that it works."""
    _install_missing(PODMAN_PACKAGES, for_what="the image and compose steps")
    for sub in ("storage", "runroot", "tmp"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    (home / "containers.conf").write_text(_CONTAINERS_CONF, encoding="utf-8")
    (home / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{home / "storage"}"\n'
        f'runroot = "{home / "runroot"}"\n',
        encoding="utf-8",
    )
    env = dict(os.environ)
    env.update(
        CONTAINERS_CONF=str(home / "containers.conf"),
        CONTAINERS_STORAGE_CONF=str(home / "storage.conf"),
        TMPDIR=str(home / "tmp"),
        BUILDAH_FORMAT="docker",  # keeps HEALTHCHECK in images podman-compose builds
    )
    engine = Engine(home=home, env=env)
    try:
        engine.run("info", timeout=60)
    except CommandFailed as exc:
        raise Unavailable(f"podman does not work here: {exc}") from exc
    return engine


def _from_lines(dockerfile: Path) -> list[tuple[str, str | None]]:
    """(image, stage name or None) for each FROM line, in order."""
    found: list[tuple[str, str | None]] = []
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        words = [word for word in line.split() if not word.startswith("--")]
        if len(words) >= 2 and words[0].upper() == "FROM":
            stage = words[3] if len(words) >= 4 and words[2].upper() == "AS" else None
            found.append((words[1], stage))
    return found


def base_images(dockerfile: Path) -> list[str]:
    """The external images the Dockerfile's FROM lines name (not its own stages)."""
    images: list[str] = []
    stages: set[str] = set()
    for image, stage in _from_lines(dockerfile):
        if image not in stages and image not in images:
            images.append(image)
        if stage is not None:
            stages.add(stage)
    return images


def final_base_image(dockerfile: Path) -> str:
    """The external image the last stage (the image that ships) starts from."""
    lines = _from_lines(dockerfile)
    stages = {stage for _, stage in lines if stage is not None}
    image = lines[-1][0]
    if image in stages:
        raise ValueError(f"{dockerfile}: the last stage starts from stage {image}")
    return image


def ensure_base_images(engine: Engine, dockerfile: Path) -> dict[str, str]:
    """Make every base image available; return how each was had (present, stand-in).

    Nothing is pulled: the project's machines reach no container registry, and its tests fetch
    nothing from outside. A missing `python:*` base gets the local stand-in; any other missing
    base is Unavailable."""
    how: dict[str, str] = {}
    for image in base_images(dockerfile):
        if engine.image_exists(image):
            how[image] = "present"
            continue
        if not _is_python_image(image):
            raise Unavailable(f"base image {image} is not in the local image store")
        _build_standin(engine)
        engine.run("tag", STANDIN, image, timeout=30)
        how[image] = "stand-in (no registry: Debian 12's Python)"
    return how


def _is_python_image(image: str) -> bool:
    name = image.split(":", 1)[0]
    return name in ("python", "library/python", "docker.io/library/python")


def _build_standin(engine: Engine) -> None:
    if engine.image_exists(STANDIN):
        return
    _install_missing(("debootstrap",), for_what="the python base image stand-in")
    rootfs = engine.home / "rootfs"
    if not engine.image_exists("localhost/debian-py:bookworm"):
        if not (rootfs / "usr/bin/python3").exists():
            run_command(
                [
                    "debootstrap",
                    "--variant=minbase",
                    "--include=python3,python3-venv,python3-pip,ca-certificates,curl",
                    "bookworm",
                    str(rootfs),
                ],
                timeout=STANDIN_TIMEOUT,
            )
        _import_rootfs(engine, rootfs)
    shim = engine.home / "shim"
    shutil.rmtree(shim, ignore_errors=True)
    shim.mkdir()
    certificates = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    for certificate in certificates:
        shutil.copy(certificate, shim)
    if not certificates:
        (shim / "none.crt").touch()
    (shim / "Dockerfile").write_text(_STANDIN_DOCKERFILE, encoding="utf-8")
    engine.run(
        "build",
        "-q",
        "--pull=never",
        "--format",
        "docker",
        "-t",
        STANDIN,
        str(shim),
        timeout=STANDIN_TIMEOUT,
    )


def _import_rootfs(engine: Engine, rootfs: Path) -> None:
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    try:
        run_command(
            ["podman", "import", "-q", "-", "localhost/debian-py:bookworm"],
            env=engine.env,
            timeout=STANDIN_TIMEOUT,
            stdin=tar.stdout,
        )
    finally:
        if tar.stdout is not None:
            tar.stdout.close()
        tar.wait(timeout=60)


def _install_missing(packages: tuple[str, ...], *, for_what: str) -> None:
    missing = [package for package in packages if shutil.which(package) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Unavailable(
            f"{' '.join(missing)} (for {for_what}) not installed, and installing it needs "
            "apt-get and root"
        )
    apt_env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        run_command(["apt-get", "update", "-qq"], env=apt_env, timeout=INSTALL_TIMEOUT)
        run_command(
            ["apt-get", "install", "-y", "-qq", *missing], env=apt_env, timeout=INSTALL_TIMEOUT
        )
    except CommandFailed as exc:
        raise Unavailable(f"cannot install {' '.join(missing)} for {for_what}: {exc}") from exc
