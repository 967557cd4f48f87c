"""The embedded demo: bare `serve` (no config, no PROXY_API_BASE) answers model `demo`."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import sdk_client
from tests.e2e.expected import chat_answer
from tests.e2e.servers import Server
from tests.openai_spec import validate_openai

pytestmark = pytest.mark.e2e


def test_bare_serve_says_so_and_answers_demo(demo_proxy: Server) -> None:
    first_line = demo_proxy.log_text().splitlines()[0]
    assert "serving model 'demo' from the built-in mock upstream" in first_line

    with sdk_client(demo_proxy, api_key="anything") as client:
        raw = client.chat.completions.with_raw_response.create(
            model="demo", messages=[{"role": "user", "content": "Hello!"}], temperature=0
        )
        models = [model.id for model in client.models.list()]
    validate_openai("CreateChatCompletionResponse", raw.http_response.json())
    assert raw.parse().choices[0].message.content == chat_answer("demo", "Hello!", temperature=0)
    assert models == ["demo"]
