"""Upstreams behind a corporate network, end to end: a real `serve` process whose environment
sets HTTPS_PROXY / HTTP_PROXY / NO_PROXY (with proxy credentials), two real tinyproxy forward
proxies, and the mock upstream served over TLS by uvicorn with certificates of a throwaway CA
(`trustme`), one instance requiring a client certificate.

Which requests went through which proxy is read from tinyproxy's log (the request line it
read: `CONNECT host:port` for https, the absolute-form `POST http://...` for http), which it
writes before forwarding, so it is complete once the answer has arrived. Names: 127.0.0.1 is
proxied, `localhost` is in NO_PROXY.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.servers import (
    MOCK_READY,
    Server,
    clean_env,
    free_port,
    launch_mock,
    serve_config,
    start_server,
    wait_until,
)
from tests.network_pieces import (
    PROXY_PASSWORD,
    PROXY_USER,
    Certificates,
    Tinyproxy,
    make_certificates,
    running_tinyproxy,
)
from tests.scripted_upstream import refused_port

pytestmark = pytest.mark.e2e

UVICORN_READY = "Uvicorn running on"
EXPLICIT_PASSWORD = "Expl1citSecret"


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("network")


@pytest.fixture(scope="module")
def certs(log_dir: Path) -> Certificates:
    return make_certificates(log_dir)


@pytest.fixture(scope="module")
def corp_proxy(log_dir: Path) -> Iterator[Tinyproxy]:
    """The environment's proxy, which wants credentials."""
    with running_tinyproxy(log_dir, auth=True) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def explicit_proxy(log_dir: Path) -> Iterator[Tinyproxy]:
    """The one a model names in its config."""
    with running_tinyproxy(log_dir) as proxy:
        yield proxy


def start_tls_mock(
    log_dir: Path, name: str, certs: Certificates, *, require_client_cert: bool
) -> Server:
    port = free_port()
    args = ["app.mock_upstream.server:create_mock_app", "--factory"]
    args += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    args += ["--ssl-certfile", str(certs.server_cert), "--ssl-keyfile", str(certs.server_key)]
    if require_client_cert:
        args += ["--ssl-ca-certs", str(certs.ca), "--ssl-cert-reqs", "2"]  # CERT_REQUIRED
    server = start_server(
        name,
        args,
        port=port,
        log_dir=log_dir,
        env=clean_env(),
        program=(sys.executable, "-m", "uvicorn"),
    )
    server.wait_for_log(UVICORN_READY, deadline_seconds=30)
    return server


@pytest.fixture(scope="module")
def upstreams(log_dir: Path, certs: Certificates) -> Iterator[dict[str, Server]]:
    started: dict[str, Server] = {}
    try:
        started["plain"] = launch_mock(log_dir, "plain-mock")
        started["tls"] = start_tls_mock(log_dir, "tls-mock", certs, require_client_cert=False)
        started["mtls"] = start_tls_mock(log_dir, "mtls-mock", certs, require_client_cert=True)
        started["plain"].wait_ready(MOCK_READY)
        yield started
    finally:
        for server in started.values():
            server.stop()


def network_env(proxy: Tinyproxy, **extra: str) -> dict[str, str]:
    """The runner's environment without its own proxy variables, with the corp proxy's."""
    env = {k: v for k, v in clean_env().items() if not k.lower().endswith("_proxy")}
    env.update(HTTPS_PROXY=proxy.url, http_proxy=proxy.url, NO_PROXY="localhost", **extra)
    return env


