"""``tests.openai_spec.validate_openai``: responses checked against OpenAI's official OpenAPI spec.

Quick reference: what each schema REQUIRES (spec 2.3.0, ``../shared/openai-openapi/openapi.yaml``).
"nullable" = must be present but may be null; "optional" keys may be omitted.  Extra keys are
allowed everywhere (no ``additionalProperties: false``).

``CreateChatCompletionResponse`` requires ``id`` (str), ``object`` == "chat.completion",
``created`` (int), ``model`` (str), ``choices`` (array).
  * each choice requires ``index`` (int), ``finish_reason`` (one of stop | length | tool_calls |
    content_filter | function_call; NOT null), ``message``, ``logprobs`` (object or null, must be
    present: send ``"logprobs": null``).  A logprobs object requires ``content`` and ``refusal``
    (each an array of ChatCompletionTokenLogprob or null).
  * ``message`` (ChatCompletionResponseMessage) requires ``role`` == "assistant", ``content``
    (str or null), ``refusal`` (str or null, must be present: send ``"refusal": null``).
    Optional ``tool_calls``: each ``{id, type: "function", function: {name, arguments}}``
    (arguments is a JSON *string*), or ``{id, type: "custom", custom: {name, input}}``.
  * optional: ``usage`` (CompletionUsage, not null here), ``system_fingerprint`` (str, NOT
    nullable: omit it rather than send null), ``service_tier`` (auto | default | flex | scale |
    priority | fast | null), ``metadata`` (map of str or null).

``CreateChatCompletionStreamResponse`` (every SSE chunk) requires ``id``, ``object`` ==
"chat.completion.chunk", ``created`` (int), ``model`` (str), ``choices`` (array; may be ``[]``,
as in the final usage chunk).
  * each choice requires ``index`` (int), ``delta`` (object, all keys optional: ``role`` one of
    developer | system | user | assistant | tool, ``content`` str|null, ``refusal`` str|null,
    ``tool_calls`` [{``index`` required, optional id, type "function", function {name,
    arguments}}]), ``finish_reason`` (must be present; null until the last chunk, then one of
    stop | length | tool_calls | content_filter | function_call).
    ``logprobs`` is optional, object-or-null; an object requires ``content`` and ``refusal``.
  * optional: ``usage`` (CompletionUsage or null), ``system_fingerprint`` (str, not null),
    ``service_tier``, ``obfuscation`` (str).

``CompletionUsage`` requires ``prompt_tokens``, ``completion_tokens``, ``total_tokens`` (ints);
optional ``prompt_tokens_details`` / ``completion_tokens_details`` objects of ints.

``CreateCompletionResponse`` (legacy /v1/completions) requires ``id``, ``object`` ==
"text_completion", ``created`` (int), ``model``, ``choices``.
  * each choice requires ``text`` (str), ``index`` (int), ``logprobs`` (object or null, must be
    present), ``finish_reason`` (stop | length | content_filter; NOT null, no tool_calls).
  * optional ``usage`` (CompletionUsage), ``system_fingerprint`` (str, not null).

``ListModelsResponse`` requires ``object`` == "list" and ``data`` (array of Model).

``Model`` requires ``id`` (str), ``object`` == "model", ``created`` (int), ``owned_by`` (str).

``ErrorResponse`` requires ``error``: an ``Error`` which requires ``message`` (str), ``type``
(str), ``param`` (str or null, must be present) and ``code`` (str or null, must be present; an
integer code such as 429 is rejected).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.openai_spec import (
    DEFAULT_SPEC_PATH,
    convert_schema,
    load_schemas,
    openai_errors,
    schemas,
    spec_path,
    validate_openai,
)

CREATED = 1_700_000_000

USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}

CHAT_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-123",
    "object": "chat.completion",
    "created": CREATED,
    "model": "my-model",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello!", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": USAGE,
}

CHAT_COMPLETION_TOOL_CALL: dict[str, Any] = {
    **CHAT_COMPLETION,
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "system_fingerprint": "fp_1",
    "service_tier": None,
}

_CHUNK_BASE = {
    "id": "chatcmpl-123",
    "object": "chat.completion.chunk",
    "created": CREATED,
    "model": "my-model",
}


def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        **_CHUNK_BASE,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


ROLE_CHUNK = _chunk({"role": "assistant", "content": ""})
CONTENT_CHUNK = _chunk({"content": "Hel"})
FINISH_CHUNK = _chunk({}, "stop")
USAGE_CHUNK = {**_CHUNK_BASE, "choices": [], "usage": USAGE}
TOOL_CALL_CHUNK = _chunk(
    {
        "tool_calls": [
            {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}},
        ]
    }
)

COMPLETION = {
    "id": "cmpl-123",
    "object": "text_completion",
    "created": CREATED,
    "model": "my-model",
    "choices": [{"text": "Hello", "index": 0, "logprobs": None, "finish_reason": "length"}],
    "usage": USAGE,
}

MODEL = {"id": "my-model", "object": "model", "created": CREATED, "owned_by": "custom"}
MODELS = {"object": "list", "data": [MODEL, {**MODEL, "id": "other"}]}

ERROR = {
    "error": {
        "message": "Invalid API key",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
}

VALID = [
    ("CreateChatCompletionResponse", CHAT_COMPLETION),
    ("CreateChatCompletionResponse", CHAT_COMPLETION_TOOL_CALL),
    ("CreateChatCompletionStreamResponse", ROLE_CHUNK),
    ("CreateChatCompletionStreamResponse", CONTENT_CHUNK),
    ("CreateChatCompletionStreamResponse", FINISH_CHUNK),
    ("CreateChatCompletionStreamResponse", USAGE_CHUNK),
    ("CreateChatCompletionStreamResponse", TOOL_CALL_CHUNK),
    # `usage` is `$ref + nullable: true` in the chunk schema.
    ("CreateChatCompletionStreamResponse", {**CONTENT_CHUNK, "usage": None}),
    ("CreateCompletionResponse", COMPLETION),
    ("ListModelsResponse", MODELS),
    ("ListModelsResponse", {"object": "list", "data": []}),
    ("Model", MODEL),
    ("ErrorResponse", ERROR),
    ("CompletionUsage", USAGE),
]


@pytest.mark.parametrize(("schema_name", "instance"), VALID)
def test_valid_instances_pass(schema_name: str, instance: dict[str, Any]) -> None:
    before = copy.deepcopy(instance)
    validate_openai(schema_name, instance)
    assert instance == before  # the validator must not touch the instance


DELETE = object()


def _with(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Deep copy of ``base`` with the dotted ``path`` set to ``value`` (or deleted if DELETE)."""
    out = copy.deepcopy(base)
    *parents, last = path.split(".")
    node: Any = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return out


