"""What the tool-format readers share: decoding a call's JSON, its arguments, the text before it.

A reader numbers the call blocks it recognises and reads each one; a block that looks like a
call but cannot be read raises `NotACall`, whose message completes the sentence "call N …"
(for example "call 2 is not valid JSON: …"). The reader records that sentence as a problem and
goes on with the next block, so one bad call never hides the others.
"""

from __future__ import annotations

import json
import re
from typing import Any

from app.output.json_text import STRICT, CutShort, loads_lenient


class NotACall(ValueError):
    """A block that looks like a call but cannot be read; the message follows "call N"."""


_FENCE_OPENER = re.compile(r"```[\w+-]*[ \t]*$")
_CLOSER = re.compile(r"[\]}]")


def json_at(text: str, index: int) -> tuple[Any, int] | None:
    """The strict JSON value starting at `text[index]` and the index after it, or None."""
    try:
        return STRICT.raw_decode(text, index)
    except (ValueError, RecursionError):
        return None


def json_or_break(text: str, index: int) -> tuple[bool, Any, int]:
    """(True, value, index after it) for the strict JSON value at `text[index]`, else (False,
    None, the index where decoding broke: all before it was a valid start of a JSON value)."""
    try:
        value, end = STRICT.raw_decode(text, index)
    except json.JSONDecodeError as exc:
        return False, None, max(exc.pos, index + 1)
    except RecursionError:
        # Nested deeper than any call: every opener before the next closer is as deep.
        closer = _CLOSER.search(text, index)
        return False, None, closer.end() if closer else len(text)
    except ValueError:
        return False, None, index + 1
    return True, value, end


def json_lenient(text: str) -> Any:
    """The JSON value of `text`, repaired when unambiguous (json_text.loads_lenient).

    Raises NotACall("is not valid JSON: …") when neither works, and when the text stops inside
    a string or right after a ":" or ",": a repair would invent the rest of a value the model
    was still writing (the output was cut by max_tokens or a stop sequence).
    """
    try:
        value, _repaired = loads_lenient(text)
    except CutShort:
        raise NotACall(f"is cut off before its end: {shown(text[-40:])}") from None
    except (ValueError, RecursionError) as exc:
        raise NotACall(f"is not valid JSON: {_reason(exc)}") from None
    return value


def arguments_dict(value: Any, key: str = "arguments") -> dict[str, Any]:
    """A call's arguments as a dict: an object, an object's JSON text, or null for none.

    Raises NotACall when they are anything else, or hold a number JSON cannot carry.
    """
    if value is None:
        value = {}
    elif isinstance(value, str) and value.strip().startswith("{"):
        # Some models write the arguments as JSON text inside the JSON, as OpenAI sends them.
        try:
            value = json_lenient(value)
        except NotACall as exc:
            raise NotACall(f"has {key} text that {exc}") from None
    if not isinstance(value, dict):
        raise NotACall(f"has {key} that are not a JSON object: {shown(json_repr(value))}")
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        raise NotACall(f"has {key} with a number JSON cannot carry (NaN or infinity)") from None
    except RecursionError:
        raise NotACall(f"has {key} nested too deeply") from None
    return value


def content_before(text: str) -> str:
    """The text before a call, stripped, without a code fence left open right before the call."""
    content = text.rstrip()
    fence = _FENCE_OPENER.search(content)
    if fence is not None and content[: fence.start()].count("```") % 2 == 0:
        content = content[: fence.start()]
    return content.strip()


def shown(text: str) -> str:
    """A short quotation of model text for a problem sentence."""
    text = text.strip()
    return repr(text if len(text) <= 80 else text[:80] + "…")


def json_repr(value: Any) -> str:
    """A JSON value as text for a problem sentence (never raises)."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):
        return f"a {type(value).__name__}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)