def models(
    certs: Certificates, upstreams: dict[str, Server], explicit: Tinyproxy
) -> list[dict[str, Any]]:
    tls, mtls, plain = (upstreams[name].port for name in ("tls", "mtls", "plain"))
    ca = {"ca_file": str(certs.ca)}
    client = {**ca, "cert_file": str(certs.client_cert), "key_file": str(certs.client_key)}
    explicit_url = explicit.url.replace("http://", f"http://user:{EXPLICIT_PASSWORD}@")
    no_retry = {"max_retries": 0, "cooldown": {"failures": 1_000_000}}
    return [
        # through the environment's proxy (127.0.0.1 is not in NO_PROXY)
        {"name": "tunnel", "api_base": f"https://127.0.0.1:{tls}/via-env", "tls": ca},
        {"name": "http-via-env", "api_base": f"http://127.0.0.1:{plain}/via-env"},
        # past it (NO_PROXY, trust_env: false)
        {"name": "direct", "api_base": f"https://localhost:{tls}/direct", "tls": ca},
        {
            "name": "env-off",
            "api_base": f"http://127.0.0.1:{plain}/trust-env-off",
            "trust_env": False,
        },
        # a proxy of its own, over the environment's
        {  # localhost is in NO_PROXY: an explicit proxy is used all the same
            "name": "explicit",
            "api_base": f"https://localhost:{tls}/explicit",
            "proxy": explicit_url,
            "tls": ca,
        },
        # TLS settings
        {"name": "no-ca", "api_base": f"https://localhost:{tls}/no-ca", **no_retry},
        {"name": "unverified", "api_base": f"https://localhost:{tls}/x", "tls": {"verify": False}},
        {"name": "mtls", "api_base": f"https://localhost:{mtls}/mtls", "tls": client},
        {"name": "mtls-via-proxy", "api_base": f"https://127.0.0.1:{mtls}/m", "tls": client},
        {
            "name": "no-client-cert",
            "api_base": f"https://localhost:{mtls}/x",
            "tls": ca,
            **no_retry,
        },
        # failures that name a proxy
        {
            "name": "proxy-down",
            "api_base": f"https://localhost:{tls}/x",
            "proxy": f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{refused_port()}",
            **no_retry,
        },
        {"name": "tunnel-refused", "api_base": f"https://127.0.0.1:{refused_port()}/x", **no_retry},
    ]


@pytest.fixture(scope="module")
def proxy(
    log_dir: Path,
    certs: Certificates,
    upstreams: dict[str, Server],
    corp_proxy: Tinyproxy,
    explicit_proxy: Tinyproxy,
) -> Iterator[Server]:
    config = {"models": models(certs, upstreams, explicit_proxy)}
    server = serve_config(log_dir, "network-proxy", config, env=network_env(corp_proxy))
    try:
        yield server
    finally:
        server.stop()


def complete(proxy: Server, model: str) -> httpx.Response:
    return httpx.post(
        f"{proxy.url}/v1/completions",
        json={"model": model, "prompt": "Hello", "max_tokens": 4},
        timeout=30,
    )


def lines_during(tinyproxy: Tinyproxy, call: Any) -> tuple[Any, list[str]]:
    before = len(tinyproxy.requests())
    result = call()
    return result, tinyproxy.requests()[before:]


def test_https_through_the_environment_proxy_with_a_private_ca(
    proxy: Server, corp_proxy: Tinyproxy, upstreams: dict[str, Server]
) -> None:
    response, lines = lines_during(corp_proxy, lambda: complete(proxy, "tunnel"))
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["text"]
    port = upstreams["tls"].port
    assert f"CONNECT 127.0.0.1:{port} HTTP/1.1" in corp_proxy.requests()
    assert all("localhost" not in line for line in lines)


def test_http_through_the_environment_proxy_in_absolute_form(
    proxy: Server, corp_proxy: Tinyproxy, upstreams: dict[str, Server]
) -> None:
    response, lines = lines_during(corp_proxy, lambda: complete(proxy, "http-via-env"))
    assert response.status_code == 200, response.text
    assert lines == [f"POST http://127.0.0.1:{upstreams['plain'].port}/via-env HTTP/1.1"]


def test_no_proxy_and_trust_env_false_go_direct(proxy: Server, corp_proxy: Tinyproxy) -> None:
    for model in ("direct", "env-off", "mtls", "unverified"):
        response = complete(proxy, model)
        assert response.status_code == 200, (model, response.text)
    seen = corp_proxy.requests()
    assert not [line for line in seen if "localhost" in line or "trust-env-off" in line]


