"""Responses requests planned for real models: the Ask the front door builds is one every
template and tool syntax takes, with the hosted tools nowhere in the prompt."""

from __future__ import annotations

from typing import Any

import pytest

from app.config import ModelConfig
from app.errors import InvalidRequest
from app.generation import plan_generation
from app.protocols.responses.schemas import CreateResponse
from app.protocols.responses.translate import to_ask
from app.routing import ModelRoute, build_route

# What Codex sends on its second turn, cut down: instructions, a developer message, hosted
# tools beside a function tool, the earlier call and its output, an encrypted reasoning item.
AGENT_TURN = {
    "model": "m",
    "instructions": "You are a coding agent.",
    "input": [
        {
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "cwd is /src"}],
        },
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "list the files"}],
        },
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "shell",
            "arguments": '{"command": ["ls"]}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "README.md\nsetup.py"},
    ],
    "tools": [
        {
            "type": "function",
            "name": "shell",
            "description": "Run a command",
            "strict": False,
            "parameters": {
                "type": "object",
                "properties": {"command": {"type": "array", "items": {"type": "string"}}},
                "required": ["command"],
                "additionalProperties": False,
            },
        },
        {"type": "web_search"},
        {
            "type": "custom",
            "name": "apply_patch",
            "description": "Patch files",
            "format": {"type": "text"},
        },
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "abc",
    "text": {"verbosity": "medium"},
}


def route(**fields: Any) -> ModelRoute:
    config = ModelConfig(name="m", api_base="http://127.0.0.1:1/x", **fields)
    return build_route(config, source="test", index=0)


@pytest.mark.parametrize("template", ["chatml", "llama3", "mistral", "raw", "llama2"])
def test_an_agents_turn_renders_with_every_template(template: str) -> None:
    job = plan_generation(
        to_ask(CreateResponse.model_validate(AGENT_TURN)), route(prompt_template=template)
    )
    prompt = job.prompts[0]
    for text in ("You are a coding agent.", "cwd is /src", "list the files", "shell", "setup.py"):
        assert text in prompt
    assert "web_search" not in prompt and "apply_patch" not in prompt and "gAAA" not in prompt
    assert job.output is not None and job.output.parallel_tool_calls is False


def test_a_plain_request_keeps_the_plain_path() -> None:
    ask = to_ask(
        CreateResponse.model_validate({"model": "m", "instructions": "Be brief.", "input": "hi"})
    )
    job = plan_generation(ask, route(prompt_template="chatml"))
    assert job.prompts == [
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ]
    assert job.output is None


def test_max_output_tokens_above_the_models_cap_names_the_param() -> None:
    ask = to_ask(
        CreateResponse.model_validate({"model": "m", "input": "hi", "max_output_tokens": 900})
    )
    with pytest.raises(InvalidRequest) as caught:
        plan_generation(ask, route(max_tokens_cap=100, defaults={"max_tokens": 50}))
    assert caught.value.param == "max_output_tokens"
