"""The custom format both ways: the seed's exact shapes, and every way an upstream answer fails."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from app import errors
from app.schemas.custom import Sampling, parse_custom_response, to_custom_request

DATA = Path(__file__).resolve().parents[1] / "data"
SEED = json.loads((DATA / "seed_custom_format.json").read_text(encoding="utf-8"))
FAILURES = json.loads((DATA / "custom_response_failures.json").read_text(encoding="utf-8"))["cases"]


def _body(case: dict[str, Any]) -> bytes:
    if "json" in case:
        return json.dumps(case["json"]).encode()
    return case["body"].encode()


def test_request_is_the_seeds_request_shape_byte_for_byte() -> None:
    sampling = Sampling(max_tokens=32, temperature=0.7, top_p=1.0, top_k=40)

    body = to_custom_request("meta-llama/Llama-2-13b-hf", ["The capital of France is P"], sampling)

    assert body == (
        b'{"model":"meta-llama/Llama-2-13b-hf","params":{"prompt":["The capital of France is P"],'
        b'"max_tokens":32,"temperature":0.7,"top_p":1.0,"top_k":40}}'
    )
    decoded = json.loads(body)
    assert decoded == SEED["request"]
    # Same keys in the same order as the seed's example, at both levels.
    assert list(decoded) == list(SEED["request"])
    assert list(decoded["params"]) == list(SEED["request"]["params"])


def test_request_carries_every_prompt_in_order_and_non_ascii_text() -> None:
    sampling = Sampling(max_tokens=5, temperature=0.0, top_p=0.5, top_k=-1)

    body = to_custom_request("m", ["première", "二番目", "third"], sampling)

    assert json.loads(body) == {
        "model": "m",
        "params": {
            "prompt": ["première", "二番目", "third"],
            "max_tokens": 5,
            "temperature": 0.0,
            "top_p": 0.5,
            "top_k": -1,
        },
    }


def test_a_small_request_body_takes_no_more_memory_than_its_bytes() -> None:
    """A request holds its body for the whole upstream call: thousands are in flight at once.
    orjson's own bytes keep the 4 KiB buffer they were written in (measured, orjson 3.13)."""
    sampling = Sampling(max_tokens=32, temperature=0.7, top_p=1.0, top_k=40)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        bodies = [to_custom_request("m", [f"prompt {n}"], sampling) for n in range(100)]
        per_body = (tracemalloc.get_traced_memory()[0] - before) / len(bodies)
    finally:
        tracemalloc.stop()
    assert per_body < 2 * len(bodies[0]) + 100, per_body


def test_seeds_example_response_gives_its_output() -> None:
    body = json.dumps(SEED["response"]).encode()

    outputs = parse_custom_response(200, body, expected=1)

    assert outputs == [SEED["response"]["data"][0]["output"][0]]
    assert outputs[0].startswith("The capital of France is PARIS.\n")


def test_outputs_come_back_in_data_order_first_output_only() -> None:
    body = json.dumps(
        {
            "data": [
                {"prompt": "a", "output": ["a 1", "a 2"]},
                {"prompt": "b", "output": ["b 1"]},
                {"prompt": "c", "output": [""]},
            ],
            "message": "ok",
        }
    ).encode()

    assert parse_custom_response(200, body, expected=3) == ["a 1", "b 1", ""]


@pytest.mark.parametrize("case", FAILURES, ids=[case["id"] for case in FAILURES])
def test_broken_upstream_answer_maps_to_the_right_error(case: dict[str, Any]) -> None:
    with pytest.raises(errors.UpstreamError) as caught:
        parse_custom_response(case["status"], _body(case), expected=case["expected"])

    error = caught.value
    assert type(error) is getattr(errors, case["error"])
    assert error.status == case["http_status"]
    assert error.code == case["code"]
    for fragment in case["message_contains"]:
        assert fragment in error.message
    envelope = error.envelope()["error"]
    assert envelope["message"] == error.message
    assert envelope["code"] == case["code"]


def test_failure_table_covers_every_status_class() -> None:
    statuses = {case["http_status"] for case in FAILURES}
    assert statuses == {429, 502, 503, 504}


@pytest.mark.parametrize("status", [400, 500, 503])
def test_long_error_body_is_truncated_to_200_bytes(status: int) -> None:
    body = b"e" * 150 + b"X" * 1000

    with pytest.raises(errors.UpstreamError) as caught:
        parse_custom_response(status, body, expected=1)

    message = caught.value.message
    assert message == f"upstream answered HTTP {status}: " + "e" * 150 + "X" * 50 + "…"
    assert "X" * 51 not in message


def test_long_invalid_json_body_is_truncated() -> None:
    body = b"not json " + b"z" * 5000

    with pytest.raises(errors.UpstreamBadResponse) as caught:
        parse_custom_response(200, body, expected=1)

    message = caught.value.message
    assert "invalid JSON" in message
    assert message.endswith("z" * (200 - len(b"not json ")) + "…")
    assert len(message) < 300


def test_body_of_exactly_200_bytes_is_not_marked_truncated() -> None:
    with pytest.raises(errors.UpstreamBadResponse) as caught:
        parse_custom_response(500, b"y" * 200, expected=1)

    assert caught.value.message.endswith("y" * 200)
    assert "…" not in caught.value.message


def test_long_failure_message_from_upstream_is_truncated() -> None:
    body = json.dumps({"data": [], "message": "m" * 1000}).encode()

    with pytest.raises(errors.UpstreamBadResponse) as caught:
        parse_custom_response(200, body, expected=0)

    message = caught.value.message
    assert message.startswith("upstream reported failure: message='mmm")
    assert message.endswith("…")
    assert len(message) < 260


def test_binary_error_body_is_shown_with_replacement_characters() -> None:
    with pytest.raises(errors.UpstreamBadResponse) as caught:
        parse_custom_response(500, b"\xff\xfeoops", expected=1)

    assert caught.value.message == "upstream answered HTTP 500: \ufffd\ufffdoops"
