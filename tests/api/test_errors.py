"""Every failure is an OpenAI envelope with the status the SDK maps to the right exception."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.config import ProxyConfig
from app.upstream import UpstreamRequest, UpstreamResponse
from tests.api.conftest import FakeUpstream, assert_error, chat_body, model
from tests.openai_spec import validate_openai


async def test_unknown_model_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=chat_body(model="nope"))
    error = assert_error(response, 404, code="model_not_found", param="model")
    validate_openai("ErrorResponse", {"error": error})


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/unknown", 404, "not_found"),
        ("GET", "/v1/chat/completions", 405, "method_not_allowed"),
        ("DELETE", "/v1/models", 405, "method_not_allowed"),
    ],
)
async def test_unknown_route_and_wrong_method(
    client: httpx.AsyncClient, method: str, path: str, status: int, code: str
) -> None:
    assert_error(await client.request(method, path), status, code=code)


@pytest.mark.parametrize(
    ("content", "headers", "code", "param"),
    [
        (b"{not json", {"content-type": "application/json"}, "invalid_json", None),
        (b"", {"content-type": "application/json"}, None, None),
        (b"[1, 2]", {"content-type": "application/json"}, None, None),
        (b'{"model": "raw-model"}', {}, None, "messages"),
        (
            b"model=x",
            {"content-type": "application/x-www-form-urlencoded"},
            "invalid_content_type",
            None,
        ),
        (
            b'{"model": "raw-model", "messages": [{"role": "user", "content": "\xff"}]}',
            {"content-type": "application/json"},
            "invalid_json",
            None,
        ),
        (
            b'{"model": "raw-model", "messages": [{"role": "user", "content": "x"}], '
            b'"temperature": NaN}',
            {"content-type": "application/json"},
            None,
            "temperature",
        ),
    ],
)
async def test_bad_bodies_are_400(
    client: httpx.AsyncClient,
    content: bytes,
    headers: dict[str, str],
    code: str | None,
    param: str | None,
) -> None:
    response = await client.post("/v1/chat/completions", content=content, headers=headers)
    error = assert_error(response, 400, param=param)
    if code is not None:
        assert error["code"] == code


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 2.5),
        ("top_p", 1.5),
        ("n", 0),
        ("n", 129),
        ("max_tokens", 0),
        ("max_completion_tokens", -1),
        ("top_k", -2),
        ("stream", "yes"),
        ("stop", 5),
    ],
)
async def test_out_of_range_params_name_the_param(
    client: httpx.AsyncClient, field: str, value: Any
) -> None:
    response = await client.post("/v1/chat/completions", json=chat_body(**{field: value}))
    assert_error(response, 400, param=field)


async def test_deeply_nested_json_is_400_not_a_crash(client: httpx.AsyncClient) -> None:
    body = b'{"model": "raw-model", "deep": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = await client.post(
        "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert_error(response, 400)
    assert (await client.post("/v1/chat/completions", json=chat_body())).status_code == 200


async def test_body_over_limit_is_413(make_client: Any) -> None:
    client = await make_client(ProxyConfig(models=[model("raw-model")], max_request_bytes=2048))
    big = chat_body(messages=[{"role": "user", "content": "x" * 4096}])
    assert_error(await client.post("/v1/chat/completions", json=big), 413, code="request_too_large")

    async def chunks() -> Any:  # no content-length: counted while reading
        for _ in range(10):
            yield b" " * 512

    response = await client.post(
        "/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_error(response, 413)


async def test_api_keys(make_client: Any) -> None:
    client = await make_client(ProxyConfig(models=[model("raw-model")], api_keys=["sk-good"]))
    assert_error(
        await client.post("/v1/chat/completions", json=chat_body()), 401, code="invalid_api_key"
    )
    for header in ("Bearer sk-bad", "Basic sk-good", "sk-good", "Bearer "):
        response = await client.post(
            "/v1/chat/completions", json=chat_body(), headers={"Authorization": header}
        )
        assert_error(response, 401, code="invalid_api_key")
    assert_error(await client.get("/v1/models"), 401)
    ok = await client.post(
        "/v1/chat/completions", json=chat_body(), headers={"Authorization": "Bearer sk-good"}
    )
    assert ok.status_code == 200
    assert (await client.get("/health")).status_code == 200  # liveness needs no key


def _status(status: int, body: bytes = b'{"message": "boom"}') -> Any:
    return lambda _request: httpx.Response(status, content=body)


@pytest.mark.parametrize(
    ("handler", "status", "code", "words"),
    [
        (_status(200, b"<html>oops"), 502, "bad_upstream_response", "invalid JSON"),
        (_status(200, b'{"message": "busy", "data": []}'), 502, "bad_upstream_response", "busy"),
        (_status(200, b'{"message": "ok"}'), 502, "bad_upstream_response", "'data'"),
        (
            _status(200, b'{"message": "ok", "data": []}'),
            502,
            "bad_upstream_response",
            "0 outputs for 1 prompts",
        ),
        (
            _status(200, b'{"message": "ok", "data": [{"output": [1]}]}'),
            502,
            "bad_upstream_response",
            "not a string",
        ),
        (_status(500), 502, "bad_upstream_response", "HTTP 500"),
        (_status(400), 502, "bad_upstream_response", "HTTP 400"),
        (_status(429), 429, "upstream_rate_limited", "HTTP 429"),
        (_status(503), 503, "upstream_unavailable", "HTTP 503"),
        (_status(504), 504, "upstream_timeout", "HTTP 504"),
    ],
)
async def test_upstream_failures_become_gateway_errors(
    client: httpx.AsyncClient,
    fake_upstream: FakeUpstream,
    handler: Any,
    status: int,
    code: str,
    words: str,
) -> None:
    fake_upstream.override = handler
    error = assert_error(
        await client.post("/v1/chat/completions", json=chat_body()), status, code=code
    )
    assert words in error["message"]
    fake_upstream.override = None
    assert (await client.post("/v1/chat/completions", json=chat_body())).status_code == 200


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (httpx.ConnectError("refused"), 503, "upstream_unavailable"),
        (httpx.ReadTimeout("slow"), 504, "upstream_timeout"),
        (httpx.RemoteProtocolError("cut"), 502, "bad_upstream_response"),
    ],
)
async def test_transport_failures(
    client: httpx.AsyncClient,
    fake_upstream: FakeUpstream,
    exc: Exception,
    status: int,
    code: str,
) -> None:
    def fail(_request: httpx.Request) -> httpx.Response:
        raise exc

    fake_upstream.override = fail
    assert_error(await client.post("/v1/chat/completions", json=chat_body()), status, code=code)


async def test_model_timeout_is_504(make_client: Any, fake_upstream: FakeUpstream) -> None:
    client = await make_client(ProxyConfig(models=[model("raw-model", timeout=0.05)]))
    fake_upstream.delay = 5.0
    error = assert_error(await client.post("/v1/chat/completions", json=chat_body()), 504)
    assert "0.05 s" in error["message"]


class ExplodingUpstream:
    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        raise RuntimeError(f"a bug with secret detail for {request.model}")

    async def aclose(self) -> None:
        return None


async def test_internal_error_is_500_envelope_without_details(make_client: Any) -> None:
    client = await make_client(
        ProxyConfig(models=[model("raw-model")]), upstream=ExplodingUpstream()
    )
    response = await client.post("/v1/chat/completions", json=chat_body())
    error = assert_error(response, 500, code="internal_error")
    assert "secret detail" not in error["message"]
    assert response.headers["x-request-id"] in error["message"]


async def test_an_internal_error_is_answered_inside_the_app_not_raised_to_the_server(
    make_client: Any,
) -> None:
    """A 500 must not escape the app: the server would then close the keep-alive connection
    under a client that may be sending its next request on it."""
    client = await make_client(
        ProxyConfig(models=[model("raw-model")]), upstream=ExplodingUpstream()
    )
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    strict = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=transport.app, raise_app_exceptions=True),
        base_url="http://proxy.test",
    )
    async with strict:
        response = await strict.post("/v1/chat/completions", json=chat_body())  # no raise
        assert_error(response, 500, code="internal_error")
        assert (await strict.get("/health")).status_code == 200
