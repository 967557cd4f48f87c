"""parse_body / _check_content_type: request bytes → a validated model or a 400 naming the param."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from app.errors import InvalidRequest
from app.protocols.openai.schemas import ChatCompletionRequest, CompletionRequest
from app.routes._request import _check_content_type, parse_body

CASES = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "request_parsing.json").read_text("utf-8")
)["cases"]
MODELS: dict[str, type[BaseModel]] = {
    "chat": ChatCompletionRequest,
    "completions": CompletionRequest,
}
MESSAGES = b'"messages": [{"role": "user", "content": "x"}]'


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_bad_body_is_a_400_naming_the_param(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_body(MODELS[case["endpoint"]], case["body"].encode())

    error = caught.value
    assert error.status == 400
    assert error.param == case["param"]
    assert error.code == case["code"]
    for fragment in case["contains"]:
        assert fragment in error.message
    assert error.envelope()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"model": "m", "messages": ["hello"]}', "messages[0]"),
        (b'{"model": "m", ' + MESSAGES + b', "stream_options": 5}', "stream_options"),
    ],
    ids=["message-a-string", "stream_options-a-number"],
)
def test_nested_non_object_names_its_param(body: bytes, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_body(ChatCompletionRequest, body)

    assert caught.value.param == param
    assert "request body must be a JSON object" not in caught.value.message


def test_deeply_nested_json_is_a_400_not_a_crash() -> None:
    depth = 10_000
    body = b'{"model": "m", ' + MESSAGES + b', "extra": ' + b"[" * depth + b"]" * depth + b"}"

    with pytest.raises(InvalidRequest) as caught:
        parse_body(ChatCompletionRequest, body)

    assert caught.value.status == 400
    assert caught.value.code == "invalid_json"


def test_deeply_nested_objects_are_a_400_not_a_crash() -> None:
    depth = 10_000
    body = (
        b'{"model": "m", ' + MESSAGES + b', "x": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"
    )

    with pytest.raises(InvalidRequest) as caught:
        parse_body(ChatCompletionRequest, body)

    assert caught.value.code == "invalid_json"


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe", b"caf\xe9", b"\xc3", b"\xed\xa0\x80"],
    ids=["bom", "latin1", "cut", "surrogate"],
)
def test_invalid_utf8_is_a_400(content: bytes) -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "' + content + b'"}]}'

    with pytest.raises(InvalidRequest) as caught:
        parse_body(ChatCompletionRequest, body)

    assert caught.value.status == 400
    assert caught.value.code == "invalid_json"


def test_long_bad_value_is_shown_shortened() -> None:
    body = b'{"model": "m", ' + MESSAGES + b', "stream": "' + b"y" * 500 + b'"}'

    with pytest.raises(InvalidRequest) as caught:
        parse_body(ChatCompletionRequest, body)

    assert caught.value.param == "stream"
    assert caught.value.message.endswith("(got '" + "y" * 59 + "…)")


def test_valid_chat_body_parses_with_extras() -> None:
    body = (
        b'{"model": "custom/meta-llama/Llama-2-13b-hf", "messages": ['
        b'{"role": "system", "content": "s"},'
        b'{"role": "user", "content": [{"type": "text", "text": "t"}], "name": "ann"}],'
        b' "temperature": 0, "top_p": 1, "n": 128, "max_tokens": 1, "stop": "\\n",'
        b' "top_k": 40, "stream": true, "stream_options": {"include_usage": true},'
        b' "seed": 7, "metadata": {"anything": [1, 2]}}'
    )

    request = parse_body(ChatCompletionRequest, body)

    assert isinstance(request, ChatCompletionRequest)
    assert request.model == "custom/meta-llama/Llama-2-13b-hf"
    assert [m.role for m in request.messages] == ["system", "user"]
    assert request.messages[1].name == "ann"
    assert (request.temperature, request.top_p, request.n, request.max_tokens) == (0, 1, 128, 1)
    assert request.stop == "\n"
    assert request.top_k == 40
    assert request.stream is True
    assert request.stream_options is not None and request.stream_options.include_usage is True
    assert request.model_extra == {"metadata": {"anything": [1, 2]}}


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [(b'"p"', "p"), (b'["a", "b"]', ["a", "b"]), (b"[1, 2]", [1, 2]), (b"[[1], [2]]", [[1], [2]])],
)
def test_valid_completion_prompts_parse(prompt: bytes, expected: Any) -> None:
    request = parse_body(CompletionRequest, b'{"model": "m", "prompt": ' + prompt + b"}")

    assert isinstance(request, CompletionRequest)
    assert request.prompt == expected


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
    ],
)
def test_wrong_content_type_is_a_400(content_type: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        _check_content_type(content_type)

    error = caught.value
    assert error.status == 400
    assert error.code == "invalid_content_type"
    assert "application/json" in error.message


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/vnd.api+json",
    ],
)
def test_json_content_types_pass(content_type: str | None) -> None:
    assert _check_content_type(content_type) is None