INVALID = [
    # missing required fields
    (
        "CreateChatCompletionResponse",
        _with(CHAT_COMPLETION, "model", DELETE),
        "'model' is a required",
    ),
    (
        "CreateChatCompletionResponse",
        _with(CHAT_COMPLETION, "choices.0.message.refusal", DELETE),
        "'refusal' is a required",
    ),
    (
        "CreateChatCompletionResponse",
        _with(CHAT_COMPLETION, "choices.0.logprobs", DELETE),
        "'logprobs' is a required",
    ),
    (
        "CreateChatCompletionStreamResponse",
        _with(CONTENT_CHUNK, "choices.0.finish_reason", DELETE),
        "'finish_reason' is a required",
    ),
    (
        "CreateChatCompletionStreamResponse",
        _with(USAGE_CHUNK, "usage.total_tokens", DELETE),
        "'total_tokens' is a required",
    ),
    (
        "CreateCompletionResponse",
        _with(COMPLETION, "choices.0.text", DELETE),
        "'text' is a required",
    ),
    ("Model", _with(MODEL, "owned_by", DELETE), "'owned_by' is a required"),
    ("ErrorResponse", _with(ERROR, "error.param", DELETE), "'param' is a required"),
    ("ErrorResponse", {"message": "flat error"}, "'error' is a required"),
    # wrong `object` constants
    (
        "CreateChatCompletionResponse",
        _with(CHAT_COMPLETION, "object", "chat.completion.chunk"),
        "is not one of ['chat.completion']",
    ),
    (
        "CreateChatCompletionStreamResponse",
        _with(CONTENT_CHUNK, "object", "chat.completion"),
        "is not one of ['chat.completion.chunk']",
    ),
    ("CreateCompletionResponse", _with(COMPLETION, "object", "completion"), "'text_completion'"),
    ("ListModelsResponse", _with(MODELS, "object", "models"), "is not one of ['list']"),
    ("Model", _with(MODEL, "object", "models"), "is not one of ['model']"),
    # bad enums
    (
        "CreateChatCompletionResponse",
        _with(CHAT_COMPLETION, "choices.0.finish_reason", "eos"),
        "'eos' is not one of",
    ),
    (
        "CreateChatCompletionStreamResponse",
        _with(FINISH_CHUNK, "choices.0.finish_reason", "eos"),
        "'eos' is not one of",
    ),
    (
        "CreateCompletionResponse",
        _with(COMPLETION, "choices.0.finish_reason", "tool_calls"),
        "'tool_calls' is not one of",
    ),
    (
        "CreateChatCompletionResponse",
        _with(CHAT_COMPLETION, "choices.0.message.role", "user"),
        "'user' is not one of ['assistant']",
    ),
    (
        "CreateChatCompletionStreamResponse",
        _with(ROLE_CHUNK, "choices.0.delta.role", "bot"),
        "'bot' is not one of",
    ),
    # null where not nullable
    (
        "CreateChatCompletionResponse",
        _with(CHAT_COMPLETION, "choices.0.finish_reason", None),
        "None is not of type 'string'",
    ),
    (
        "CreateChatCompletionResponse",
        _with(CHAT_COMPLETION, "system_fingerprint", None),
        "None is not of type 'string'",
    ),
    (
        "CreateChatCompletionResponse",
        _with(CHAT_COMPLETION, "usage", None),
        "None is not of type 'object'",
    ),
    ("CreateChatCompletionStreamResponse", _with(CONTENT_CHUNK, "model", None), "None is not of"),
    ("ErrorResponse", _with(ERROR, "error.message", None), "None is not of type 'string'"),
    ("Model", _with(MODEL, "created", None), "None is not of type 'integer'"),
    # wrong types
    ("Model", _with(MODEL, "created", "1700000000"), "is not of type 'integer'"),
    ("ErrorResponse", _with(ERROR, "error.code", 429), "429 is not valid under any"),
    (
        "CreateChatCompletionResponse",
        _with(CHAT_COMPLETION_TOOL_CALL, "choices.0.message.tool_calls.0.function.arguments", {}),
        "is not valid under",
    ),
    (
        "CreateChatCompletionStreamResponse",
        _with(TOOL_CALL_CHUNK, "choices.0.delta.tool_calls.0.index", DELETE),
        "'index' is a required",
    ),
]


