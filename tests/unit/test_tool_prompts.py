"""Tool and JSON prompts: turns and an OutputSpec in, (prompt, prefill) out.

Exact prompts for small cases live in tests/data/tool_prompts.json; the properties below hold
for every template x tool format, among them the markers the mock upstream keys on.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from app.output.spec import OutputSpec
from app.output.types import ToolSpec
from app.prompts import BUILTIN_TEMPLATES, PromptRenderError, PromptTemplate, compile_template
from app.tool_prompts import reask_turns, render_generation_prompt
from app.tool_syntax import tool_line

DATA = Path(__file__).parent.parent / "data"
CASES: dict[str, Any] = json.loads((DATA / "tool_prompts.json").read_text())
QWEN_SOURCE = (DATA / "templates" / "qwen2_5_tools.jinja").read_text()

FORMATS = ("hermes", "llama3_json", "mistral", "pythonic")
# The markers of app.tool_syntax's docstring: what the mock upstream recognises a format by.
FORMAT_MARKERS = {
    "hermes": "<tool_call>",
    "mistral": "[TOOL_CALLS]",
    "pythonic": "[func_name1(",
    "llama3_json": '"parameters": dictionary of argument name and its value',
}
RESULT_MARKERS = (
    "<tool_response>",
    "[TOOL_RESULTS]",
    "ipython<|end_header_id|>",
    "<|im_start|>tool",
)
USER_MARKERS = {
    "chatml": "<|im_start|>user",
    "llama3": "<|start_header_id|>user",
    "llama2": "[INST]",
    "mistral": "[INST]",
}
# Where a turn starts in each built-in (raw has no turns).
TURN_STARTS = {
    "chatml": "<|im_start|>",
    "llama3": "<|start_header_id|>",
    "llama2": "[INST]",
    "mistral": "[INST]",
}
JSON_PHRASE = "Answer with a single JSON object"

# Unusual names, descriptions and results, so that any loss or escaping shows.
TOOLS = (
    ToolSpec(
        "get_weather",
        'Météo d\'une ville <now> & "later"',
        {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit_scale": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    ),
    ToolSpec(
        "lookup_flight",
        "Flight status by number",
        {
            "type": "object",
            "properties": {
                "flight_number": {"type": "string"},
                "day_offset": {"type": "integer"},
                "options": {"type": "object", "properties": {"verbose_mode": {"type": "boolean"}}},
            },
            "required": ["flight_number", "day_offset"],
        },
    ),
)
RESULTS = ('{"temp": 18, "sky": "clear ☀"}', "Flight LH 454: on time\nGate B12")
TURNS: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris and flight LH454?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
            },
            {
                "id": "call_b",
                "type": "function",
                "function": {
                    "name": "lookup_flight",
                    "arguments": {"flight_number": "LH454", "day_offset": 0},
                },
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_a", "name": "get_weather", "content": RESULTS[0]},
    {"role": "tool", "tool_call_id": "call_b", "name": "lookup_flight", "content": RESULTS[1]},
]
QUESTION: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]


def load_case(case: dict[str, Any]) -> tuple[PromptTemplate, list[dict[str, Any]], OutputSpec]:
    """The template, turns and spec a case of tool_prompts.json names."""
    name = case["template"]
    source = (DATA / "templates" / name[1:]).read_text() if name.startswith("@") else name
    spec = dict(case["spec"])
    spec["tools"] = tuple(ToolSpec(**CASES["tools"][t]) for t in spec.get("tools", ()))
    return compile_template(source), CASES["conversations"][case["turns"]], OutputSpec(**spec)


def spec_for(fmt: str, **fields: Any) -> OutputSpec:
    return OutputSpec(tools=TOOLS, tool_format=fmt, **fields)  # type: ignore[arg-type]


def builtin_prompt(name: str, turns: list[dict[str, Any]], spec: OutputSpec) -> tuple[str, str]:
    return render_generation_prompt(compile_template(name), turns, spec)


# --- exact prompts ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES["cases"], ids=[c["id"] for c in CASES["cases"]])
def test_exact_prompts(case: dict[str, Any]) -> None:
    template, turns, spec = load_case(case)
    assert render_generation_prompt(template, turns, spec) == (case["prompt"], case["prefill"])


# --- every template x format: what must reach the prompt, and the mock's markers -----------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", BUILTIN_TEMPLATES)
def test_every_tool_and_result_reaches_the_prompt(name: str, fmt: str) -> None:
    prompt, _ = builtin_prompt(name, TURNS, spec_for(fmt))
    for tool in TOOLS:
        assert tool.name in prompt
        # as a JSON string: quotes escaped, nothing else (no \u escapes, no HTML escaping)
        assert json.dumps(tool.description, ensure_ascii=False) in prompt
        for parameter in tool.parameters["properties"]:
            assert f'"{parameter}"' in prompt
        assert tool_line(tool) in prompt
    for result in RESULTS:
        assert prompt.count(result) == 1
    assert "Be brief." in prompt


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", BUILTIN_TEMPLATES)
def test_markers_the_mock_upstream_keys_on(name: str, fmt: str) -> None:
    prompt, _ = builtin_prompt(name, TURNS, spec_for(fmt))
    # the format's own marker, no other format's: the mock reads the format off the prompt
    assert FORMAT_MARKERS[fmt] in prompt
    assert [m for f, m in FORMAT_MARKERS.items() if f != fmt and m in prompt] == []
    # each tool as one line of json.dumps({"type": "function", "function": {...}})
    lines = prompt.replace("[AVAILABLE_TOOLS] [", "\n").replace("][/AVAILABLE_TOOLS]", "\n")
    found = [json.loads(line.rstrip(",")) for line in lines.splitlines() if '"type": "f' in line]
    assert found == [
        {"type": "function", "function": {"name": t.name, "description": t.description,
                                          "parameters": t.parameters}}
        for t in TOOLS
    ]  # fmt: skip
    # every result: a result marker before it, in its own turn; none in the instruction
    for result in RESULTS:
        before = prompt[: prompt.index(result)]
        turn = before[before.rfind(TURN_STARTS[name]) :] if name in TURN_STARTS else before[-20:]
        assert any(marker in turn for marker in RESULT_MARKERS), turn
    markers_at = [prompt.index(marker) for marker in RESULT_MARKERS if marker in prompt]
    assert min(markers_at) > prompt.index(tool_line(TOOLS[-1]))
    # the results come after the last user turn: the mock answers from them
    if name in USER_MARKERS:
        assert prompt.rfind(USER_MARKERS[name]) < prompt.index(RESULTS[0])
        assert prompt.count(USER_MARKERS[name]) == (2 if name in ("llama2", "mistral") else 1)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", BUILTIN_TEMPLATES)
def test_a_question_opens_a_user_turn_and_no_result_is_seen(name: str, fmt: str) -> None:
    prompt, _ = builtin_prompt(name, QUESTION, spec_for(fmt))
    assert not any(marker in prompt for marker in RESULT_MARKERS)
    if name in USER_MARKERS:
        assert prompt.rfind(USER_MARKERS[name]) < prompt.index("Weather in Paris?")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", BUILTIN_TEMPLATES)
def test_json_answer_phrase_and_schema(name: str, fmt: str) -> None:
    schema = {"type": "object", "properties": {"città": {"type": "string"}}, "required": ["città"]}
    for spec in (
        OutputSpec(json="json_schema", schema=schema, tool_format=fmt),  # type: ignore[arg-type]
        spec_for(fmt, json="json_schema", schema=schema),
    ):
        prompt, _ = builtin_prompt(name, QUESTION, spec)
        assert f"{JSON_PHRASE} that matches this JSON schema: {json.dumps(schema)}" not in prompt
        expected = f"{JSON_PHRASE} that matches this JSON schema: " + json.dumps(
            schema, ensure_ascii=False
        )
        assert expected + "\n" in prompt
    prompt, _ = builtin_prompt(name, QUESTION, OutputSpec(json="json_object"))
    assert f"{JSON_PHRASE}.\n" in prompt
    assert "schema" not in prompt


# --- prefills ---------------------------------------------------------------------------------

PREFILLS = {
    ("hermes", "required"): "<tool_call>\n",
    ("hermes", "function"): '<tool_call>\n{"name": "lookup_flight", "arguments": ',
    ("llama3_json", "required"): '{"name": "',
    ("llama3_json", "function"): '{"name": "lookup_flight", "parameters": ',
    ("mistral", "required"): "[TOOL_CALLS]",
    ("mistral", "function"): '[TOOL_CALLS][{"name": "lookup_flight", "arguments": ',
    ("pythonic", "required"): "[",
    ("pythonic", "function"): "[lookup_flight(",
}


@pytest.mark.parametrize("name", [*BUILTIN_TEMPLATES, QWEN_SOURCE])
@pytest.mark.parametrize(("fmt", "choice"), list(PREFILLS))
def test_call_prefills_end_the_prompt(name: str, fmt: str, choice: str) -> None:
    spec = spec_for(
        fmt, tool_choice=choice, tool_name="lookup_flight" if choice == "function" else None
    )
    for turns in (QUESTION, TURNS):
        prompt, prefill = render_generation_prompt(compile_template(name), turns, spec)
        assert prefill == PREFILLS[fmt, choice]
        assert prompt.endswith(prefill)
        if choice == "function":
            assert "You must call the function lookup_flight" in prompt


@pytest.mark.parametrize("name", [*BUILTIN_TEMPLATES, QWEN_SOURCE])
def test_json_prefill_and_none_where_it_would_hurt(name: str) -> None:
    template = compile_template(name)
    prompt, prefill = render_generation_prompt(template, QUESTION, OutputSpec(json="json_object"))
    assert (prefill, prompt[-1]) == ("{", "{")
    # tools offered with auto: the model may call or answer, nothing is forced
    with_tools = spec_for("hermes", json="json_object")
    assert render_generation_prompt(template, QUESTION, with_tools)[1] == ""
    # a thinking model must be free to think before its answer
    thinking = OutputSpec(json="json_object", reasoning="think_tags")
    assert render_generation_prompt(template, QUESTION, thinking)[1] == ""
    required = spec_for("hermes", tool_choice="required", reasoning="think_tags")
    assert render_generation_prompt(template, QUESTION, required)[1] == ""


# --- plain requests and choices -----------------------------------------------------------------


@pytest.mark.parametrize("name", [*BUILTIN_TEMPLATES, QWEN_SOURCE])
def test_plain_requests_render_exactly_as_before(name: str) -> None:
    template = compile_template(name)
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi", "name": "ann"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?"},
    ]
    flat = [dict(m) for m in chat]
    assert render_generation_prompt(template, chat, OutputSpec()) == (template.render(flat), "")
    # tools offered but not to be used, or a format of none: the tools stay out, as before
    for spec in (spec_for("hermes", tool_choice="none"), spec_for("none")):
        assert render_generation_prompt(template, chat, spec) == (template.render(flat), "")


def test_tool_choice_words_and_a_single_call() -> None:
    prompt, _ = builtin_prompt("chatml", QUESTION, spec_for("hermes"))
    assert "If none of the functions fits, answer directly" in prompt
    assert "at most one" not in prompt
    prompt, _ = builtin_prompt("chatml", QUESTION, spec_for("hermes", parallel_tool_calls=False))
    assert "Call at most one function at a time." in prompt
    prompt, _ = builtin_prompt("chatml", QUESTION, spec_for("hermes", tool_choice="required"))
    assert "You must call at least one of the functions" in prompt


def test_history_is_kept_when_tools_are_no_longer_offered() -> None:
    for name in BUILTIN_TEMPLATES:
        prompt, prefill = builtin_prompt(name, TURNS, spec_for("pythonic", tool_choice="none"))
        calls = '[get_weather(city="Paris"), lookup_flight(flight_number="LH454", day_offset=0)]'
        assert calls in prompt
        assert all(result in prompt for result in RESULTS)
        assert FORMAT_MARKERS["pythonic"] not in prompt
        assert tool_line(TOOLS[0]) not in prompt
        assert prefill == ""


# --- calls in each syntax -----------------------------------------------------------------------

NESTED_ARGUMENTS = {"q": 'say "hi"\n', "n": 2, "x": 1.5, "ok": True, "none": None, "l": [1, "ü"]}
CALLS_WRITTEN = {
    "hermes": '<tool_call>\n{"name": "f", "arguments": {"q": "say \\"hi\\"\\n", "n": 2, "x": 1.5, '
    '"ok": true, "none": null, "l": [1, "ü"]}}\n</tool_call>\n<tool_call>\n{"name": "g", '
    '"arguments": {}}\n</tool_call>',
    "llama3_json": '{"name": "f", "parameters": {"q": "say \\"hi\\"\\n", "n": 2, "x": 1.5, '
    '"ok": true, "none": null, "l": [1, "ü"]}}; {"name": "g", "parameters": {}}',
    "mistral": '[TOOL_CALLS][{"name": "f", "arguments": {"q": "say \\"hi\\"\\n", "n": 2, '
    '"x": 1.5, "ok": true, "none": null, "l": [1, "ü"]}}, {"name": "g", "arguments": {}}]',
    "pythonic": '[f(q="say \\"hi\\"\\n", n=2, x=1.5, ok=True, none=None, l=[1, "ü"]), g()]',
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_earlier_calls_are_written_in_the_format(fmt: str) -> None:
    turns = [
        {"role": "user", "content": "Go"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "1", "type": "function",
                 "function": {"name": "f", "arguments": NESTED_ARGUMENTS}},
                {"id": "2", "type": "function", "function": {"name": "g", "arguments": {}}},
            ],
        },
        {"role": "tool", "tool_call_id": "1", "content": "done"},
    ]  # fmt: skip
    prompt, _ = builtin_prompt("chatml", turns, spec_for(fmt))
    assert f"<|im_start|>assistant\n{CALLS_WRITTEN[fmt]}<|im_end|>" in prompt
    if fmt == "pythonic":
        call = ast.parse(CALLS_WRITTEN[fmt], mode="eval").body.elts[0]  # type: ignore[attr-defined]
        assert {k.arg: ast.literal_eval(k.value) for k in call.keywords} == NESTED_ARGUMENTS


# --- Jinja ---------------------------------------------------------------------------------


def test_jinja_tools_template_gets_tools_and_structured_turns_as_hugging_face() -> None:
    probe = (
        "{% for t in tools %}{{ t | tojson }}\n{% endfor %}"
        "{% for m in messages %}{{ m.role }}|{{ m.tool_call_id }}|{{ m.name }}|"
        "{% for c in m.tool_calls or [] %}{{ c.id }} {{ c.function.name }} "
        "{{ c.function.arguments | tojson }} {{ c.function.arguments.city }};{% endfor %}"
        "{{ m.content }}\n{% endfor %}{{ add_generation_prompt }}"
    )
    template = compile_template(probe)
    assert template.uses_tools
    prompt, _ = render_generation_prompt(template, TURNS[1:], spec_for("hermes"))
    lines = prompt.split("\n")
    assert lines[:2] == [tool_line(t) for t in TOOLS]
    assert lines[2].startswith("system|||")  # the tool choice, in a system turn of its own
    assert (
        'assistant|||call_a get_weather {"city": "Paris"} Paris;call_b lookup_flight '
        '{"flight_number": "LH454", "day_offset": 0} ;' in lines
    )
    assert f"tool|call_a|get_weather|{RESULTS[0]}" in lines
    assert prompt.endswith("Gate B12\nTrue")


def test_jinja_tojson_keeps_unicode_no_html_escaping_and_indents() -> None:
    template = compile_template("{{ tools[0] | tojson(indent=2) }}")
    prompt, _ = render_generation_prompt(template, QUESTION, spec_for("hermes"))
    assert prompt == json.dumps(json.loads(tool_line(TOOLS[0])), indent=2, ensure_ascii=False)
    assert 'Météo d\'une ville <now> & \\"later\\"' in prompt


def test_jinja_template_without_tools_gets_the_proxys_instruction() -> None:
    zephyr = (
        "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    template = compile_template(zephyr)
    assert not template.uses_tools
    prompt, _ = render_generation_prompt(template, TURNS, spec_for("hermes"))
    assert prompt.startswith("<|system|>\nBe brief.\n\n# Tools\n")
    assert tool_line(TOOLS[1]) in prompt
    # results as one user turn: a template of unknown roles surely takes user turns
    assert (
        f"<|user|>\n<tool_response>\n{RESULTS[0]}\n</tool_response>\n"
        f"<tool_response>\n{RESULTS[1]}\n</tool_response></s>\n<|assistant|>\n"
    ) in prompt
    assert "<|tool|>" not in prompt


def test_jinja_template_errors_on_the_tool_path_are_render_errors() -> None:
    needs_name = (
        "{% for m in messages %}{% if m.role == 'tool' and m.name is not defined %}"
        "{{ raise_exception('Tool messages need a name') }}{% endif %}{% endfor %}{{ tools }}"
    )
    turns = [*TURNS[:3], {"role": "tool", "tool_call_id": "call_a", "content": "x"}]
    with pytest.raises(PromptRenderError, match="^Tool messages need a name$"):
        render_generation_prompt(compile_template(needs_name), turns, spec_for("hermes"))


def test_builtins_do_not_render_tools_themselves() -> None:
    template = compile_template("chatml")
    assert not template.uses_tools
    with pytest.raises(PromptRenderError, match="does not render tools"):
        template.render_turns(QUESTION, None)


# --- asking again -------------------------------------------------------------------------------


def test_reask_turns_add_the_answer_and_what_was_wrong() -> None:
    problems = ["$.age: 'x' is not of type 'integer'", "the answer is not one JSON object"]
    spec = OutputSpec(json="json_schema", schema={"type": "object"})
    turns = reask_turns(QUESTION, '{"age": "x"}', problems, spec)
    assert turns == [
        *QUESTION,
        {"role": "assistant", "content": '{"age": "x"}'},
        {
            "role": "user",
            "content": "Your last answer cannot be used:\n"
            "- $.age: 'x' is not of type 'integer'\n- the answer is not one JSON object\n"
            "Answer again with a single JSON object that matches the JSON schema given above, "
            "and nothing else.",
        },
    ]
    assert QUESTION == [{"role": "user", "content": "Weather in Paris?"}]


@pytest.mark.parametrize(
    ("spec", "wanted"),
    [
        (spec_for("hermes", tool_choice="function", tool_name="get_weather"),
         "Answer again with a call to the function get_weather, written exactly"),
        (spec_for("mistral", tool_choice="required"),
         "Answer again with a call to one or more of the functions"),
        (OutputSpec(json="json_object"), "Answer again with a single JSON object, and nothing"),
        (None, "Answer again, in the form the instructions describe."),
    ],
)  # fmt: skip
def test_reask_says_what_form_to_answer_in(spec: OutputSpec | None, wanted: str) -> None:
    assert wanted in reask_turns(QUESTION, "x", ["no tool call found"], spec)[-1]["content"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", [*BUILTIN_TEMPLATES, QWEN_SOURCE])
def test_reasked_turns_render_with_the_same_prefill(name: str, fmt: str) -> None:
    spec = spec_for(fmt, tool_choice="function", tool_name="get_weather")
    template = compile_template(name)
    _, prefill = render_generation_prompt(template, TURNS, spec)
    again = reask_turns(TURNS, prefill + "oops", ["no tool call found"], spec)
    prompt, prefill_again = render_generation_prompt(template, again, spec)
    assert prefill_again == prefill
    assert prompt.endswith(prefill)
    assert prefill + "oops" in prompt
    assert prompt.index("oops") < prompt.index("no tool call found")


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["llama2", "mistral"])
@pytest.mark.parametrize(
    ("turns", "error"),
    [
        ([{"role": "tool", "content": "1"}], r"tool results only right after an assistant .*"
         r"messages\[0\] has role 'tool' at the start"),
        ([*QUESTION, {"role": "tool", "content": "1"}],
         r"messages\[1\] has role 'tool' after a 'user' message"),
        ([{"role": "system", "content": "s"}, *QUESTION, {"role": "user", "content": "u"}],
         r"messages\[2\] has role 'user' where 'assistant' was expected"),
        ([*TURNS, {"role": "assistant", "content": "a"}], "user message or tool results last"),
        ([{"role": "system", "content": "s"}], "user message or tool results last"),
    ],
)  # fmt: skip
def test_strict_templates_refuse_turns_they_cannot_carry(
    name: str, turns: list[dict[str, Any]], error: str
) -> None:
    with pytest.raises(PromptRenderError, match=f"the {name} chat template .*{error}"):
        builtin_prompt(name, turns, spec_for("hermes"))


@pytest.mark.parametrize("name", ["llama2", "mistral", "llama3", "chatml"])
def test_unknown_roles_are_refused_with_the_clients_index(name: str) -> None:
    turns = [*QUESTION, {"role": "function", "content": "x"}]
    with pytest.raises(
        PromptRenderError, match=r"cannot render messages\[1\] with role 'function'"
    ):
        builtin_prompt(name, turns, spec_for("hermes"))


def test_pythonic_needs_object_arguments() -> None:
    turns = [*TURNS[:2], {"role": "assistant", "content": "", "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "get_weather", "arguments": [1]}}
    ]}, {"role": "tool", "content": "r"}]  # fmt: skip
    with pytest.raises(PromptRenderError, match="call to 'get_weather' are not an object"):
        builtin_prompt("chatml", turns, spec_for("pythonic"))
    assert re.search(r'"arguments": \[1\]', builtin_prompt("chatml", turns, spec_for("hermes"))[0])
