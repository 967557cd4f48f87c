"""instructor in its default mode against AGENT_BASE_URL: prints the extracted model as JSON.

Runs in its own virtualenv (instructor pins an older `openai` than the project's), so it imports
nothing from the project but `trip.py` beside it (plain pydantic), the model every case asks for.
"""

from __future__ import annotations

import json
import os

import instructor
from openai import OpenAI
from trip import Trip  # beside this script (its folder is first on sys.path)


def main() -> None:
    openai_client = OpenAI(
        base_url=os.environ["AGENT_BASE_URL"], api_key=os.environ["AGENT_API_KEY"], max_retries=0
    )
    client = instructor.from_openai(openai_client)
    trip = client.chat.completions.create(
        model=os.environ.get("AGENT_MODEL", "agent"),
        response_model=Trip,
        max_retries=0,
        messages=[{"role": "user", "content": "Plan a trip for Ada through Lyon by train."}],
    )
    print(
        json.dumps(
            {
                "type": type(trip).__name__,
                "instructor_mode": client.mode.name,
                "trip": trip.model_dump(),
            }
        )
    )


if __name__ == "__main__":
    main()
