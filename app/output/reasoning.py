"""Reasoning in `<think>…</think>`, as DeepSeek-R1, Qwen3 and QwQ write it before their answer.

Read as vLLM's `deepseek_r1` and `qwen3` parsers read it, for the three shapes an output takes:
- `<think>…</think> answer`: the block at the start (after whitespace) is the reasoning;
- `… </think> answer`: the template already put `<think>` into the prompt, so everything
  before the first `</think>` is reasoning;
- `<think>…` never closed: the output was cut (by `max_tokens`) while thinking, all of it is
  reasoning and there is no answer.
An output without the tags is all answer (the `reasoning` option does not force a thought).
"""

from __future__ import annotations

OPEN = "<think>"
CLOSE = "</think>"


def split_reasoning(text: str) -> tuple[str | None, str]:
    """(reasoning, the rest): the reasoning stripped (None when empty), the rest lstripped.

    A text with no reasoning comes back unchanged as the rest.
    """
    stripped = text.lstrip()
    if stripped.startswith(OPEN):
        thought, closed, rest = stripped[len(OPEN) :].partition(CLOSE)
        return _thought(thought), rest.lstrip() if closed else ""
    thought, closed, rest = text.partition(CLOSE)
    if closed and OPEN not in thought:
        return _thought(thought), rest.lstrip()
    return None, text


def _thought(text: str) -> str | None:
    return text.strip() or None
