"""The mock upstream as a tool-using model: a prompt in, the answer it intends out (pure).

    plan_answer(prompt) -> Planned | None      None: no tools and no JSON asked (the filler path)
    continue_answer(prompt, planned, reasoning=...) -> str   the continuation after `prompt`

It keys on the conventions the proxy writes into prompts (`app.tool_prompts`) and on those of
the usual Jinja chat templates (Qwen's `<tool_call>`, Llama 3.1's "parameters" instruction,
Mistral's `[AVAILABLE_TOOLS]`). The rules are in the docstring of `app.mock_upstream`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from app.mock_upstream.examples import example_value

TOOL_MARK = '"type": "function"'
JSON_PHRASE = "Answer with a single JSON object"
RESULT_CHARS = 200  # of a tool result quoted in the text answer
MAX_PREFILL = 1024  # the longest prefill looked for at the end of a prompt

_FORMAT_MARKERS = (
    ("[TOOL_CALLS]", "mistral"),
    ("[AVAILABLE_TOOLS]", "mistral"),  # Mistral's own templates, before any call was made
    ("<tool_call>", "hermes"),
    ('"parameters": dictionary of argument name and its value', "llama3_json"),
    ("[func_name1(", "pythonic"),
)
_RESULT_MARKERS = (
    "<tool_response>",
    "[TOOL_RESULTS]",
    "ipython<|end_header_id|>",
    "<|im_start|>tool",
)
_RESULT_ENDS = (
    "</tool_response>",
    "[/TOOL_RESULTS]",
    "<|eot_id|>",
    "<|im_end|>",
    "[/INST]",
    "</s>",
)
_USER_MARKERS = ("<|im_start|>user", "<|start_header_id|>user", "[INST]")
_TURN_ENDS = ("<|im_end|>", "<|eot_id|>", "[/INST]")
# About where a call ends (arguments with nested objects may end a llama3_json call early)
_CALL_ENDS = {"hermes": "</tool_call>", "llama3_json": "}}", "mistral": "}]", "pythonic": ")]"}
_USER_TURN = re.compile(
    r"<\|im_start\|>user\n?|<\|start_header_id\|>user<\|end_header_id\|>|\[INST\]"
)
# Each format's call up to the function's name (the proxy's prefills are prefixes of the calls)
_OPENINGS = {
    "hermes": '<tool_call>\n{"name": "',
    "llama3_json": '{"name": "',
    "mistral": '[TOOL_CALLS][{"name": "',
    "pythonic": "[",
}
_TOOL_START = re.compile(r'\{\s*"type"\s*:\s*"function"')
_SCHEMA_ASK = re.compile(re.escape(JSON_PHRASE) + r"\s+that matches this JSON schema:\s*")
_WORD = re.compile(r"[^\W_]+")
_LETTERS = re.compile(r"[^\W\d_]{2,}")
_LETTER = re.compile(r"[^\W\d_]")
_STOP_WORDS = frozenset({
    "a", "about", "an", "and", "any", "are", "as", "at", "be", "by", "can", "could", "do",
    "does", "for", "from", "get", "how", "i", "if", "in", "is", "it", "its", "me", "my", "now",
    "of", "on", "or", "please", "show", "some", "tell", "than", "that", "the", "them", "then",
    "there", "they", "this", "to", "today", "use", "we", "what", "when", "where", "which", "who",
    "why", "will", "with", "would", "you", "your",
})  # fmt: skip

_DECODER = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class Planned:
    """The answer the mock means to write (`text`) and what it thinks first (`thought`)."""

    text: str
    thought: str


def think(thought: str) -> str:
    """The `<think>` block a reasoning model writes before its answer."""
    return f"<think>\n{thought}\n</think>\n\n"


def plan_answer(prompt: str) -> Planned | None:
    """The answer to a prompt that offers tools or asks for JSON; None for any other prompt.

    A plain prompt costs two substring searches, or one and a `memchr` when it has no "{".
    """
    wants_json = JSON_PHRASE in prompt
    if not wants_json and not ("{" in prompt and TOOL_MARK in prompt):
        return None
    tools, tools_end = _find_tools(prompt)
    tool_format = _find_format(prompt) if tools else None
    if tool_format is None:
        tools, tools_end = [], 0
    calls = _Calls(tool_format, tools) if tool_format else None
    instruction_end = _instruction_end(prompt, tools_end, calls)
    user = _last_user_text(prompt, tools_end, instruction_end, calls)
    result = _last_result(prompt, calls, instruction_end)
    if calls is not None:
        planned = calls.plan(prompt, user, instruction_end, result is not None)
        if planned is not None:
            return planned
    if wants_json:
        return _json_answer(prompt, user, result)
    if result is not None:
        return _text_answer(result)
    return None


def continue_answer(prompt: str, planned: Planned, *, reasoning: bool = False) -> str:
    """What follows `prompt` when the model writes `planned`, as a continuation.

    The prompt may already hold the answer's beginning (a prefill): the continuation is the rest
    of the answer after the longest prefix the prompt ends with. With `reasoning`, a `<think>`
    block comes first, unless a prefill already began the answer.
    """
    begun = overlap(prompt, planned.text)
    if begun or not reasoning:
        return planned.text[begun:]
    full = think(planned.thought) + planned.text
    return full[overlap(prompt, full) :]


def overlap(prompt: str, answer: str) -> int:
    """The longest k <= MAX_PREFILL such that `prompt` ends with `answer[:k]`."""
    if not prompt or not answer:
        return 0
    last = prompt[-1]
    end = min(len(answer), len(prompt), MAX_PREFILL)
    index = answer.rfind(last, 0, end)
    while index >= 0:  # only where the answer has the prompt's last character
        if prompt.endswith(answer[: index + 1]):
            return index + 1
        index = answer.rfind(last, 0, index)
    return 0


# What the prompt holds


def _find_tools(prompt: str) -> tuple[list[dict[str, Any]], int]:
    """The functions offered, each once, and where the last one's JSON ends."""
    tools: dict[str, dict[str, Any]] = {}
    end = 0
    for match in _TOOL_START.finditer(prompt):
        try:
            value, stop = _DECODER.raw_decode(prompt, match.start())
        except (ValueError, RecursionError):  # not JSON, or nested too deep
            continue
        function = value.get("function") if isinstance(value, dict) else None
        if not isinstance(function, dict) or "arguments" in function:
            continue  # not a tool: a call written in OpenAI's form
        name = function.get("name")
        if isinstance(name, str) and name:
            tools.setdefault(name, function)
            end = max(end, stop)
    return list(tools.values()), end


