"""The mock upstream as a tool-using model: prompts in, continuations out, as data.

The prompts follow the conventions of the proxy's tool prompts (issue 14's design, "MARKERS"),
written here by hand and rendered by the real built-in templates: the instruction of each tool
format (with its result marker in the example text, as a trap), the tools as one-line JSON,
earlier calls in the format's syntax, tool results wrapped in the format's result marker (or
bare in chatml's `tool` and llama3's `ipython` turns), results as user turns for mistral.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import cli, mock_upstream
from app.mock_upstream import FaultPlan, complete, create_mock_app
from app.mock_upstream.tools import (
    MAX_PREFILL,
    RESULT_CHARS,
    Planned,
    continue_answer,
    overlap,
    plan_answer,
)
from app.prompts import compile_template
from app.tokens import estimate_tokens

DATA = json.loads((Path(__file__).parents[2] / "data/mock_upstream/tool_answers.json").read_text())
TEMPLATES = ("chatml", "llama3", "mistral", "raw")
FORMATS = ("hermes", "llama3_json", "mistral", "pythonic")

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city, e.g. Paris"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city", "unit"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_web",
            "description": "Search the web for pages about a query",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                    "max_results": {"type": "integer", "minimum": 3, "maximum": 10},
                },
                "required": ["query", "max_results"],
            },
        },
    },
]
SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "temperature": {"type": "number"},
        "conditions": {"enum": ["sunny", "rainy"]},
    },
    "required": ["city", "temperature", "conditions"],
    "additionalProperties": False,
}
JSON_ASK = "Answer with a single JSON object that matches this JSON schema: " + json.dumps(SCHEMA)
RESULT = '{"temperature": 21, "sky": "clear"}'
QUESTION = "What is the weather like in Paris today?"

# Each format's instruction: its marker, its result marker in the text (a trap), and an example
# call to the first tool (as the proxy writes it: a real name, placeholder arguments).
INSTRUCTIONS = {
    "hermes": 'To call a function, write <tool_call>\n{"name": <function-name>, "arguments": '
    "<args-json-object>}\n</tool_call>\nResults come back in <tool_response></tool_response>."
    '\nFor example:\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "value", '
    '"unit": "celsius"}}\n</tool_call>',
    "llama3_json": 'Respond in the format {"name": function name, "parameters": dictionary of '
    "argument name and its value}. Results come back in <tool_response></tool_response>.\n"
    'For example:\n{"name": "get_weather", "parameters": {"city": "value", "unit": "celsius"}}',
    "mistral": 'To call functions, write [TOOL_CALLS][{"name": <name>, "arguments": <object>}]. '
    'Results come back after [TOOL_RESULTS].\nFor example:\n[TOOL_CALLS][{"name": '
    '"get_weather", "arguments": {"city": "value", "unit": "celsius"}}]',
    "pythonic": "To call functions, write [func_name1(params_name1=params_value1, "
    "params_name2=params_value2...), func_name2(params)]. Results come back in <tool_response>."
    '\nFor example:\n[get_weather(city="value", unit="celsius")]',
}
PREFILLS = {  # named (search_web) and required, as in the design
    "hermes": ('<tool_call>\n{"name": "search_web", "arguments": ', "<tool_call>\n"),
    "llama3_json": ('{"name": "search_web", "parameters": ', '{"name": "'),
    "mistral": ('[TOOL_CALLS][{"name": "search_web", "arguments": ', "[TOOL_CALLS]"),
    "pythonic": ("[search_web(", "["),
}


def system(tool_format: str | None, *, json_ask: str | None = None) -> dict[str, str]:
    parts = ["You are a helpful assistant."]
    if json_ask:
        parts.append(json_ask)
    if tool_format:
        parts += ["You may call these functions:", *map(json.dumps, TOOLS)]
        parts.append(INSTRUCTIONS[tool_format])
    return {"role": "system", "content": "\n".join(parts)}


def call(tool_format: str, name: str, arguments: dict[str, Any]) -> dict[str, str]:
    if tool_format == "pythonic":
        listed = ", ".join(f"{k}={json.dumps(v)}" for k, v in arguments.items())
        text = f"[{name}({listed})]"
    else:
        key = "parameters" if tool_format == "llama3_json" else "arguments"
        text = json.dumps({"name": name, key: arguments})
        text = {
            "hermes": f"<tool_call>\n{text}\n</tool_call>",
            "mistral": f"[TOOL_CALLS][{text}]",
        }.get(tool_format, text)
    return {"role": "assistant", "content": text}


def result(template: str, tool_format: str, content: str, *, bare: bool) -> dict[str, str]:
    role = "user" if template == "mistral" else "tool"  # mistral: results are user turns
    if bare and template in ("chatml", "llama3"):
        return {"role": role, "content": content}  # the role marker alone precedes it
    if tool_format == "mistral":
        return {"role": role, "content": f"[TOOL_RESULTS]{content}[/TOOL_RESULTS]"}
    return {"role": role, "content": f"<tool_response>\n{content}\n</tool_response>"}


def render(template: str, messages: Sequence[dict[str, str]], prefill: str = "") -> str:
    return compile_template(template).render(messages) + prefill


def tool_prompt(template: str, tool_format: str, scenario: str, *, bare: bool = False) -> str:
    weather = call(tool_format, "get_weather", {"city": "Paris", "unit": "celsius"})
    answered = [weather, result(template, tool_format, RESULT, bare=bare)]
    first = [system(tool_format), {"role": "user", "content": QUESTION}]
    named, required = PREFILLS[tool_format]
    match scenario:
        case "first_call":
            return render(template, first)
        case "best_matching_tool":
            asked = {"role": "user", "content": "Search the web for Ada Lovelace"}
            return render(template, [system(tool_format), asked])
        case "parallel_calls":
            asked = {"role": "user", "content": "Use search_web and get_weather for Paris."}
            return render(template, [system(tool_format), asked])
        case "after_result":
            return render(template, first + answered)
        case "new_question_after_result":
            said = {"role": "assistant", "content": "It is 21 degrees and clear."}
            again = {"role": "user", "content": "And what about Berlin?"}
            return render(template, [*first, *answered, said, again])
        case "named_prefill":
            return render(template, first, named)
        case "required_prefill":
            return render(template, first, required)
        case "required_prefill_after_result":
            return render(template, first + answered, required)
        case "json_after_result":
            asked = [system(tool_format, json_ask=JSON_ASK), first[1]]
            return render(template, asked + answered)
    raise AssertionError(scenario)


def json_prompt(template: str, scenario: str) -> str:
    question = {"role": "user", "content": "Describe the weather in Paris as JSON."}
    object_ask = "Answer with a single JSON object."
    match scenario:
        case "json_schema":
            return render(template, [system(None, json_ask=JSON_ASK), question])
        case "json_schema_prefilled":
            return render(template, [system(None, json_ask=JSON_ASK), question], "{")
        case "json_object":
            return render(template, [system(None, json_ask=object_ask), question])
        case "json_object_after_result":
            answered = [
                call("hermes", "get_weather", {}),
                result(template, "hermes", RESULT, bare=False),
            ]
            asked = [system(None, json_ask=object_ask), question]
            return render(template, asked + answered)
        case "no_tools_no_json":
            return render(template, [system(None), question])
        case "tools_without_format_marker":
            tools = "Functions:\n" + "\n".join(map(json.dumps, TOOLS))
            return render(template, [{"role": "system", "content": tools}, question])
    raise AssertionError(scenario)


def continuation(prompt: str, *, reasoning: bool = False) -> str | None:
    planned = plan_answer(prompt)
    return None if planned is None else continue_answer(prompt, planned, reasoning=reasoning)


TOOL_CASES = [
    pytest.param(
        template, tool_format, scenario, expected, id=f"{scenario}-{template}-{tool_format}"
    )
    for scenario, expected_by_format in DATA["scenarios"].items()
    for tool_format, expected in expected_by_format.items()
    for template in TEMPLATES
]


@pytest.mark.parametrize(("template", "tool_format", "scenario", "expected"), TOOL_CASES)
def test_tool_prompts(template: str, tool_format: str, scenario: str, expected: str) -> None:
    prompt = tool_prompt(template, tool_format, scenario)
    assert continuation(prompt) == expected


@pytest.mark.parametrize("template", ["chatml", "llama3"])
@pytest.mark.parametrize("tool_format", FORMATS)
def test_bare_results_in_tool_turns(template: str, tool_format: str) -> None:
    prompt = tool_prompt(template, tool_format, "after_result", bare=True)
    assert continuation(prompt) == f"The tool returned: {RESULT}"


@pytest.mark.parametrize(
    ("template", "scenario", "expected"),
    [
        pytest.param(template, scenario, expected, id=f"{scenario}-{template}")
        for scenario, expected in DATA["json_scenarios"].items()
        for template in TEMPLATES
    ],
)
def test_json_prompts(template: str, scenario: str, expected: str | None) -> None:
    assert continuation(json_prompt(template, scenario)) == expected


def test_raw_prompt_with_a_bare_result_at_the_end_has_it_in() -> None:
    """Raw prompts have no turns: text after a result's closing marker is a new question, and
    a result without one runs to the end of the prompt."""
    messages = [
        system("hermes"),
        {"role": "user", "content": QUESTION},
        call("hermes", "get_weather", {"city": "Paris", "unit": "celsius"}),
        {"role": "tool", "content": "<tool_response>\n21 degrees"},
    ]
    assert continuation(render("raw", messages)) == "The tool returned: 21 degrees"


def test_calls_in_the_prompt_are_not_tools() -> None:
    """An earlier call in OpenAI's shape (`arguments`, no `parameters`) is not offered."""
    call_json = {"type": "function", "function": {"name": "delete_all", "arguments": {}}}
    prompt = tool_prompt("chatml", "hermes", "first_call") + json.dumps(call_json)
    assert "delete_all" not in (continuation(prompt) or "")


