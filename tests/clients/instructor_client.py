"""instructor in its default mode against AGENT_BASE_URL: prints the extracted model as JSON.

Runs in its own virtualenv (instructor pins an older `openai` than the project's), so it imports
nothing from the project. The model mirrors tests/clients/frameworks.py's Trip.
"""

from __future__ import annotations

import json
import os
from typing import Literal

import instructor
from openai import OpenAI
from pydantic import BaseModel, Field


class City(BaseModel):
    name: str = Field(description="the city's name")
    country: str


class Trip(BaseModel):
    """A trip plan: who travels, for how long, where and how."""

    traveller: str = Field(description="the traveller's name")
    days: int
    cities: list[City]
    mode: Literal["train", "plane", "car"]


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
