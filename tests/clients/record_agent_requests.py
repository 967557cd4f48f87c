"""Record what each agent framework sends: tests/data/agent_requests/<framework>-<case>.json.

    .venv/bin/python -m tests.clients.record_agent_requests

Each case of `frameworks.py` runs against a loopback recorder answering from `fake_model`; every
request body it sent is saved (numbered when a run sends several). instructor runs in
.venv-instructor (`make install` makes it). tests/unit/test_agent_requests.py reads the files.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.clients import frameworks
from tests.clients.recorder import recording

OUT_DIR = Path(__file__).parents[1] / "data" / "agent_requests"
INSTRUCTOR_PYTHON = Path(__file__).parents[2] / ".venv-instructor" / "bin" / "python"

CASES: dict[str, Callable[[str, str], Any]] = {
    "langchain-bind_tools": frameworks.langchain_bind_tools,
    "langchain-stream_tools": frameworks.langchain_stream_tools,
    "langchain-create_agent": frameworks.langchain_agent,
    "langchain-create_agent_parallel": frameworks.langchain_agent_parallel,
    "langchain-structured_output": frameworks.langchain_structured,
    "pydantic_ai-output_type": frameworks.pydantic_ai_output,
    "langchain-structured_function_calling": frameworks.langchain_structured_function_calling,
    "pydantic_ai-streamed_output_type": frameworks.pydantic_ai_streamed_output,
    "pydantic_ai-tool_and_output_type": frameworks.pydantic_ai_tool_and_output,
    "pydantic_ai-parallel_tools": frameworks.pydantic_ai_parallel,
    "openai_agents-tool_and_output_type": frameworks.openai_agents,
    "openai_agents-streamed": frameworks.openai_agents_streamed,
    "openai_agents-parallel_tools": frameworks.openai_agents_parallel,
    "openai_agents-parallel_tools_streamed": lambda url, key: frameworks.openai_agents_parallel(
        url, key, streamed=True
    ),
    "instructor-default_mode": lambda url, key: frameworks.instructor_run(
        INSTRUCTOR_PYTHON, url, key
    ),
}


def record(name: str, case: Callable[[str, str], Any]) -> list[Path]:
    """Run one case against a fresh recorder; write its request bodies."""
    with recording() as (base_url, requests):
        result = case(base_url, "sk-recording")
    print(f"{name}: {len(requests)} request(s); result: {result!r}"[:400], file=sys.stderr)
    paths = []
    for number, body in enumerate(requests, start=1):
        suffix = f"-{number}" if len(requests) > 1 else ""
        path = OUT_DIR / f"{name}{suffix}.json"
        path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, case in CASES.items():
        if len(sys.argv) > 1 and name not in sys.argv[1:]:
            continue
        for path in record(name, case):
            print(path)


if __name__ == "__main__":
    main()
