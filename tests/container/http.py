"""HTTP probes of a running proxy: wait for /health, ask the demo model, free loopback ports."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.container.report import CheckFailed, expect

POLL_INTERVAL = 0.1

DEMO_REQUEST: dict[str, Any] = {
    "model": "demo",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 16,
}


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_healthy(
    base_url: str, deadline_seconds: float, why_dead: Callable[[], str | None]
) -> float:
    """Poll GET /health until it answers 200; return the seconds it took.

    `why_dead` returns a reason when the server has exited (no point waiting), else None.
    """
    started = time.monotonic()
    deadline = started + deadline_seconds
    last = "no answer"
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            reason = why_dead()
            if reason is not None:
                raise CheckFailed(f"exited before /health answered: {reason}")
            try:
                response = client.get(f"{base_url}/health")
            except httpx.TransportError as exc:
                last = repr(exc)
            else:
                if response.status_code == 200 and response.json() == {"status": "ok"}:
                    return time.monotonic() - started
                last = f"{response.status_code} {response.text[:200]}"
            time.sleep(POLL_INTERVAL)
    raise CheckFailed(f"/health did not answer 200 within {deadline_seconds:g} s (last: {last})")


def ask_demo(base_url: str) -> str:
    """POST a chat completion for model `demo`; return the answer's text."""
    response = httpx.post(f"{base_url}/v1/chat/completions", json=DEMO_REQUEST, timeout=10.0)
    return check_chat_answer(response.status_code, response.text)


def check_chat_answer(status: int, body: str) -> str:
    """The text of a chat.completion answer for model `demo`, or CheckFailed."""
    expect(status == 200, f"chat completion answered {status}: {body[:300]}")
    answer = json.loads(body)
    expect(answer.get("object") == "chat.completion", f"not a chat.completion: {body[:300]}")
    expect(answer.get("model") == "demo", f"model is not demo: {body[:300]}")
    content = answer["choices"][0]["message"]["content"]
    expect(isinstance(content, str) and content.strip() != "", f"empty answer: {body[:300]}")
    text: str = content
    return text
