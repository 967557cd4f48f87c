"""How each deployment reaches its upstream: through which forward proxy, with which TLS context.

Decided once per deployment when the router is built, as httpx, aiohttp and curl decide it:

1. the deployment's `proxy` (or its model's), when set, is used whatever the environment says;
2. else, unless `trust_env` is false, the environment read at start-up (`Settings.
   proxy_environment`): HTTPS_PROXY for https upstreams, HTTP_PROXY for http ones (lower-case
   names win over upper-case ones), except for hosts NO_PROXY names. The parsing and the
   NO_PROXY matching are the standard library's (`urllib.request.getproxies_environment`,
   `proxy_bypass_environment`): host names and domain suffixes, `*` for every host;
3. else no proxy.

A proxy URL is `http://[user:password@]host:port` (a scheme-less `host:port` from the
environment means http://, as curl reads it); its credentials become `Proxy-Authorization:
Basic` and never appear anywhere else: `Proxy.display` is the URL without them.

TLS: one `ssl.SSLContext` per distinct `tls` config, built here at start-up; a file that is
missing, unreadable, not a certificate or key, or a key that does not match its certificate is
a ConfigError naming the model and the field. No `tls`: the pool's context, the system's CAs.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

# Not in typeshed, but public since Python 3.1 and what urllib itself uses on Linux.
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]

from app.config import ConfigError, TLSConfig
from app.http_origin import Proxy
from app.proxy_url import parse_proxy

_ENV_NAMES = {"http": "HTTP_PROXY", "https": "HTTPS_PROXY"}


@dataclass(frozen=True, slots=True)
class Network:
    """One deployment's way to its upstream. `proxy_source` says where the proxy came from
    ("config", "HTTPS_PROXY", "HTTP_PROXY"); `tls` is None for the pool's default context."""

    proxy: Proxy | None
    proxy_source: str | None
    tls: ssl.SSLContext | None


class NetworkPlanner:
    """Decides each deployment's Network; shares one SSLContext per distinct tls config."""

    def __init__(self, environment: Mapping[str, str]) -> None:
        self._environment = dict(environment)
        self._contexts: dict[TLSConfig, ssl.SSLContext] = {}

    def plan(
        self,
        url: str,
        *,
        proxy: tuple[str | None, str],
        trust_env: bool,
        tls: tuple[TLSConfig | None, str],
    ) -> Network:
        """The Network for an upstream URL. `proxy` and `tls` are the effective setting and
        where it was given (`models[0] (m)` or `models[0] (m).deployments[1]`), for errors."""
        proxy_url, proxy_where = proxy
        chosen, source = self._choose_proxy(url, proxy_url, trust_env)
        try:
            parsed = None if chosen is None else parse_proxy(chosen)
        except ValueError as exc:
            field = "proxy" if source == "config" else f"proxy (from {source})"
            raise ConfigError(f"{proxy_where}.{field}: {exc}") from exc
        tls_config, tls_where = tls
        context = None if tls_config is None else self._context(tls_config, tls_where)
        return Network(parsed, source if parsed is not None else None, context)

    def _choose_proxy(
        self, url: str, explicit: str | None, trust_env: bool
    ) -> tuple[str | None, str | None]:
        if explicit is not None:
            return explicit, "config"
        if not trust_env:
            return None, None
        parts = urlsplit(url)
        from_env = self._environment.get(parts.scheme)
        host = parts.hostname or ""
        if parts.port is not None and ":" not in host:  # NO_PROXY may name host:port
            host = f"{host}:{parts.port}"
        if not from_env or proxy_bypass_environment(host, self._environment):
            return None, None
        return from_env, _ENV_NAMES[parts.scheme]

    def _context(self, config: TLSConfig, where: str) -> ssl.SSLContext:
        context = self._contexts.get(config)
        if context is None:
            context = self._contexts[config] = build_tls_context(config, f"{where}.tls")
        return context


class _EncryptedKey(Exception):
    pass


def _no_password() -> bytes:
    raise _EncryptedKey  # instead of OpenSSL asking on the terminal


def build_tls_context(config: TLSConfig, where: str) -> ssl.SSLContext:
    """An SSLContext for `config`; ConfigError naming `where` and the field for a bad file."""
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(config, name)
        if path is not None:
            _check_readable(path, f"{where}.{name}")
    try:
        context = ssl.create_default_context(cafile=config.ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"{where}.ca_file: {config.ca_file} holds no usable CA certificate: {_reason(exc)}"
        ) from exc
    if not config.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if config.cert_file is not None:
        _load_client_certificate(context, config, where)
    return context


def _check_readable(path: Path, where: str) -> None:
    try:
        with path.open("rb") as file:
            file.read(1)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror or exc}") from exc


def _load_client_certificate(context: ssl.SSLContext, config: TLSConfig, where: str) -> None:
    assert config.cert_file is not None
    key_file = config.key_file or config.cert_file
    try:
        context.load_cert_chain(config.cert_file, config.key_file, password=_no_password)
    except _EncryptedKey:
        raise ConfigError(
            f"{where}.{_key_field(config)}: the private key in {key_file} is encrypted; "
            "give an unencrypted key"
        ) from None
    except (ssl.SSLError, OSError) as exc:
        cert_text = config.cert_file.read_bytes()
        if b"-----BEGIN CERTIFICATE-----" not in cert_text:
            raise ConfigError(
                f"{where}.cert_file: {config.cert_file} holds no PEM certificate"
            ) from exc
        if b"PRIVATE KEY-----" not in key_file.read_bytes():
            raise ConfigError(
                f"{where}.{_key_field(config)}: {key_file} holds no PEM private key"
            ) from exc
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise ConfigError(
                f"{where}.{_key_field(config)}: the key in {key_file} does not match the "
                f"certificate in {config.cert_file}"
            ) from exc
        raise ConfigError(
            f"{where}.cert_file: cannot load {config.cert_file} with its key: {_reason(exc)}"
        ) from exc


def _key_field(config: TLSConfig) -> str:
    return "key_file" if config.key_file is not None else "cert_file"


def _reason(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    if isinstance(exc, OSError):
        return str(exc.strerror or exc)
    return str(exc)
