"""Every error is OpenAI's envelope with the status the SDK maps to the right exception class."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from openai import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    OpenAI,
)

from tests.e2e.conftest import sdk_client
from tests.e2e.servers import Server
from tests.openai_spec import validate_openai

pytestmark = pytest.mark.e2e

HELLO = [{"role": "user", "content": "hello"}]


def check_envelope(response: httpx.Response | Any, status: int) -> dict[str, Any]:
    """Status, x-request-id, and a body that is exactly OpenAI's error envelope."""
    assert response.status_code == status
    assert response.headers["x-request-id"]
    body = response.json()
    validate_openai("ErrorResponse", body)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"functions": [{"name": "f", "parameters": {}}]}, "functions"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is in this image?"},
                            {"type": "image_url", "image_url": {"url": "https://x.invalid/a.png"}},
                        ],
                    }
                ]
            },
            "messages[0].content[1].type",
        ),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"logprobs": True}, "logprobs"),
    ],
    ids=["functions", "image-part", "audio-modality", "logprobs"],
)
def test_unsupported_features_are_bad_requests(
    client: OpenAI, extra: dict[str, Any], param: str
) -> None:
    request: dict[str, Any] = {"model": "demo-raw", "messages": HELLO, **extra}
    with pytest.raises(BadRequestError) as caught:
        client.chat.completions.create(**request)
    error = check_envelope(caught.value.response, 400)
    assert caught.value.param == param == error["param"]
    assert caught.value.code == "unsupported_parameter"
    assert caught.value.type == "invalid_request_error"


def test_wrong_api_key_is_authentication_error(proxy: Server) -> None:
    with (
        sdk_client(proxy, api_key="sk-wrong") as wrong,
        pytest.raises(AuthenticationError) as caught,
    ):
        wrong.chat.completions.create(model="demo-raw", messages=HELLO)
    error = check_envelope(caught.value.response, 401)
    assert error["code"] == "invalid_api_key"


def test_missing_api_key_is_401(proxy: Server) -> None:
    with httpx.Client(base_url=proxy.url) as anonymous:
        response = anonymous.post(
            "/v1/chat/completions", json={"model": "demo-raw", "messages": HELLO}
        )
    check_envelope(response, 401)


def test_unknown_model_is_not_found(client: OpenAI) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    error = check_envelope(caught.value.response, 404)
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"


@pytest.mark.parametrize(
    ("model", "status", "code", "says"),
    [
        ("bad-json", 502, "bad_upstream_response", "invalid JSON"),
        ("upstream-500", 502, "bad_upstream_response", "HTTP 500"),
        ("not-ok", 502, "bad_upstream_response", "model overloaded"),
        ("html-page", 502, "bad_upstream_response", "invalid JSON"),
        ("cut-short", 502, "bad_upstream_response", "broke off its answer"),
        ("dead", 503, "upstream_unavailable", "cannot connect"),
        ("too-slow", 504, "upstream_timeout", "did not answer within 0.5 s"),
    ],
)
def test_upstream_failures_are_5xx(
    client: OpenAI, model: str, status: int, code: str, says: str
) -> None:
    with pytest.raises(APIStatusError) as caught:
        client.chat.completions.create(model=model, messages=HELLO)
    assert isinstance(caught.value, InternalServerError)
    assert caught.value.status_code == status
    error = check_envelope(caught.value.response, status)
    assert error["code"] == code
    assert says in error["message"]
    assert error["type"] == "upstream_error"


@pytest.mark.parametrize(
    ("method", "path", "content", "headers", "status"),
    [
        ("GET", "/v1/no-such-route", None, {}, 404),
        ("GET", "/v1/chat/completions", None, {}, 405),
        ("POST", "/v1/chat/completions", b"{not json", {"content-type": "application/json"}, 400),
        ("POST", "/v1/chat/completions", b"model=x", {"content-type": "text/plain"}, 400),
        ("POST", "/v1/chat/completions", b'{"model": "demo-raw"}', {}, 400),
        ("POST", "/v1/chat/completions", b'{"model": "' + b"x" * (5 << 20) + b'"}', {}, 413),
    ],
    ids=[
        "unknown-route",
        "wrong-method",
        "bad-json",
        "content-type",
        "missing-messages",
        "too-large",
    ],
)
def test_protocol_errors_use_the_envelope(
    http: httpx.Client,
    method: str,
    path: str,
    content: bytes | None,
    headers: dict[str, str],
    status: int,
) -> None:
    response = http.request(method, path, content=content, headers=headers)
    check_envelope(response, status)
