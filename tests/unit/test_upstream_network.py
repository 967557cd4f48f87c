"""app.upstream_network, as the router builds it: each deployment's proxy and TLS context.

Config files on disk through `load_config` and `build_router`, the environment as
`Settings.proxy_environment` hands it over; certificates from a throwaway `trustme` CA.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from app.cli import main
from app.config import ConfigError, ProxyConfig, load_config
from app.routing import Router, build_router
from app.settings import Settings, read_proxy_environment
from app.upstream import UpstreamEndpoint
from app.upstream_network import parse_proxy
from tests.network_pieces import Certificates, make_certificates

ENV = {
    "https": "http://corp-user:Hidden9@proxy.corp:3128",
    "http": "proxy.corp:8080",  # scheme-less, as curl reads it: http://
    "no": "localhost, .internal.corp,gpu-a:9000",
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def router_for(
    tmp_path: Path, models: list[dict[str, Any]], env: dict[str, str] | None = None
) -> Router:
    path = tmp_path / "proxy.yaml"
    path.write_text(yaml.safe_dump({"models": models}), encoding="utf-8")
    return build_router(
        load_config(path, environ={}),
        source=str(path),
        api_base=None,
        proxy_environment=ENV if env is None else env,
    )


def endpoints(router: Router, name: str) -> list[UpstreamEndpoint]:
    return [member.endpoint for member in router.resolve(name).deployments.members]


def proxies(router: Router, name: str) -> list[str | None]:
    return [e.proxy.display if e.proxy else None for e in endpoints(router, name)]


# Which proxy


def test_the_environment_proxy_by_scheme_and_no_proxy(tmp_path: Path) -> None:
    router = router_for(
        tmp_path,
        [
            {
                "name": "m",
                "deployments": [
                    {"api_base": "https://gpu.example.com/gen"},  # HTTPS_PROXY
                    {"api_base": "http://gpu.example.com/gen"},  # HTTP_PROXY
                    {"api_base": "https://localhost:8443/gen"},  # NO_PROXY: localhost
                    {"api_base": "https://a.internal.corp/gen"},  # NO_PROXY: .internal.corp
                    {"api_base": "http://internal.corp/gen"},  # the domain itself too
                    {"api_base": "http://gpu-a:9000/gen"},  # NO_PROXY: host:port
                    {"api_base": "http://gpu-a:9001/gen"},  # another port: proxied
                    {"api_base": "https://notinternal.corp/gen"},  # not a suffix match
                ],
            }
        ],
    )
    assert proxies(router, "m") == [
        "http://proxy.corp:3128",
        "http://proxy.corp:8080",
        None,
        None,
        None,
        None,
        "http://proxy.corp:8080",
        "http://proxy.corp:3128",
    ]
    first = endpoints(router, "m")[0].proxy
    assert first is not None and first.authorization == "Basic Y29ycC11c2VyOkhpZGRlbjk="


def test_no_proxy_star_bypasses_every_host(tmp_path: Path) -> None:
    router = router_for(
        tmp_path, [{"name": "m", "api_base": "https://gpu/gen"}], {**ENV, "no": "*"}
    )
    assert proxies(router, "m") == [None]


def test_trust_env_false_ignores_the_environment_per_model_or_deployment(
    tmp_path: Path,
) -> None:
    router = router_for(
        tmp_path,
        [
            {"name": "off", "api_base": "https://gpu/gen", "trust_env": False},
            {
                "name": "mixed",
                "trust_env": False,
                "deployments": [
                    {"api_base": "https://gpu/gen"},
                    {"api_base": "https://gpu/gen", "trust_env": True},
                ],
            },
            {
                "name": "one-off",
                "deployments": [{"api_base": "https://gpu/gen", "trust_env": False}],
            },
        ],
    )
    assert proxies(router, "off") == [None]
    assert proxies(router, "mixed") == [None, "http://proxy.corp:3128"]
    assert proxies(router, "one-off") == [None]


def test_an_explicit_proxy_wins_over_the_environment_no_proxy_and_trust_env(
    tmp_path: Path,
) -> None:
    router = router_for(
        tmp_path,
        [
            {
                "name": "m",
                "proxy": "http://model-proxy:3128",
                "trust_env": False,
                "deployments": [
                    {"api_base": "https://gpu/gen"},
                    {"api_base": "https://localhost/gen"},  # in NO_PROXY: explicit still wins
                    {"api_base": "http://gpu/gen", "proxy": "http://u:p@dep-proxy:8000"},
                ],
            }
        ],
    )
    assert proxies(router, "m") == [
        "http://model-proxy:3128",
        "http://model-proxy:3128",
        "http://dep-proxy:8000",
    ]


def test_no_environment_means_no_proxy(tmp_path: Path) -> None:
    router = router_for(tmp_path, [{"name": "m", "api_base": "https://gpu/gen"}], {})
    assert proxies(router, "m") == [None]


def test_a_bad_environment_proxy_fails_start_up_without_its_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        router_for(
            tmp_path,
            [{"name": "m", "api_base": "https://gpu/gen"}],
            {"https": "socks5://u:Hidden9@proxy:1080"},
        )
    message = str(caught.value)
    assert "models[0] (m).proxy (from HTTPS_PROXY): only http:// proxies" in message
    assert "Hidden9" not in message


def test_the_passthrough_upstream_follows_the_environment_too() -> None:
    router = build_router(
        ProxyConfig(), source="-", api_base="https://gpu/gen", proxy_environment=ENV
    )
    assert router.passthrough is not None
    endpoint = router.passthrough.deployments.members[0].endpoint
    assert endpoint.proxy is not None and endpoint.proxy.display == "http://proxy.corp:3128"


@pytest.mark.parametrize(
    ("url", "display", "authorization"),
    [
        ("http://proxy:3128", "http://proxy:3128", None),
        ("proxy:3128", "http://proxy:3128", None),
        ("http://proxy:3128/", "http://proxy:3128", None),
        ("http://u:@proxy:1", "http://proxy:1", "Basic dTo="),
        ("http://[::1]:3128", "http://[::1]:3128", None),
    ],
)
def test_parse_proxy(url: str, display: str, authorization: str | None) -> None:
    proxy = parse_proxy(url)
    assert (proxy.display, proxy.authorization) == (display, authorization)


@pytest.mark.parametrize(
    "url", ["https://proxy:3128", "socks5://proxy:1080", "http://proxy", "http://proxy:3128/p"]
)
def test_parse_proxy_rejects_what_it_cannot_use(url: str) -> None:
    with pytest.raises(ValueError):
        parse_proxy(url)


def test_settings_read_the_proxy_variables_once_lower_case_winning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://upper:1")
    monkeypatch.setenv("https_proxy", "http://lower:2")
    monkeypatch.setenv("HTTP_PROXY", "http://plain:3")
    monkeypatch.setenv("NO_PROXY", "localhost")
    monkeypatch.setenv("FTP_PROXY", "http://ftp:4")  # not ours
    expected = {"https": "http://lower:2", "http": "http://plain:3", "no": "localhost"}
    assert read_proxy_environment() == expected
    settings = Settings()
    monkeypatch.setenv("HTTP_PROXY", "http://changed:5")
    assert settings.proxy_environment == expected  # read at start-up, not later


# TLS


def tls_model(tls: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": "m", "api_base": "https://gpu/gen", "tls": tls, **fields}


def test_one_context_per_distinct_tls_config(tmp_path: Path, certs: Certificates) -> None:
    router = router_for(
        tmp_path,
        [
            tls_model({"ca_file": str(certs.ca)}),
            {
                "name": "n",
                "tls": {"ca_file": str(certs.ca)},
                "deployments": [
                    {"api_base": "https://a/gen"},
                    {"api_base": "https://b/gen", "tls": {"ca_file": str(certs.other_ca)}},
                    {"api_base": "https://c/gen", "tls": {"verify": False}},
                ],
            },
            {"name": "plain", "api_base": "https://gpu/gen"},
        ],
    )
    (m,) = endpoints(router, "m")
    a, b, c = endpoints(router, "n")
    (plain,) = endpoints(router, "plain")
    assert m.tls is not None and m.tls is a.tls
    assert b.tls is not None and b.tls is not a.tls
    assert c.tls is not None and c.tls.verify_mode == ssl.CERT_NONE and not c.tls.check_hostname
    assert m.tls.verify_mode == ssl.CERT_REQUIRED and m.tls.check_hostname
    assert plain.tls is None  # the pool's: the system's CAs


def test_tls_paths_are_relative_to_the_config_folder(tmp_path: Path, certs: Certificates) -> None:
    (tmp_path / "ca.pem").write_bytes(certs.ca.read_bytes())
    router = router_for(tmp_path, [tls_model({"ca_file": "ca.pem"})])
    assert endpoints(router, "m")[0].tls is not None


def bad_file(tmp_path: Path, name: str, content: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


def encrypted_key(tmp_path: Path) -> str:
    from cryptography.hazmat.primitives import serialization

    issued = trustme.CA().issue_cert("client.test")
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), password=None)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass"),
    )
    return bad_file(tmp_path, "encrypted.key", pem)


BAD_TLS: list[tuple[str, Any, str]] = [
    # (case, tls settings made from (tmp_path, certs), a pattern the message contains)
    (
        "missing-ca",
        lambda t, _c: {"ca_file": str(t / "nope.pem")},
        r"models\[0\] \(m\)\.tls\.ca_file: cannot read ",
    ),
    (
        "ca-is-a-folder",
        lambda t, _c: {"ca_file": str(t)},
        r"models\[0\] \(m\)\.tls\.ca_file: cannot read ",
    ),
    (
        "ca-not-a-certificate",
        lambda t, _c: {"ca_file": bad_file(t, "junk.pem", b"not a certificate\n")},
        r"models\[0\] \(m\)\.tls\.ca_file: \S+junk.pem holds no usable CA certificate",
    ),
    (
        "ca-is-a-key",
        lambda _t, c: {"ca_file": str(c.client_key)},
        r"models\[0\] \(m\)\.tls\.ca_file: \S+client.key holds no usable CA certificate",
    ),
    (
        "missing-cert",
        lambda t, c: {"cert_file": str(t / "nope.pem"), "key_file": str(c.client_key)},
        r"models\[0\] \(m\)\.tls\.cert_file: cannot read \S+nope.pem: No such file",
    ),
    (
        "missing-key",
        lambda t, c: {"cert_file": str(c.client_cert), "key_file": str(t / "nope.key")},
        r"models\[0\] \(m\)\.tls\.key_file: cannot read \S+nope.key: No such file",
    ),
    (
        "cert-not-a-certificate",
        lambda _t, c: {"cert_file": str(c.client_key), "key_file": str(c.client_key)},
        r"models\[0\] \(m\)\.tls\.cert_file: \S+client.key holds no PEM certificate",
    ),
    (
        "key-not-a-key",
        lambda _t, c: {"cert_file": str(c.client_cert), "key_file": str(c.ca)},
        r"models\[0\] \(m\)\.tls\.key_file: \S+ca.pem holds no PEM private key",
    ),
    (
        "cert-without-its-key",
        lambda _t, c: {"cert_file": str(c.client_cert)},
        r"models\[0\] \(m\)\.tls\.cert_file: \S+client.pem holds no PEM private key",
    ),
    (
        "key-of-another-certificate",
        lambda _t, c: {"cert_file": str(c.client_cert), "key_file": str(c.server_key)},
        r"models\[0\] \(m\)\.tls\.key_file: the key in \S+server.key does not match the "
        r"certificate in \S+client.pem",
    ),
    (
        "encrypted-key",
        lambda t, c: {"cert_file": str(c.client_cert), "key_file": encrypted_key(t)},
        r"models\[0\] \(m\)\.tls\.key_file: the private key in \S+ is encrypted",
    ),
]


@pytest.mark.parametrize(
    ("tls", "fragment"), [case[1:] for case in BAD_TLS], ids=[case[0] for case in BAD_TLS]
)
def test_a_bad_tls_file_fails_start_up_naming_model_and_field(
    tmp_path: Path, certs: Certificates, tls: Any, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        router_for(tmp_path, [tls_model(tls(tmp_path, certs))])
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'proxy.yaml'}: ")
    assert re.search(fragment, message), message


def test_a_bad_tls_file_of_a_deployment_names_the_deployment(
    tmp_path: Path, certs: Certificates
) -> None:
    model = {
        "name": "m",
        "tls": {"ca_file": str(certs.ca)},
        "deployments": [
            {"api_base": "https://a/gen"},
            {"api_base": "https://b/gen", "tls": {"cert_file": str(tmp_path / "gone.pem")}},
        ],
    }
    with pytest.raises(ConfigError, match=r"models\[0\] \(m\)\.deployments\[1\]\.tls\.cert_file"):
        router_for(tmp_path, [model])


def test_check_config_shows_the_proxy_without_its_credentials(
    tmp_path: Path, certs: Certificates, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://corp-user:Hidden9@proxy.corp:3128")
    path = tmp_path / "proxy.yaml"
    model = tls_model({"ca_file": str(certs.ca)})
    path.write_text(yaml.safe_dump({"models": [model]}), encoding="utf-8")
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "m[0] @ https://gpu/gen:" in out
    assert "through the proxy http://proxy.corp:3128, own TLS settings" in out
    assert "Hidden9" not in out and "corp-user" not in out
