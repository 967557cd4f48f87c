"""The OpenAPI document (/openapi.json, /docs) for routes FastAPI does not describe itself.

The generation routes are plain Starlette endpoints: they parse their bodies themselves (one
pass, the proxy's own error envelope) and skip FastAPI's dependency machinery, which costs more
per request than the rest of the proxy's own work. This puts their request schemas back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

_REF = "#/components/schemas/{model}"


@dataclass(frozen=True, slots=True)
class DocumentedPost:
    """A POST route with a JSON request body described by `model`."""

    path: str
    model: type[BaseModel]
    summary: str
    errors: str = "An OpenAI error envelope"  # what its error answers carry


def install_openapi(app: FastAPI, posts: list[DocumentedPost]) -> None:
    """Make app.openapi() describe `posts` too, with their models and what those reference."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for post in posts:
                schema = post.model.model_json_schema(ref_template=_REF)
                schemas.update(schema.pop("$defs", {}))
                schemas[post.model.__name__] = schema
                document.setdefault("paths", {})[post.path] = _path_item(post)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override hook


def _path_item(post: DocumentedPost) -> dict[str, Any]:
    return {
        "post": {
            "summary": post.summary,
            "operationId": post.model.__name__.removesuffix("Request").lower(),
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": _REF.format(model=post.model.__name__)}}
                },
            },
            "responses": {
                "200": {
                    "description": "The answer as JSON, or as server-sent events with stream",
                    "content": {"application/json": {}, "text/event-stream": {}},
                },
                "default": {"description": post.errors},
            },
        }
    }
