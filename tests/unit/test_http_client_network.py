"""app.http_client through a real forward proxy (tinyproxy) to TLS upstreams of a throwaway CA.

The upstreams are scripted servers on 127.0.0.1 (`tests.scripted_upstream`) serving
certificates issued by a `trustme` CA, one of them requiring a client certificate; the proxy
is tinyproxy, whose log shows each request line it read (CONNECT host:port for https, the
absolute-form POST for http).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any

import pytest

from app.config import TLSConfig
from app.http_client import HTTPPool, prepare_post
from app.http_errors import ConnectFailed, ConnectionBroken
from app.http_origin import Proxy
from app.upstream_network import build_tls_context, parse_proxy
from tests.network_pieces import (
    PROXY_PASSWORD,
    PROXY_USER,
    Certificates,
    Tinyproxy,
    make_certificates,
    running_tinyproxy,
)
from tests.scripted_upstream import ServeFactory, answer, refused_port, reply

pytestmark = pytest.mark.timeout(20)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tinyproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tinyproxy]:
    with running_tinyproxy(tmp_path_factory.mktemp("tinyproxy")) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def auth_tinyproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tinyproxy]:
    with running_tinyproxy(tmp_path_factory.mktemp("tinyproxy-auth"), auth=True) as proxy:
        yield proxy


@pytest.fixture
async def pool() -> AsyncIterator[HTTPPool]:
    async with aclosing(HTTPPool(connect_timeout=5.0)) as pool:
        yield pool


def private_ca(certs: Certificates, **fields: Any) -> ssl.SSLContext:
    return build_tls_context(TLSConfig(ca_file=certs.ca, **fields), "test.tls")


def new_lines(proxy: Tinyproxy, before: int) -> list[str]:
    return proxy.requests()[before:]


# https through a CONNECT tunnel, http in absolute form


async def test_https_through_a_connect_tunnel_with_a_private_ca(
    serve: ServeFactory, pool: HTTPPool, certs: Certificates, tinyproxy: Tinyproxy
) -> None:
    server = await serve(reply(answer(b"through")), tls=certs.server_context())
    before = len(tinyproxy.requests())
    target = prepare_post(
        server.url(scheme="https"), {}, proxy=parse_proxy(tinyproxy.url), tls=private_ca(certs)
    )
    first = await pool.post(target, b"x-request-id: t-1\r\n", b"{}")
    second = await pool.post(target, b"", b"{}")  # the same tunnel, kept alive
    assert first.body == second.body == b"through"
    assert new_lines(tinyproxy, before) == [f"CONNECT 127.0.0.1:{server.port} HTTP/1.1"]
    assert server.accepted == 1
    # Inside the tunnel the upstream sees an ordinary origin-form request.
    assert server.requests[0].startswith(
        b"POST /generate HTTP/1.1\r\nhost: 127.0.0.1:%d\r\nx-request-id: t-1\r\n" % server.port
    )


async def test_http_through_the_proxy_in_absolute_form(
    serve: ServeFactory, pool: HTTPPool, tinyproxy: Tinyproxy
) -> None:
    server = await serve(reply(answer(b"plain")))
    before = len(tinyproxy.requests())
    target = prepare_post(server.url("/inference?x=1"), {}, proxy=parse_proxy(tinyproxy.url))
    response = await pool.post(target, b"", b"{}")
    assert response.body == b"plain"
    assert new_lines(tinyproxy, before) == [
        f"POST http://127.0.0.1:{server.port}/inference?x=1 HTTP/1.1"
    ]
    assert server.requests[0].startswith(b"POST /inference?x=1 HTTP/1.1\r\n")


async def test_basic_auth_reaches_the_proxy_for_connect_and_for_http(
    serve: ServeFactory, pool: HTTPPool, certs: Certificates, auth_tinyproxy: Tinyproxy
) -> None:
    tls_server = await serve(reply(answer(b"tls")), tls=certs.server_context())
    plain_server = await serve(reply(answer(b"plain")))
    proxy = parse_proxy(auth_tinyproxy.url)
    https = prepare_post(tls_server.url(scheme="https"), {}, proxy=proxy, tls=private_ca(certs))
    http = prepare_post(plain_server.url(), {}, proxy=proxy)
    assert (await pool.post(https, b"", b"{}")).body == b"tls"
    assert (await pool.post(http, b"", b"{}")).body == b"plain"
    # The credentials went to the proxy only: the upstreams never see them.
    assert b"proxy-authorization" not in b"".join(tls_server.requests + plain_server.requests)


async def test_a_refused_tunnel_names_the_proxy_without_its_credentials(
    serve: ServeFactory, pool: HTTPPool, certs: Certificates, auth_tinyproxy: Tinyproxy
) -> None:
    server = await serve(reply(answer()), tls=certs.server_context())
    wrong = auth_tinyproxy.url.replace(PROXY_PASSWORD, "WrongPassword1")
    target = prepare_post(
        server.url(scheme="https"), {}, proxy=parse_proxy(wrong), tls=private_ca(certs)
    )
    with pytest.raises(ConnectFailed) as caught:
        await pool.post(target, b"", b"{}")
    message = str(caught.value)
    assert f"the proxy {auth_tinyproxy.bare_url} refused the tunnel" in message
    assert "Unauthorized" in message  # tinyproxy answers 401 rather than 407
    assert "WrongPassword1" not in message and PROXY_USER not in message
    assert server.accepted == 0


async def test_an_unreachable_proxy_is_named_without_its_credentials(pool: HTTPPool) -> None:
    port = refused_port()
    proxy = parse_proxy(f"http://someone:Pa55word@127.0.0.1:{port}")
    for url in ("https://upstream.test/generate", "http://upstream.test/generate"):
        with pytest.raises(ConnectFailed) as caught:
            await pool.post(prepare_post(url, {}, proxy=proxy), b"", b"{}")
        message = str(caught.value)
        assert message.startswith(f"cannot connect to the proxy http://127.0.0.1:{port}: ")
        assert "Pa55word" not in message and "someone" not in message
    assert "Pa55word" not in repr(proxy)


# TLS settings


async def test_a_private_ca_is_trusted_and_the_system_cas_are_not_enough(
    serve: ServeFactory, pool: HTTPPool, certs: Certificates
) -> None:
    server = await serve(reply(answer(b"ok")), tls=certs.server_context())
    trusted = prepare_post(server.url(scheme="https"), {}, tls=private_ca(certs))
    assert (await pool.post(trusted, b"", b"{}")).body == b"ok"
    with pytest.raises(ConnectFailed, match="certificate was not accepted"):
        await pool.post(prepare_post(server.url(scheme="https"), {}), b"", b"{}")
    other = build_tls_context(TLSConfig(ca_file=certs.other_ca), "t")
    with pytest.raises(ConnectFailed, match="certificate was not accepted"):
        await pool.post(prepare_post(server.url(scheme="https"), {}, tls=other), b"", b"{}")
    assert len(server.requests) == 1


async def test_verify_false_accepts_any_certificate(
    serve: ServeFactory, pool: HTTPPool, certs: Certificates
) -> None:
    server = await serve(reply(answer(b"unchecked")), tls=certs.server_context())
    context = build_tls_context(TLSConfig(verify=False), "t")
    url = f"https://localhost:{server.port}/generate"
    assert (await pool.post(prepare_post(url, {}, tls=context), b"", b"{}")).body == b"unchecked"


async def test_mutual_tls_with_and_without_the_client_certificate(
    serve: ServeFactory, pool: HTTPPool, certs: Certificates
) -> None:
    server = await serve(reply(answer(b"mtls")), tls=certs.server_context(require_client_cert=True))
    with_cert = private_ca(certs, cert_file=certs.client_cert, key_file=certs.client_key)
    target = prepare_post(server.url(scheme="https"), {}, tls=with_cert)
    assert (await pool.post(target, b"", b"{}")).body == b"mtls"
    without = prepare_post(server.url(scheme="https"), {}, tls=private_ca(certs))
    with pytest.raises(ConnectionBroken, match="requires a client certificate, set tls.cert_file"):
        await pool.post(without, b"", b"{}")
    assert len(server.requests) == 1


async def test_mutual_tls_through_the_tunnel(
    serve: ServeFactory, pool: HTTPPool, certs: Certificates, tinyproxy: Tinyproxy
) -> None:
    server = await serve(reply(answer(b"both")), tls=certs.server_context(require_client_cert=True))
    context = private_ca(certs, cert_file=certs.client_cert, key_file=certs.client_key)
    target = prepare_post(
        server.url(scheme="https"), {}, proxy=parse_proxy(tinyproxy.url), tls=context
    )
    assert (await pool.post(target, b"", b"{}")).body == b"both"


# Pool keys


async def test_connections_are_not_shared_across_proxies_or_tls_contexts(
    serve: ServeFactory, pool: HTTPPool, certs: Certificates, tinyproxy: Tinyproxy
) -> None:
    server = await serve(reply(answer()), tls=certs.server_context())
    url = server.url(scheme="https")
    one, two = private_ca(certs), private_ca(certs)  # equal settings, distinct contexts
    proxy = parse_proxy(tinyproxy.url)
    targets = [
        prepare_post(url, {}, tls=one),
        prepare_post(url, {}, tls=two),
        prepare_post(url, {}, tls=one, proxy=proxy),
        prepare_post(url, {}, tls=one),  # the first one's key: reuses its connection
    ]
    for target in targets:
        await pool.post(target, b"", b"{}")
    assert len({target.origin for target in targets}) == 3
    assert server.accepted == 3


def test_proxy_credentials_become_basic_proxy_authorization() -> None:
    proxy = parse_proxy("http://us%40er:p%3Ass@proxy.corp:3128")
    assert proxy == Proxy("proxy.corp", 3128, "http://proxy.corp:3128", "Basic dXNAZXI6cDpzcw==")
    head = prepare_post("http://upstream.test:8000/gen", {"x-a": "1"}, proxy=proxy).head
    assert head == (
        b"POST http://upstream.test:8000/gen HTTP/1.1\r\n"
        b"host: upstream.test:8000\r\n"
        b"proxy-authorization: Basic dXNAZXI6cDpzcw==\r\n"
        b"x-a: 1\r\n"
    )
    # https: the head is the upstream's; the credentials go in the CONNECT request only.
    tls_head = prepare_post("https://upstream.test/gen", {}, proxy=proxy).head
    assert tls_head == b"POST /gen HTTP/1.1\r\nhost: upstream.test\r\n"


async def test_a_proxy_that_never_answers_connect_is_a_connect_timeout(
    certs: Certificates,
) -> None:
    closed = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads the CONNECT request, never answers, until the client goes
        writer.close()
        await writer.wait_closed()
        closed.set()

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with aclosing(HTTPPool(connect_timeout=0.3)) as pool:
            target = prepare_post(
                "https://upstream.test/x",
                {},
                proxy=parse_proxy(f"http://127.0.0.1:{port}"),
                tls=private_ca(certs),
            )
            with pytest.raises(ConnectFailed, match="through the proxy http://127.0.0.1"):
                await pool.post(target, b"", b"{}")
        async with asyncio.timeout(5):
            await closed.wait()  # the pool closed the half-open tunnel
    finally:
        listener.close()
        await listener.wait_closed()
