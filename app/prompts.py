"""Chat templates: turn OpenAI chat messages into the one prompt string the upstream completes.

    compile_template(spec)  ─ once, at start-up; a bad spec raises TemplateError (a config error)
        ├── PromptTemplate.render(messages)  ─ per request; PromptRenderError becomes an HTTP 400
        └── PromptTemplate.render_turns(turns, tools)  ─ only when `uses_tools`: a Jinja template
            that renders the tools and structured turns (tool calls, tool results) itself

Requests with tools or a JSON answer go through app.tool_prompts, which writes the tools into
flat messages for every template that does not render them itself (all built-ins).

Built-in formats, each checked against its reference source:

    raw      LiteLLM's custom provider: every message's content joined by " ", no role markers.
    llama2   Meta's llama/generation.py `chat_completion` (<<SYS>> merged into the first [INST]).
    llama3   Meta's llama3 `ChatFormat.encode_dialog_prompt` (header / <|eot_id|> per message).
    chatml   <|im_start|>role / <|im_end|>, then an open assistant turn.
    mistral  Mistral's instruct format: <s>[INST] user [/INST] assistant</s>[INST] user [/INST].

Roles: `developer` is OpenAI's newer name for `system` and is treated as `system` everywhere.
llama2 and mistral are trained on strict user/assistant turns, so they accept only a leading
system message and alternating user/assistant messages ending with a user message; `tool`
messages cannot be rendered there (with tools in the request, app.tool_prompts turns the
results into user turns for them). llama3 renders `tool` results as `ipython` (Llama 3.1's
tool-result role); chatml keeps the role name. `raw` accepts any role. An optional "name" key
is ignored by the built-ins and passed through to Jinja templates.

Any other spec containing "{{" or "{%" is a Jinja2 chat template (app.jinja_templates),
rendered as Hugging Face's `apply_chat_template` renders it (same sandbox, filters and
globals), so a model's `tokenizer_config.json` template can be used verbatim.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol


class TemplateError(ValueError):
    """The template spec is unusable (unknown name, Jinja syntax error): a configuration error."""


class PromptRenderError(ValueError):
    """These messages cannot be rendered with this template; the message is shown to the client."""


Message = Mapping[str, str]
# A chat turn in Hugging Face's form: "content" a string, and for tool use "tool_calls" (with
# "arguments" a dict), "tool_call_id" and "name" (see app.tool_prompts).
Turn = Mapping[str, Any]


class PromptTemplate(Protocol):
    """A compiled chat template."""

    name: str
    # True when the template renders `tools` and structured turns itself (`render_turns`).
    uses_tools: bool

    def render(self, messages: Sequence[Message]) -> str: ...

    def render_turns(self, turns: Sequence[Turn], tools: Sequence[Turn] | None) -> str:
        """Render turns with tool calls and results, and the tools in HF's form (None: none)."""
        ...


BUILTIN_TEMPLATES: tuple[str, ...] = ("raw", "llama2", "llama3", "chatml", "mistral")

_SYSTEM_ROLES = frozenset({"system", "developer"})
_KNOWN_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_LLAMA3_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "ipython",
}
_CHATML_ROLES = {role: "system" if role in _SYSTEM_ROLES else role for role in _KNOWN_ROLES}


def compile_template(
    spec: str, *, bos_token: str | None = None, eos_token: str | None = None
) -> PromptTemplate:
    """Compile a built-in name or a Jinja2 chat template string into a PromptTemplate.

    `bos_token`/`eos_token` of None mean the format's own tokens: "<s>"/"</s>" for llama2 and
    mistral, "<|begin_of_text|>" as llama3's BOS, and "" for Jinja templates (as Hugging Face
    passes them from the tokenizer). Pass "" to drop a BOS the upstream adds itself. raw and
    chatml have no such tokens and ignore both.

    Raises TemplateError for an unknown name or a Jinja template that does not compile.
    """
    if spec in BUILTIN_TEMPLATES:
        return _compile_builtin(spec, bos_token, eos_token)
    if "{{" in spec or "{%" in spec:
        # Imported here: Jinja2 takes 40 ms of the start-up, and most configs use no Jinja.
        from app.jinja_templates import compile_jinja

        return compile_jinja(spec, bos_token or "", eos_token or "")
    raise TemplateError(
        f"unknown chat template {spec!r}: expected one of {', '.join(BUILTIN_TEMPLATES)} "
        "or a Jinja2 chat template string"
    )


