"""JSON as models write it: parsed strictly when it is JSON, repaired when it nearly is.

Models drop a closing brace, leave a trailing comma or quote keys with single quotes. The
`json_repair` library mends those; it also "repairs" plain prose into "" and stray text into
strings, so a repair only counts when the text looked like the kind of value that came out
(an object from text starting with "{", a list from "[").
"""

from __future__ import annotations

import json
from typing import Any

_OPENERS = {"{": dict, "[": list}


def loads_lenient(text: str) -> tuple[Any, bool]:
    """The JSON value in `text` and whether it had to be repaired.

    Raises ValueError when the text is not JSON and no unambiguous repair exists.
    """
    stripped = text.strip()
    try:
        return json.loads(stripped), False
    except ValueError:
        pass
    expected = _OPENERS.get(stripped[:1])
    if expected is None:
        raise ValueError(f"not JSON: {_shown(stripped)}")
    import json_repair  # the plain path never needs it

    value = json_repair.loads(stripped)
    if not isinstance(value, expected):
        raise ValueError(f"not JSON and not repairable: {_shown(stripped)}")
    return value, True


def dumps_compact(value: Any) -> str:
    """JSON text as OpenAI writes `arguments`: no spaces after separators, non-ASCII kept."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:80] + "…")
