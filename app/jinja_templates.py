"""Jinja2 chat templates, rendered as Hugging Face's `apply_chat_template` renders them.

Imported by app.prompts only when a model's template is a Jinja2 string: loading Jinja2 takes
about 40 ms of the proxy's one-second start-up, and most configurations use a built-in template.

A template "uses tools" when its source mentions `tools` (as tool-calling templates such as
Qwen2.5's, Hermes-2-Pro's or Llama 3.1's do): such a template gets the request's tools and the
structured turns (`render_turns`) and writes the tool prompt itself, as `apply_chat_template`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
import jinja2.sandbox

from app.prompts import Message, PromptRenderError, TemplateError, Turn


@dataclass(slots=True)
class JinjaTemplate:
    """A compiled Jinja2 chat template with the BOS/EOS tokens it is rendered with."""

    template: jinja2.Template
    bos_token: str
    eos_token: str
    name: str = "jinja"
    uses_tools: bool = False

    def render(self, messages: Sequence[Message]) -> str:
        return self.render_turns(messages, None)

    def render_turns(self, turns: Sequence[Turn], tools: Sequence[Turn] | None) -> str:
        """Render as apply_chat_template(turns, tools=tools, add_generation_prompt=True)."""
        try:
            return self.template.render(
                messages=[dict(m) for m in turns],
                # None as HF passes it when there are none, so `tools is none` works.
                tools=None if tools is None else [dict(t) for t in tools],
                documents=None,
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except PromptRenderError:
            raise
        except jinja2.TemplateError as exc:  # includes SecurityError and UndefinedError
            raise PromptRenderError(f"chat template error: {exc}") from exc
        except (TypeError, ValueError, LookupError, ArithmeticError) as exc:
            # Template expressions fail with Python errors on data they did not expect
            # (e.g. `'a' + 1`); they still concern these messages, not the server.
            raise PromptRenderError(f"chat template error: {exc}") from exc


def compile_jinja(source: str, bos_token: str, eos_token: str) -> JinjaTemplate:
    """Compile a chat template's source; TemplateError when it does not compile."""
    # The environment of HF transformers' _compile_jinja_template, so templates behave the same;
    # the immutable sandbox blocks `__class__`-style escapes and mutation of the messages.
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        template = env.from_string(source)
    except jinja2.TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line is not None else ""
        raise TemplateError(f"invalid Jinja2 chat template{where}: {exc}") from exc
    return JinjaTemplate(template, bos_token, eos_token, uses_tools="tools" in source)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | str | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Like HF's override: Jinja's own tojson HTML-escapes <, >, & and ' (wrong for prompts).
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _raise_exception(message: str) -> None:
    raise PromptRenderError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)
