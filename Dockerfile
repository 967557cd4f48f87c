# custom-llm-proxy as a container image.
#
#   podman build -t custom-llm-proxy:0.1.0 .        (or docker build; podman: add --format docker,
#                                                    which keeps the HEALTHCHECK)
#   podman run --rm -p 127.0.0.1:8000:8000 custom-llm-proxy:0.1.0
#
# With no configuration the image serves the demo model `demo` from the built-in mock upstream.
# Configure it with PROXY_* variables (README, Environment), or mount a config file and name it:
#   -v ./config.yaml:/etc/custom-llm-proxy/config.yaml:ro -e PROXY_CONFIG=/etc/custom-llm-proxy/config.yaml
# Arguments replace the default `serve`: `check-config /etc/custom-llm-proxy/config.yaml`,
# `mock-upstream --host 0.0.0.0 --port 9000`. `make container-test` builds and checks this file.

# Python 3.11: with the same code and packages, 3.12 spent 6 % more CPU per request on the proxy's
# hot path (four A/B pairs of 6 s wrk rows at c=64 and c=256: -0.3 to +9.3 %) and 3.13 5 % more
# (two pairs: +3.4, +5.9 %), 2026-11-25. It is also the Python the test suite runs on, and it has
# security fixes until 2027-10.

# ---- build: the project's wheel, installed with its dependencies into a venv -----------------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -m venv --without-pip /opt/venv \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && python -m pip --python /opt/venv/bin/python install --requirement requirements.txt

COPY README.md ./
COPY app ./app
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m pip --python /opt/venv/bin/python install --no-deps /wheels/*.whl

# ---- runtime: a slim Python, the venv, a non-root user --------------------------------------------
FROM python:3.11-slim-bookworm AS runtime

# No .pyc written at run time (the venv is read-only to the user; pip compiled it at build time);
# logs leave unbuffered, one JSON object per line; a fatal signal (SIGSEGV, SIGABRT, ...) in any
# process writes every thread's Python traceback to the log before it ends (faulthandler: free
# until then). Inside a container the proxy listens on every interface.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    PROXY_HOST=0.0.0.0 \
    PROXY_PORT=8000 \
    PROXY_WORKERS=1 \
    PROXY_LOG_FORMAT=json

RUN groupadd --system --gid 10001 llmproxy \
 && useradd --system --uid 10001 --gid llmproxy --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin llmproxy \
 && mkdir -p /etc/custom-llm-proxy

COPY --from=build /opt/venv /opt/venv

# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

EXPOSE 8000

# /health answers without auth and without calling the upstream. Plain Python: the slim image has
# no curl. PROXY_PORT is the port the proxy listens on (set it rather than `--port`).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PROXY_PORT', '8000'), timeout=2)"]

# uvicorn runs as PID 1 and handles SIGTERM itself: it stops accepting, finishes open requests
# (up to 30 s), and exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["custom-llm-proxy"]
CMD ["serve"]
