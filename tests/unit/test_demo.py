"""The embedded demo upstream stops with its thread: nothing of it runs on at interpreter exit."""

from __future__ import annotations

import threading

import httpx
import pytest

from app.demo import running_demo_upstream

REQUEST = {"model": "demo", "params": {"prompt": ["Hello"]}}


def demo_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "demo-upstream"]


def test_the_demo_upstream_answers_then_stops_its_thread_and_port() -> None:
    assert not demo_threads()
    # The client's keep-alive connection is still open when the demo stops.
    with httpx.Client(timeout=5) as client, running_demo_upstream() as url:
        assert client.post(url, json=REQUEST).status_code == 200
        (thread,) = demo_threads()
    assert not thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.post(url, json=REQUEST, timeout=5)
