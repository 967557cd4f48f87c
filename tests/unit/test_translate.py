"""app/translate.py as data in, data out; built answers validated against OpenAI's schema."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.config import SamplingDefaults
from app.errors import InvalidRequest, UnsupportedParameter
from app.protocols.openai.answers import AnswerHead, to_chat_completion, to_text_completion
from app.protocols.openai.schemas import ChatCompletionRequest, ChatMessage, CompletionRequest
from app.protocols.openai.translate import (
    chat_max_tokens,
    check_chat_features,
    completion_prompts,
    to_turns,
)
from app.routes._request import parse_body
from app.schemas.custom import Sampling
from app.tokens import EstimateCounter
from app.translate import (
    Choice,
    apply_stop,
    finish_choice,
    resolve_sampling,
    stop_sequences,
    strip_echo,
    usage,
)
from tests.openai_spec import validate_openai

CASES = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "translate_cases.json").read_text("utf-8")
)
USER = {"role": "user", "content": "Hi"}
DEFAULTS = SamplingDefaults(max_tokens=256, temperature=0.7, top_p=1.0, top_k=40)


def chat(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": [USER], **fields})


def legacy(**fields: Any) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "m", "prompt": "p", **fields})


def _ids(section: str) -> list[str]:
    return [case["id"] for case in CASES[section]]


# --- check_chat_features ------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES["unsupported_chat"], ids=_ids("unsupported_chat"))
def test_unsupported_chat_feature_is_refused_naming_the_param(case: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        check_chat_features(chat(**case["extra"]))

    error = caught.value
    assert error.param == case["param"]
    assert error.status == 400
    assert error.code == "unsupported_parameter"
    assert error.envelope()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("case", CASES["supported_chat"], ids=_ids("supported_chat"))
def test_harmless_chat_fields_pass(case: dict[str, Any]) -> None:
    assert check_chat_features(chat(**case["extra"])) is None


# --- to_turns (plain messages) ------------------------------------------------------------------


def test_flatten_keeps_roles_names_and_string_content() -> None:
    messages = [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="Hi", name="ann"),
        ChatMessage(role="assistant", content=None),
    ]

    assert to_turns(messages) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi", "name": "ann"},
        {"role": "assistant", "content": ""},
    ]


def test_flatten_joins_text_parts_with_newlines() -> None:
    request = chat(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "first"},
                    {"type": "text", "text": "second"},
                    {"type": "text", "text": ""},
                ],
            }
        ]
    )

    assert to_turns(request.messages) == [{"role": "user", "content": "first\nsecond\n"}]


@pytest.mark.parametrize(
    ("part", "kind"),
    [
        ({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}, "image_url"),
        ({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}, "input_audio"),
        ({"type": "file", "file": {"file_id": "f"}}, "file"),
    ],
)
def test_non_text_part_is_refused_naming_its_position(part: dict[str, Any], kind: str) -> None:
    request = chat(
        messages=[
            {"role": "system", "content": "s"},
            {"role": "user", "content": "q"},
            {"role": "user", "content": [{"type": "text", "text": "look:"}, part]},
        ]
    )

    with pytest.raises(UnsupportedParameter) as caught:
        to_turns(request.messages)

    assert caught.value.param == "messages[2].content[1].type"
    assert caught.value.status == 400
    assert f"'{kind}'" in caught.value.message


# --- completion_prompts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("once upon", ["once upon"]),
        ("", [""]),
        (["a", "b", "c"], ["a", "b", "c"]),
        (["only"], ["only"]),
    ],
)
def test_completion_prompts_as_strings(prompt: Any, expected: list[str]) -> None:
    assert completion_prompts(legacy(prompt=prompt)) == expected


@pytest.mark.parametrize("prompt", [[1, 2, 3], [[1, 2], [3]]])
def test_token_id_prompts_are_refused(prompt: Any) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        completion_prompts(legacy(prompt=prompt))

    assert caught.value.param == "prompt"
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"suffix": "end"}, "suffix"),
        ({"logprobs": 0}, "logprobs"),
        ({"logprobs": 5}, "logprobs"),
        ({"best_of": 2}, "best_of"),
        ({"best_of": 3, "n": 2}, "best_of"),
    ],
)
def test_legacy_features_that_cannot_be_honoured(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        completion_prompts(legacy(**fields))

    assert caught.value.param == param
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "fields", [{"suffix": ""}, {"best_of": 1}, {"best_of": 2, "n": 2}, {"echo": True}]
)
def test_legacy_fields_that_change_nothing_pass(fields: dict[str, Any]) -> None:
    assert completion_prompts(legacy(**fields)) == ["p"]


def test_empty_prompt_list_is_refused() -> None:
    # Through parse_body too, so the test passes whichever layer gets the fix.
    with pytest.raises(InvalidRequest) as caught:
        completion_prompts(parse_body(CompletionRequest, b'{"model": "m", "prompt": []}'))

    assert caught.value.param == "prompt"


def test_text_part_without_text_gets_an_accurate_message() -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]}'
    with pytest.raises(InvalidRequest) as caught:
        to_turns(parse_body(ChatCompletionRequest, body).messages)

    assert caught.value.param == "messages[0].content[0].text"
    assert "type 'text' are not supported" not in caught.value.message


# --- resolve_sampling & chat_max_tokens ---------------------------------------------------------


def test_defaults_fill_every_gap() -> None:
    request = chat()

    assert resolve_sampling(request, DEFAULTS, chat_max_tokens(request)) == Sampling(
        max_tokens=256, temperature=0.7, top_p=1.0, top_k=40
    )


def test_request_values_win_over_defaults_including_zeros() -> None:
    # top_k is not OpenAI's: the SDK's extra_body puts it at the top level of the body.
    request = chat(max_tokens=10, temperature=0.0, top_p=0.0, top_k=0)

    assert resolve_sampling(request, DEFAULTS, chat_max_tokens(request)) == Sampling(
        max_tokens=10, temperature=0.0, top_p=0.0, top_k=0
    )


def test_top_k_from_extra_body() -> None:
    request = ChatCompletionRequest.model_validate_json(
        b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "top_k": 5}'
    )

    assert resolve_sampling(request, DEFAULTS, None).top_k == 5


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, None),
        ({"max_tokens": 7}, 7),
        ({"max_completion_tokens": 9}, 9),
        ({"max_tokens": 7, "max_completion_tokens": 9}, 9),
        ({"max_tokens": 9, "max_completion_tokens": 7}, 7),
    ],
)
def test_max_completion_tokens_wins(fields: dict[str, Any], expected: int | None) -> None:
    assert chat_max_tokens(chat(**fields)) == expected


def test_legacy_max_tokens_goes_through_resolve_sampling() -> None:
    request = legacy(max_tokens=12, temperature=1.5)

    assert resolve_sampling(request, DEFAULTS, request.max_tokens) == Sampling(
        max_tokens=12, temperature=1.5, top_p=1.0, top_k=40
    )


# --- stop_sequences, strip_echo, apply_stop -----------------------------------------------------


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        (None, ()),
        ("\n", ("\n",)),
        ("", ()),
        (["a", "", "b"], ("a", "b")),
        ([], ()),
    ],
)
def test_stop_sequences(stop: Any, expected: tuple[str, ...]) -> None:
    assert stop_sequences(stop) == expected


@pytest.mark.parametrize("case", CASES["strip_echo"], ids=_ids("strip_echo"))
def test_strip_echo(case: dict[str, Any]) -> None:
    assert strip_echo(case["output"], case["prompt"], case["mode"]) == case["expected"]


@pytest.mark.parametrize("case", CASES["apply_stop"], ids=_ids("apply_stop"))
def test_apply_stop(case: dict[str, Any]) -> None:
    assert apply_stop(case["text"], case["stops"]) == (case["expected"], case["matched"])


# --- finish_choice & usage ----------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES["finish_choice"], ids=_ids("finish_choice"))
def test_finish_choice(case: dict[str, Any]) -> None:
    choice = finish_choice(
        3,
        case["output"],
        case["prompt"],
        strip=case["strip"],
        stops=tuple(case["stops"]),
        max_tokens=case["max_tokens"],
        counter=EstimateCounter(),
        chat=case["chat"],
    )

    assert choice == Choice(index=3, **case["expected"])


def test_usage_counts_the_prompt_once_and_sums_completions() -> None:
    choices = [Choice(0, "a", "stop", 4), Choice(1, "b", "length", 6), Choice(2, "", "stop", 0)]

    assert usage(11, choices) == {
        "prompt_tokens": 11,
        "completion_tokens": 10,
        "total_tokens": 21,
    }


def test_usage_without_choices() -> None:
    assert usage(5, []) == {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5}


# --- to_chat_completion / to_text_completion ----------------------------------------------------

CHOICES = [Choice(0, "Paris.", "stop", 2), Choice(1, "Paris is the", "length", 3)]
HEAD = AnswerHead(
    id="chatcmpl-abc",
    created=1_700_000_000,
    model="custom/meta-llama/Llama-2-13b-hf",
    fingerprint="fp_custom",
)


def test_chat_completion_exact_shape() -> None:
    answer = to_chat_completion(HEAD, CHOICES, usage(7, CHOICES))

    assert answer == {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "custom/meta-llama/Llama-2-13b-hf",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Paris.",
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            },
            {
                "index": 1,
                "message": {
                    "role": "assistant",
                    "content": "Paris is the",
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "length",
            },
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12},
        "system_fingerprint": "fp_custom",
    }
    validate_openai("CreateChatCompletionResponse", answer)


def test_text_completion_exact_shape() -> None:
    answer = to_text_completion(replace(HEAD, id="cmpl-abc"), CHOICES, usage(7, CHOICES))

    assert answer == {
        "id": "cmpl-abc",
        "object": "text_completion",
        "created": 1_700_000_000,
        "model": "custom/meta-llama/Llama-2-13b-hf",
        "choices": [
            {"index": 0, "text": "Paris.", "logprobs": None, "finish_reason": "stop"},
            {"index": 1, "text": "Paris is the", "logprobs": None, "finish_reason": "length"},
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12},
        "system_fingerprint": "fp_custom",
    }
    validate_openai("CreateCompletionResponse", answer)


def test_schema_check_is_not_vacuous() -> None:
    answer = to_chat_completion(HEAD, CHOICES, usage(7, CHOICES))
    del answer["choices"][0]["message"]["refusal"]

    with pytest.raises(AssertionError, match="refusal"):
        validate_openai("CreateChatCompletionResponse", answer)