def test_tools_rendered_with_indent_are_found() -> None:
    """Jinja templates may render tools with `tojson(indent=4)` (Llama 3.1's does)."""
    indented = "\n\n".join(json.dumps(tool, indent=4) for tool in TOOLS)
    instruction = INSTRUCTIONS["llama3_json"]
    messages = [
        {"role": "user", "content": f"{instruction}\n\n{indented}\n\n{QUESTION}"},
    ]
    prompt = render("llama3", messages)
    expected = DATA["scenarios"]["first_call"]["llama3_json"]
    assert continuation(prompt) == expected


def test_a_long_result_is_quoted_in_part() -> None:
    long = "x" * (RESULT_CHARS + 50)
    messages = [
        system("hermes"),
        {"role": "user", "content": QUESTION},
        call("hermes", "get_weather", {"city": "Paris", "unit": "celsius"}),
        result("chatml", "hermes", long, bare=False),
    ]
    assert continuation(render("chatml", messages)) == f"The tool returned: {long[:RESULT_CHARS]}…"


# Reasoning


def test_reasoning_thinks_before_a_call() -> None:
    prompt = tool_prompt("chatml", "hermes", "first_call")
    text = continuation(prompt, reasoning=True)
    assert text is not None
    thought, _, answer = text.partition("</think>\n\n")
    assert thought.startswith("<think>\n") and "get_weather" in thought
    assert answer == DATA["scenarios"]["first_call"]["hermes"]