def test_an_explicit_proxy_wins_over_the_environment_and_no_proxy(
    proxy: Server, corp_proxy: Tinyproxy, explicit_proxy: Tinyproxy, upstreams: dict[str, Server]
) -> None:
    response = complete(proxy, "explicit")
    assert response.status_code == 200, response.text
    connect = f"CONNECT localhost:{upstreams['tls'].port} HTTP/1.1"
    assert connect in explicit_proxy.requests()
    assert connect not in corp_proxy.requests()


def test_mutual_tls_through_the_tunnel(
    proxy: Server, corp_proxy: Tinyproxy, upstreams: dict[str, Server]
) -> None:
    response = complete(proxy, "mtls-via-proxy")
    assert response.status_code == 200, response.text
    assert f"CONNECT 127.0.0.1:{upstreams['mtls'].port} HTTP/1.1" in corp_proxy.requests()


def test_an_untrusted_certificate_is_a_clear_503(proxy: Server) -> None:
    response = complete(proxy, "no-ca")
    assert response.status_code == 503, response.text
    message = response.json()["error"]["message"]
    assert "cannot connect to the upstream of model 'no-ca'" in message
    assert "certificate was not accepted (CERTIFICATE_VERIFY_FAILED)" in message


def test_a_missing_client_certificate_is_an_error_that_says_so(proxy: Server) -> None:
    response = complete(proxy, "no-client-cert")
    assert response.status_code == 502, response.text
    assert "requires a client certificate, set tls.cert_file" in response.json()["error"]["message"]


def test_proxy_failures_name_the_proxy_without_credentials(
    proxy: Server, corp_proxy: Tinyproxy
) -> None:
    down = complete(proxy, "proxy-down")
    assert down.status_code == 503, down.text
    assert "cannot connect to the proxy http://127.0.0.1:" in down.json()["error"]["message"]
    refused = complete(proxy, "tunnel-refused")
    assert refused.status_code == 503, refused.text
    assert f"the proxy {corp_proxy.bare_url} refused the tunnel" in refused.text
    for text in (down.text, refused.text):
        assert PROXY_PASSWORD not in text and PROXY_USER not in text


def test_credentials_never_reach_the_log(proxy: Server, explicit_proxy: Tinyproxy) -> None:
    for model in ("tunnel", "explicit", "proxy-down", "tunnel-refused"):
        complete(proxy, model)
    wait_until(lambda: proxy.log_text().count("/v1/completions") >= 4)
    text = proxy.log_text()
    assert "through the proxy http://127.0.0.1:" in text  # the start-up line, without them
    assert f"through the proxy {explicit_proxy.bare_url}" in text
    wait_until(lambda: "cannot connect to the proxy http://127.0.0.1:" in proxy.log_text())
    wait_until(lambda: "refused the tunnel" in proxy.log_text())  # the error lines
    text = proxy.log_text()
    for secret in (PROXY_PASSWORD, EXPLICIT_PASSWORD, PROXY_USER):
        assert secret not in text


def test_a_bad_tls_file_fails_start_up_naming_model_and_field(
    log_dir: Path, certs: Certificates
) -> None:
    path = log_dir / "bad-tls.yaml"
    config = {
        "models": [
            {"name": "ok", "api_base": "https://a.test/x", "tls": {"ca_file": str(certs.ca)}},
            {
                "name": "broken",
                "deployments": [
                    {"api_base": "https://b.test/x"},
                    {
                        "api_base": "https://c.test/x",
                        "tls": {"cert_file": str(certs.client_cert), "key_file": "missing.key"},
                    },
                ],
            },
        ]
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    argv = ["serve", "--config", str(path), "--port", str(port)]
    server = start_server("bad-tls", argv, port=port, log_dir=log_dir, env=clean_env())
    try:
        assert server.process.wait(timeout=30) == 2
    finally:
        server.stop()
    text = server.log_text()
    assert f"{path}: models[1] (broken).deployments[1].tls.key_file: cannot read" in text
    assert str(log_dir / "missing.key") in text  # relative to the config's folder
    assert not os.path.exists(log_dir / "missing.key")