@dataclass(slots=True)
class _BuiltinTemplate:
    name: str
    render_fn: Callable[[Sequence[Message]], str]
    # The built-ins take flat messages only: app.tool_prompts writes tools and calls into them.
    uses_tools: bool = False

    def render(self, messages: Sequence[Message]) -> str:
        return self.render_fn(messages)

    def render_turns(self, turns: Sequence[Turn], tools: Sequence[Turn] | None) -> str:
        del turns, tools  # app.tool_prompts never calls this: uses_tools is False
        raise PromptRenderError(
            f"the {self.name} chat template does not render tools or tool calls itself"
        )


def _compile_builtin(name: str, bos: str | None, eos: str | None) -> _BuiltinTemplate:
    bos_s = "<s>" if bos is None else bos
    eos_s = "</s>" if eos is None else eos
    formats: dict[str, Callable[[Sequence[Message]], str]] = {
        "raw": _render_raw,
        "llama2": partial(_render_llama2, bos=bos_s, eos=eos_s),
        "llama3": partial(_render_llama3, bos="<|begin_of_text|>" if bos is None else bos),
        "chatml": _render_chatml,
        "mistral": partial(_render_mistral, bos=bos_s, eos=eos_s),
    }
    return _BuiltinTemplate(name, formats[name])


def _render_raw(messages: Sequence[Message]) -> str:
    # LiteLLM's custom provider sends exactly this, so "raw" is a drop-in replacement for it.
    return " ".join(m["content"] for m in messages)


def _render_llama2(messages: Sequence[Message], *, bos: str, eos: str) -> str:
    contents = _alternating_turns(messages, "llama2", "<<SYS>>\n{system}\n<</SYS>>\n\n{user}")
    # As Meta's chat_completion: strip each turn (the merged system+user turn as a whole),
    # every (user, assistant) pair is its own BOS...EOS sequence, the last user turn stays open.
    pairs = zip(contents[:-1:2], contents[1::2], strict=True)
    done = [f"{bos}[INST] {u.strip()} [/INST] {a.strip()} {eos}" for u, a in pairs]
    return "".join(done) + f"{bos}[INST] {contents[-1].strip()} [/INST]"


def _render_mistral(messages: Sequence[Message], *, bos: str, eos: str) -> str:
    # Mistral has no system role. Like mistral-common's V1 tokenizer and the official HF template
    # of Mistral-7B-Instruct-v0.1/v0.2, the system text is prepended to the FIRST user message
    # with a blank line (V3 models put it on the last one instead; the first keeps the prompt
    # prefix stable across turns, which upstream prefix caches reward). Contents are verbatim,
    # as in that template, and one BOS opens the whole conversation.
    contents = _alternating_turns(messages, "mistral", "{system}\n\n{user}")
    parts = [bos]
    for i, content in enumerate(contents):
        parts.append(f"[INST] {content} [/INST]" if i % 2 == 0 else f" {content}{eos}")
    return "".join(parts)


def _render_llama3(messages: Sequence[Message], *, bos: str) -> str:
    parts = [bos]
    for i, m in enumerate(messages):
        role = _mapped_role(m, i, _LLAMA3_ROLES, "llama3")
        parts.append(f"<|start_header_id|>{role}<|end_header_id|>\n\n")
        parts.append(f"{m['content'].strip()}<|eot_id|>")
    parts.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(parts)


def _render_chatml(messages: Sequence[Message]) -> str:
    parts = [
        f"<|im_start|>{_mapped_role(m, i, _CHATML_ROLES, 'chatml')}\n{m['content']}<|im_end|>\n"
        for i, m in enumerate(messages)
    ]
    parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def _mapped_role(message: Message, index: int, roles: Mapping[str, str], template: str) -> str:
    role = message["role"]
    if role not in roles:
        raise PromptRenderError(
            f"the {template} chat template cannot render messages[{index}] with role {role!r}"
        )
    return roles[role]


def _alternating_turns(messages: Sequence[Message], template: str, merge: str) -> list[str]:
    """The turn contents of a user/assistant/.../user dialog, a leading system message merged in.

    `merge` formats the system text and the first user turn into one turn. Raises
    PromptRenderError unless the roles are: optional system, then user and assistant
    alternating, starting and ending with user.
    """
    has_system = bool(messages) and messages[0]["role"] in _SYSTEM_ROLES
    offset = 1 if has_system else 0
    turns = messages[offset:]
    for i, m in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            raise PromptRenderError(
                f"the {template} chat template needs an optional system message followed by "
                f"user and assistant messages taking turns; messages[{offset + i}] has role "
                f"{m['role']!r} where {expected!r} was expected"
            )
    if not turns or turns[-1]["role"] != "user":
        raise PromptRenderError(f"the {template} chat template needs a user message last")
    contents = [m["content"] for m in turns]
    if has_system:
        contents[0] = merge.format(system=messages[0]["content"], user=contents[0])
    return contents