@pytest.mark.parametrize("scenario", ["named_prefill", "required_prefill"])
def test_reasoning_is_skipped_when_a_prefill_began_the_answer(scenario: str) -> None:
    prompt = tool_prompt("chatml", "hermes", scenario)
    assert continuation(prompt, reasoning=True) == DATA["scenarios"][scenario]["hermes"]


def test_reasoning_continues_a_think_tag_the_template_opened() -> None:
    prompt = tool_prompt("chatml", "hermes", "after_result") + "<think>\n"
    text = continuation(prompt, reasoning=True)
    assert text is not None and not text.startswith("<think>")
    assert text.endswith(f"</think>\n\nThe tool returned: {RESULT}")


def request(prompt: str, **params: Any) -> dict[str, Any]:
    return {"model": "demo", "params": {"prompt": [prompt], **params}}


def output_after(prompt: str, reasoning: bool, **params: Any) -> str:
    status, body = complete(request(prompt, **params), reasoning=reasoning)
    assert status == 200
    output: str = body["data"][0]["output"][0]
    assert output.startswith(prompt)
    return output[len(prompt) :]


def test_reasoning_on_plain_prompts_adds_a_think_block_to_the_same_text() -> None:
    prompt = render("chatml", [{"role": "user", "content": "Hello"}])
    plain = output_after(prompt, False, temperature=0)
    thinking = output_after(prompt, True, temperature=0)
    assert re.fullmatch(r"<think>\n[^<]+\n</think>\n\n" + re.escape(plain.lstrip()), thinking)