@pytest.mark.parametrize(("schema_name", "instance", "expected"), INVALID)
def test_invalid_instances_fail(schema_name: str, instance: object, expected: str) -> None:
    with pytest.raises(AssertionError) as excinfo:
        validate_openai(schema_name, instance)
    message = str(excinfo.value)
    assert f"OpenAI schema {schema_name}" in message
    assert expected in message


def test_every_violation_is_listed_with_its_path() -> None:
    bad = copy.deepcopy(CHAT_COMPLETION)
    del bad["model"]
    bad["object"] = "chat.completions"
    bad["created"] = "now"
    bad["choices"][0]["finish_reason"] = "done"
    del bad["choices"][0]["message"]["refusal"]
    errors = openai_errors("CreateChatCompletionResponse", bad)
    assert len(errors) == 5
    text = "\n".join(errors)
    for fragment in (
        "$: 'model' is a required property",
        "$.object: 'chat.completions' is not one of",
        "$.created: 'now' is not of type 'integer'",
        "$.choices[0].finish_reason: 'done' is not one of",
        "$.choices[0].message: 'refusal' is a required property",
    ):
        assert fragment in text
    with pytest.raises(AssertionError, match=r"^5 violation\(s\) of OpenAI schema"):
        validate_openai("CreateChatCompletionResponse", bad)


def test_anyof_failure_explains_each_alternative() -> None:
    chunk = _with(CONTENT_CHUNK, "choices.0.logprobs", {"content": None})
    (error,) = openai_errors("CreateChatCompletionStreamResponse", chunk)
    assert "$.choices[0].logprobs" in error
    assert "'refusal' is a required property" in error
    assert "is not of type 'null'" in error


def test_unknown_schema_name() -> None:
    with pytest.raises(KeyError, match="CreateChatCompletionResponse"):
        validate_openai("CreateChatCompletionRespons", {})


