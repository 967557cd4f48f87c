"""JSON as models write it: parsed strictly when it is JSON, repaired when it nearly is.

Models drop a closing brace, leave a trailing comma or quote keys with single quotes. The
`json_repair` library mends those; it also "repairs" plain prose into "" and stray text into
strings, so a repair only counts when the text looked like the kind of value that came out
(an object from text starting with "{", a list from "["). Nothing is repaired that was cut
short in the middle of a value (a repair would invent the rest of what the model was still
writing), nor text so long or so deeply nested that json_repair would take seconds over it
(about a second for each thousand levels: a model stuck repeating "{" writes that).
Every reader in `app.output` decodes through here.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_OPENERS = {"{": dict, "[": list}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NESTING = re.compile(r'\\.|["{}\[\]]', re.DOTALL)
MAX_REPAIR_CHARS = 100_000
MAX_REPAIR_DEPTH = 64


class CutShort(ValueError):
    """The text stops in the middle of a value: not repaired."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is beyond the numbers JSON readers can carry")
    return value


# JSON as every reader takes it: Python's json alone reads NaN and Infinity (and writes them).
STRICT = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite)


def loads_lenient(text: str) -> tuple[Any, bool]:
    """The JSON value in `text` and whether it had to be repaired.

    Raises ValueError when the text is not JSON and no unambiguous repair exists (CutShort
    when it stops inside a string or right after a ":" or ","), and for NaN or Infinity.
    """
    stripped = text.strip()
    try:
        return STRICT.decode(stripped), False
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc
    except ValueError:
        pass
    expected = _OPENERS.get(stripped[:1])
    if expected is None:
        raise ValueError(f"not JSON: {_shown(stripped)}")
    if len(stripped) > MAX_REPAIR_CHARS:
        raise ValueError(f"not JSON, and too long to repair ({len(stripped)} characters)")
    if nesting_depth(stripped) > MAX_REPAIR_DEPTH:
        raise ValueError(f"not JSON, and nested too deeply to repair (over {MAX_REPAIR_DEPTH})")
    if cut_short(stripped):
        raise CutShort(f"not JSON, and cut short in the middle of a value: {_tail(stripped)}")
    import json_repair  # the plain path never needs it

    value = json_repair.loads(stripped)
    if not isinstance(value, expected):
        raise ValueError(f"not JSON and not repairable: {_shown(stripped)}")
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        raise ValueError("holds a number JSON cannot carry (NaN or Infinity)") from None
    return value, True


def dumps_compact(value: Any) -> str:
    """JSON text as OpenAI writes `arguments`: no spaces after separators, non-ASCII kept."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def cut_short(text: str) -> bool:
    """The text stops inside a string, or where a key or an item must follow."""
    outside_strings = _STRINGS.sub("0", text).rstrip()  # each string a placeholder value
    return '"' in outside_strings or outside_strings.endswith((":", ","))


def nesting_depth(text: str) -> int:
    """How deep objects and lists nest in `text` (strings skipped)."""
    depth = deepest = 0
    in_string = False
    for mark in _NESTING.finditer(text):
        token = mark.group()
        if token == '"':
            in_string = not in_string
        elif in_string or len(token) == 2:
            continue
        elif token in "{[":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(depth - 1, 0)
    return deepest


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:80] + "…")


def _tail(text: str) -> str:
    end = text.rstrip()[-30:]
    return repr(end if len(text.rstrip()) <= 30 else "…" + end)