def _find_format(prompt: str) -> str | None:
    return next((fmt for marker, fmt in _FORMAT_MARKERS if marker in prompt), None)


def _last_of(prompt: str, markers: tuple[str, ...]) -> tuple[int, str]:
    """The position and text of the last of `markers` in `prompt`; (-1, "") when none is."""
    return max((prompt.rfind(marker), marker) for marker in markers)


def _instruction_end(prompt: str, tools_end: int, calls: _Calls | None) -> int:
    """Where the turn holding the tools ends: calls before it are examples, not calls made. In
    a prompt without turns (raw), the end of the first call after the tools (the example)."""
    if calls is None:
        return tools_end
    ends = [i for end in _TURN_ENDS if (i := prompt.find(end, tools_end)) >= 0]
    if ends:
        return min(ends)
    first = calls.call_pattern.search(prompt, tools_end)
    return tools_end if first is None else _end_of(prompt, first.end(), calls.ends)


def _end_of(prompt: str, start: int, closers: tuple[str, ...]) -> int:
    """Just after the first of `closers` from `start` (`start` when there is none): about where
    a call or a result ends, good enough to tell them from the text around them."""
    ends = [i + len(end) for end in closers if (i := prompt.find(end, start)) >= 0]
    return min(ends, default=start)


def _last_user_text(prompt: str, tools_end: int, instruction_end: int, calls: _Calls | None) -> str:
    """The last user turn that is not a tool result, without the tool instruction."""
    for marker in reversed(list(_USER_TURN.finditer(prompt))):
        start = max(marker.end(), tools_end)
        ends = [i for end in _TURN_ENDS if (i := prompt.find(end, start)) >= 0]
        stop = min(ends, default=len(prompt))
        example = None if calls is None else calls.last_call(prompt, start, stop)
        if calls is not None and example is not None:
            # The instruction shares the turn (mistral): the text after its example.
            start = min(_end_of(prompt, example, calls.ends), stop)
        text = prompt[start:stop].strip()
        if not text.startswith(_RESULT_MARKERS):
            return text
    # No turns (raw): the last text after the instruction that is neither a call nor a result.
    texts = []
    start = instruction_end
    end = len(prompt) - max(overlap(prompt, opening) for opening in (*_OPENINGS.values(), "{"))
    while start < end:
        stops: list[tuple[int, int, tuple[str, ...]]] = [
            (i, i, _RESULT_ENDS)
            for mark in _RESULT_MARKERS
            if (i := prompt.find(mark, start, end)) >= 0
        ]
        if calls is not None and (call := calls.call_pattern.search(prompt, start, end)):
            stops.append((call.start(), call.end(), calls.ends))
        stop, inside, closers = min(stops, default=(end, end, ()))
        texts.append(prompt[start:stop].strip())
        start = _end_of(prompt, inside, closers)
        if start == inside:
            break  # a call or result left open (a prefill), or the end
    return next((text for text in reversed(texts) if _LETTER.search(text)), "")