def test_max_tokens_cuts_answers_and_thoughts() -> None:
    prompt = tool_prompt("chatml", "hermes", "first_call")
    full = output_after(prompt, False)
    assert full == DATA["scenarios"]["first_call"]["hermes"]
    cut = output_after(prompt, False, max_tokens=5)
    assert full.startswith(cut) and estimate_tokens(cut) == 5
    thought = output_after(prompt, True, max_tokens=5)
    assert thought.startswith("<think>") and "</think>" not in thought
    assert estimate_tokens(thought) == 5


# The prefill rule


@pytest.mark.parametrize(
    ("prompt", "answer", "expected"),
    [
        ("", "abc", 0),
        ("x", "", 0),
        ("...assistant\n", "<tool_call>\n{", 0),
        ("...assistant\n<tool_call>\n", "<tool_call>\n{", 12),
        ("...{", "{}", 1),
        ('x{"a": {"a', '{"a": {"a": 1}}', 9),  # the longest prefix (`{"a` would fit too)
        ("aaa", "aaaa", 3),
        ("x" + "y" * (MAX_PREFILL + 5), "y" * (MAX_PREFILL + 10), MAX_PREFILL),
    ],
)
def test_overlap(prompt: str, answer: str, expected: int) -> None:
    assert overlap(prompt, answer) == expected


def test_continue_answer_without_reasoning_is_the_rest_of_the_answer() -> None:
    planned = Planned('{"a": 1}', "thinking")
    assert continue_answer("say it: {", planned) == '"a": 1}'
    assert continue_answer("say it:", planned) == '{"a": 1}'


# The --reasoning option: the command line builds the plan, the app applies it


def test_cli_reasoning_option_sets_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[tuple[str, int, FaultPlan]] = []

    def fake_run(host: str, port: int, *, plan: FaultPlan) -> None:
        served.append((host, port, plan))

    monkeypatch.setattr(mock_upstream, "run_mock_upstream", fake_run)
    assert cli.main(["mock-upstream", "--reasoning"]) == 0
    assert cli.main(["mock-upstream"]) == 0
    assert served == [
        ("127.0.0.1", 9000, FaultPlan(reasoning=True)),
        ("127.0.0.1", 9000, FaultPlan()),
    ]
    assert str(served[0][2]) == "latency fixed:0, answers with reasoning"


@pytest.mark.parametrize("fault", [None, "wrong-count"])
async def test_app_with_a_reasoning_plan_thinks(fault: str | None) -> None:
    """Also the answers a fault spoils are made with the plan's reasoning."""
    prompts = [tool_prompt("chatml", "hermes", "first_call"), "Hello"]
    body = {"model": "demo", "params": {"prompt": prompts}}
    app = create_mock_app(plan=FaultPlan(reasoning=True))
    headers = {"x-mock-fault": fault} if fault else {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mock") as client:
        response = await client.post("/", json=body, headers=headers)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data == complete(body, reasoning=True)[1]["data"][: 1 if fault else 2]
    assert all("<think>" in item["output"][0] for item in data)


def test_json_nested_too_deep_is_no_tool() -> None:
    deep = '{"type": "function", "function": ' + "[" * 100_000
    prompt = tool_prompt("chatml", "hermes", "first_call") + deep
    assert continuation(prompt) == DATA["scenarios"]["first_call"]["hermes"]
