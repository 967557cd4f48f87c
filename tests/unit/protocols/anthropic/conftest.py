"""An anthropic SDK client whose transport answers with bytes the test chooses."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import anthropic
import httpx2
import pytest

Answer = Callable[[bytes, int, str], anthropic.Anthropic]


@pytest.fixture
def sdk_answering() -> Iterator[Answer]:
    """A client (no retries) that gets `body` with `status` and `content_type` for any request."""
    clients: list[anthropic.Anthropic] = []

    def make(body: bytes, status: int, content_type: str) -> anthropic.Anthropic:
        def handler(_request: httpx2.Request) -> httpx2.Response:
            return httpx2.Response(status, content=body, headers={"content-type": content_type})

        client = anthropic.Anthropic(
            api_key="sk-test",
            base_url="http://127.0.0.1:9",
            max_retries=0,
            http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