def _nullable_flags(node: Any) -> Any:
    if isinstance(node, dict):
        if isinstance(node.get("nullable"), bool):
            yield node
        for value in node.values():
            yield from _nullable_flags(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nullable_flags(value)


def test_default_spec_location_and_conversion() -> None:
    assert DEFAULT_SPEC_PATH.parts[-3:] == ("shared", "openai-openapi", "openapi.yaml")
    if not os.environ.get("OPENAI_OPENAPI_SPEC"):
        assert spec_path() == DEFAULT_SPEC_PATH
    converted = schemas()
    assert len(converted) > 1000
    assert not list(_nullable_flags(converted))
    # repeated calls return the very same (process-cached) object
    assert schemas() is converted


# ---------------------------------------------------------------------------------------------
# nullable conversion and the on-disk cache, on a tiny synthetic spec
# ---------------------------------------------------------------------------------------------


def test_convert_schema_rewrites_nullable_recursively_without_mutating() -> None:
    original = {
        "type": "object",
        "description": "dropped",
        "required": ["a"],
        "properties": {
            "a": {"type": "string", "enum": ["x"], "nullable": True},
            "b": {"$ref": "#/components/schemas/B", "nullable": True},
            "c": {"type": "array", "items": {"type": "integer", "nullable": True}},
            "d": {"anyOf": [{"type": "object", "nullable": True, "properties": {}}]},
            "e": {"type": "string", "nullable": False},
            # property *names* that look like keywords are kept
            "nullable": {"type": "boolean"},
            "description": {"type": "string", "example": "dropped"},
        },
        "enum": [{"nullable": True}],  # keyword values are copied verbatim
    }
    snapshot = copy.deepcopy(original)
    out = convert_schema(original)
    assert original == snapshot
    null = {"type": "null"}
    props = out["properties"]
    assert props["a"] == {"anyOf": [{"type": "string", "enum": ["x"]}, null]}
    assert props["b"] == {"anyOf": [{"$ref": "#/components/schemas/B"}, null]}
    assert props["c"]["items"] == {"anyOf": [{"type": "integer"}, null]}
    assert props["d"]["anyOf"][0] == {"anyOf": [{"type": "object", "properties": {}}, null]}
    assert props["e"] == {"type": "string"}
    assert props["nullable"] == {"type": "boolean"}
    assert props["description"] == {"type": "string"}
    assert "description" not in out
    assert out["enum"] == [{"nullable": True}]


TINY_SPEC = """\
openapi: 3.1.0
info: {title: tiny, version: "1"}
paths: {}
components:
  schemas:
    Thing:
      type: object
      required: [name, parent]
      properties:
        name: {type: string}
        parent:
          $ref: '#/components/schemas/Parent'
          nullable: true
        created: {type: string, format: date, example: 2024-01-01}
    Parent:
      type: object
      required: [id]
      properties:
        id: {type: integer, nullable: true}
"""


@pytest.fixture
def tiny_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    cache = tmp_path / "cache"
    monkeypatch.setenv("OPENAI_OPENAPI_SPEC", str(spec))
    monkeypatch.setenv("OPENAI_OPENAPI_SPEC_CACHE_DIR", str(cache))
    return spec, cache


def test_env_var_selects_the_spec(tiny_spec: tuple[Path, Path]) -> None:
    spec, cache = tiny_spec
    assert spec_path() == spec.resolve()
    validate_openai("Thing", {"name": "t", "parent": None})
    validate_openai("Thing", {"name": "t", "parent": {"id": None}})
    with pytest.raises(AssertionError) as excinfo:
        validate_openai("Thing", {"name": None, "parent": {}})
    assert "$.name: None is not of type 'string'" in str(excinfo.value)
    assert "'id' is a required property" in str(excinfo.value)
    assert len(list(cache.glob("components-*.json"))) == 1


def test_cache_is_written_reused_and_rebuilt_when_corrupt(tiny_spec: tuple[Path, Path]) -> None:
    spec, cache = tiny_spec
    fresh = load_schemas(spec, cache)
    (file,) = cache.glob("components-*.json")
    assert json.loads(file.read_text())["schemas"] == fresh

    # a valid cache is used as is (prove it by planting a recognisable marker)
    data = json.loads(file.read_text())
    data["schemas"]["Marker"] = {"type": "string"}
    file.write_text(json.dumps(data))
    assert "Marker" in load_schemas(spec, cache)

    for garbage in (b"{not json", b"\xff\xfe\x00", b"[]", b'{"format": 1}', b""):
        file.write_bytes(garbage)
        assert load_schemas(spec, cache) == fresh
        assert json.loads(file.read_text())["schemas"] == fresh  # rewritten

    # a changed spec (size/mtime) gets a new key; the stale file is removed
    spec.write_text(TINY_SPEC + "    Extra: {type: integer}\n")
    changed = load_schemas(spec, cache)
    assert "Extra" in changed
    (new_file,) = cache.glob("components-*.json")
    assert new_file != file


def test_unwritable_cache_dir_is_not_fatal(tiny_spec: tuple[Path, Path]) -> None:
    spec, _ = tiny_spec
    blocker = spec.parent / "not-a-dir"
    blocker.write_text("")
    assert "Thing" in load_schemas(spec, blocker / "cache")
    assert "Thing" in load_schemas(spec, None)


def test_missing_spec_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="OPENAI_OPENAPI_SPEC"):
        load_schemas(tmp_path / "absent.yaml", None)