def _last_result(prompt: str, calls: _Calls | None, instruction_end: int) -> str | None:
    """The content of the last tool result of the current turn, if there is one."""
    position, marker = _last_of(prompt, _RESULT_MARKERS)
    user = _last_of(prompt, _USER_MARKERS)[0]
    if position < 0 or position <= user:
        return None
    if calls is not None and calls.called(prompt, instruction_end, position) == []:
        return None  # a marker in the instruction's text, not a result
    start = position + len(marker)
    ends = [(i, end) for end in _RESULT_ENDS if (i := prompt.find(end, start)) >= 0]
    stop, closer = min(ends, default=(len(prompt), ""))
    after = prompt[stop + len(closer) :].strip()
    if user < 0 and after and not any(o.startswith(after) for o in (*_OPENINGS.values(), "{")):
        return None  # a raw prompt (no turns) that went on after the result: a new question
    return prompt[start:stop].strip()


# The answers


class _Calls:
    """The offered tools and how calls to them are written in one tool format."""

    def __init__(self, tool_format: str, tools: list[dict[str, Any]]) -> None:
        self.format = tool_format
        self.tools = tools
        self.ends = (_CALL_ENDS[tool_format],)
        names = "|".join(re.escape(tool["name"]) for tool in tools)
        self.call_pattern = re.compile(
            rf'"name"\s*:\s*"({names})"|(?<![\w"])({names})(?:\(|\{{|\[ARGS\])'
        )

    def last_call(self, prompt: str, start: int, end: int) -> int | None:
        """Where the name of the last call between `start` and `end` ends, if there is one."""
        matches = list(self.call_pattern.finditer(prompt, start, end))
        return matches[-1].end() if matches else None

    def called(self, prompt: str, start: int, end: int) -> list[str]:
        """The names of the tools called between `start` and `end`, in order."""
        found = self.call_pattern.finditer(prompt, start, end)
        return [match.group(1) or match.group(2) for match in found]

    def plan(self, prompt: str, user: str, calls_start: int, has_result: bool) -> Planned | None:
        """A call, unless a result is in and the prompt does not begin a call."""
        word = _place_word(user)
        answers = {tool["name"]: self.write([tool], word) for tool in self.tools}
        begun = {name: overlap(prompt, text) for name, text in answers.items()}
        name = max(begun, key=lambda n: begun[n])  # the first of the longest on a tie
        if begun[name] > len(_OPENINGS[self.format]) + len(name):
            return Planned(answers[name], f"I was asked to call {name}.")  # a named prefill
        if has_result and not begun[name]:
            return None
        if has_result:  # and a call is required: one not made yet
            done = set(self.called(prompt, calls_start, len(prompt)))
            candidates = [tool for tool in self.tools if tool["name"] not in done] or self.tools
        else:
            named = self.named_in(user)
            if len(named) > 1:
                thought = f"I should call {', '.join(t['name'] for t in named)} at once."
                return Planned(self.write(named, word), thought)
            candidates = self.tools
        tool = _best_match(candidates, user)
        return Planned(answers[tool["name"]], f"I should call {tool['name']} to answer this.")

    def named_in(self, user: str) -> list[dict[str, Any]]:
        """The tools `user` names (as whole words), in the order it names them."""
        found = []
        for tool in self.tools:
            match = re.search(rf"(?<!\w){re.escape(tool['name'])}(?!\w)", user)
            if match:
                found.append((match.start(), tool))
        return [tool for _, tool in sorted(found, key=lambda pair: pair[0])]

    def write(self, tools: list[dict[str, Any]], word: str | None) -> str:
        """Calls to `tools` in the format (parallel calls when several), with arguments valid
        for their parameters."""
        calls = [self.write_one(tool, word) for tool in tools]
        if self.format == "hermes":
            return "\n".join(f"<tool_call>\n{call}\n</tool_call>" for call in calls)
        if self.format == "llama3_json":
            return "; ".join(calls)
        if self.format == "mistral":
            return f"[TOOL_CALLS][{', '.join(calls)}]"
        return f"[{', '.join(calls)}]"  # pythonic

    def write_one(self, tool: dict[str, Any], word: str | None) -> str:
        name = tool["name"]
        schema = tool.get("parameters")
        value = example_value(schema if schema else {"type": "object"}, word=word)
        arguments = value if isinstance(value, dict) else {}
        if self.format == "pythonic":
            listed = ", ".join(f"{key}={_python_literal(v)}" for key, v in arguments.items())
            return f"{name}({listed})"
        key = "parameters" if self.format == "llama3_json" else "arguments"
        quoted = json.dumps(arguments, ensure_ascii=False)
        return f'{{"name": {json.dumps(name, ensure_ascii=False)}, "{key}": {quoted}}}'


