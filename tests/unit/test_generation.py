"""An Ask planned for a model: its template, its tool syntax, its defaults; the plain path
untouched; what a model cannot take refused with a 400 naming the param."""

from __future__ import annotations

from typing import Any

import pytest

from app.config import ModelConfig
from app.errors import InvalidRequest, UnsupportedParameter
from app.generation import Ask, plan_generation
from app.output.spec import OutputSpec
from app.output.types import ToolSpec
from app.routing import ModelRoute, build_route

QUESTION = [{"role": "user", "content": "Weather in Paris?"}]
WEATHER = ToolSpec("get_weather", "Current weather", {"type": "object", "properties": {}})


def route(**fields: Any) -> ModelRoute:
    config = ModelConfig(name="m", api_base="http://127.0.0.1:1/x", **fields)
    return build_route(config, source="test", index=0)


def test_a_plain_ask_renders_exactly_the_template() -> None:
    job = plan_generation(Ask(turns=QUESTION, n=2, stops=("\n",)), route(prompt_template="chatml"))
    expected = "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n"
    assert job.prompts == [expected, expected] and job.counted_prompts == [expected]
    assert job.output is None and job.prefill == "" and job.stops == ("\n",)


def test_the_models_defaults_fill_what_the_client_left_out() -> None:
    model = route(defaults={"max_tokens": 7, "temperature": 0.1, "top_p": 0.5, "top_k": 3})
    job = plan_generation(Ask(turns=QUESTION, temperature=0.9), model)
    assert (job.sampling.max_tokens, job.sampling.temperature) == (7, 0.9)
    assert (job.sampling.top_p, job.sampling.top_k) == (0.5, 3)


@pytest.mark.parametrize(
    ("template", "tool_format", "expected"),
    [
        ("chatml", None, "hermes"),
        ("llama3", None, "llama3_json"),
        ("mistral", None, "mistral"),
        ("raw", None, "hermes"),
        ("llama2", None, "hermes"),
        ("llama3", "pythonic", "pythonic"),
    ],
)
def test_the_tool_format_follows_the_template_unless_set(
    template: str, tool_format: str | None, expected: str
) -> None:
    ask = Ask(turns=QUESTION, spec=OutputSpec(tools=(WEATHER,)))
    job = plan_generation(ask, route(prompt_template=template, tool_format=tool_format))
    assert job.output is not None and job.output.tool_format == expected
    assert "get_weather" in job.prompts[0]
    assert job.reask is not None


def test_a_reasoning_model_reads_even_plain_answers() -> None:
    job = plan_generation(Ask(turns=QUESTION), route(reasoning="think_tags"))
    assert job.output is not None and job.output.reasoning == "think_tags"


def test_tools_for_a_model_without_a_tool_format_are_refused() -> None:
    ask = Ask(turns=QUESTION, spec=OutputSpec(tools=(WEATHER,)))
    with pytest.raises(UnsupportedParameter) as caught:
        plan_generation(ask, route(tool_format="none"))
    assert caught.value.param == "tools"


def test_max_tokens_over_the_cap_names_the_clients_param() -> None:
    ask = Ask(turns=QUESTION, max_tokens=1000, max_tokens_param="max_completion_tokens")
    with pytest.raises(InvalidRequest) as caught:
        plan_generation(ask, route(max_tokens_cap=300))
    assert caught.value.param == "max_completion_tokens"


def test_turns_a_template_cannot_render_are_a_400_naming_where_they_came_from() -> None:
    ask = Ask(turns=[{"role": "assistant", "content": "first"}], messages_param="input")
    with pytest.raises(InvalidRequest) as caught:
        plan_generation(ask, route(prompt_template="llama2"))
    assert caught.value.param == "input"


def test_a_fallback_plans_the_same_ask_for_its_own_model() -> None:
    ask = Ask(turns=QUESTION, spec=OutputSpec(tools=(WEATHER,)))
    job = plan_generation(ask, route(prompt_template="chatml"))
    other = job.retarget(route(prompt_template="mistral"))
    assert other.output is not None and other.output.tool_format == "mistral"
    assert "[TOOL_CALLS]" in other.prompts[0]
