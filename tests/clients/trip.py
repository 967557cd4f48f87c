"""The structured-output model every framework case asks for; plain pydantic, so that
instructor's own virtualenv imports it too (`instructor_client.py` runs from this folder)."""

from __future__ import annotations

from typing import Literal

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