def _best_match(tools: list[dict[str, Any]], user: str) -> dict[str, Any]:
    """The tool whose name and description share most words with `user` (the first on a tie)."""
    asked = set(_WORD.findall(user.lower())) - _STOP_WORDS

    def shared(tool: dict[str, Any]) -> int:
        about = f"{tool['name']} {tool.get('description') or ''}".lower().replace("_", " ")
        return len(asked & set(_WORD.findall(about)))

    return max(tools, key=shared)


def _place_word(user: str) -> str | None:
    """The last capitalised word of the user's turn, but for question words, acronyms and such."""
    words = [
        word
        for word in _LETTERS.findall(user)
        if word[0].isupper() and not word.isupper() and word.lower() not in _STOP_WORDS
    ]
    return words[-1] if words else None


def _json_answer(prompt: str, user: str, result: str | None) -> Planned:
    schema = None
    for match in _SCHEMA_ASK.finditer(prompt):
        try:
            value, _ = _DECODER.raw_decode(prompt, match.end())
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict):
            schema = value  # the last one asked for wins
    if schema is None:
        value = {"answer": _quoted(result) if result is not None else "example"}
    else:
        value = example_value(schema, word=_place_word(user))
    thought = "The answer must be one JSON object; I will write it."
    return Planned(json.dumps(value, ensure_ascii=False), thought)


def _text_answer(result: str) -> Planned:
    return Planned(_quoted(result), "The tool has answered; I can reply from its result.")


def _quoted(result: str) -> str:
    if len(result) > RESULT_CHARS:
        result = result[:RESULT_CHARS] + "…"
    return f"The tool returned: {result}"


def _python_literal(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(_python_literal, value)) + "]"
    if isinstance(value, dict):
        items = (f"{json.dumps(k)}: {_python_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return json.dumps(value, ensure_ascii=False)
