"""`custom-llm-proxy mock-upstream` as a real process answering tool and JSON prompts over HTTP,
with and without `--reasoning`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest

from app.mock_upstream import complete
from tests.e2e.servers import MOCK_READY, Server, launch_mock

pytestmark = pytest.mark.e2e

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "celsius": {"type": "number", "maximum": 60}},
    "required": ["city", "celsius"],
    "additionalProperties": False,
}
TOOL_PROMPT = (
    "<|im_start|>system\nYou may call these functions:\n"
    f"{json.dumps(TOOL)}\n"
    'Call one as <tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
    "</tool_call><|im_end|>\n"
    "<|im_start|>user\nWhat is the weather in Lisbon?<|im_end|>\n"
    "<|im_start|>assistant\n"
)
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lisbon"}}\n</tool_call>'
JSON_PROMPT = (
    "<|im_start|>system\nAnswer with a single JSON object that matches this JSON schema: "
    f"{json.dumps(SCHEMA)}<|im_end|>\n"
    "<|im_start|>user\nThe weather in Lisbon?<|im_end|>\n"
    "<|im_start|>assistant\n"
)
PLAIN_PROMPT = "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
PROMPTS = [TOOL_PROMPT, JSON_PROMPT, PLAIN_PROMPT]


@pytest.fixture(scope="module")
def mocks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    log_dir = tmp_path_factory.mktemp("mock-upstream-tools")
    servers: dict[str, Server] = {}
    try:
        servers["plain"] = launch_mock(log_dir, "plain")
        servers["reasoning"] = launch_mock(log_dir, "reasoning", ["--reasoning"])
        for server in servers.values():
            server.wait_ready(MOCK_READY)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def continuations(server: Server, body: dict[str, Any]) -> list[str]:
    response = httpx.post(f"{server.url}/inference", json=body, timeout=10)
    assert response.status_code == 200
    data = response.json()["data"]
    return [item["output"][0][len(item["prompt"]) :] for item in data]


def test_tool_and_json_prompts_over_http(mocks: dict[str, Server]) -> None:
    body = {"model": "demo", "params": {"prompt": PROMPTS}}
    call, answer, plain = continuations(mocks["plain"], body)
    assert call == CALL
    jsonschema.validate(json.loads(answer), SCHEMA)
    assert json.loads(answer)["city"] == "Lisbon"
    assert plain == complete(body)[1]["data"][2]["output"][0][len(PLAIN_PROMPT) :]
    assert "<think>" not in plain


def test_reasoning_option_thinks_first(mocks: dict[str, Server]) -> None:
    body = {"model": "demo", "params": {"prompt": PROMPTS}}
    for text, answer in zip(
        continuations(mocks["reasoning"], body), [CALL, None, None], strict=True
    ):
        thought, closed, rest = text.partition("</think>\n\n")
        assert thought.startswith("<think>\n") and closed
        if answer is not None:
            assert rest == answer
