"""Validate JSON the proxy returns against OpenAI's official OpenAPI description.

Usage in tests::

    from tests.openai_spec import validate_openai

    validate_openai("CreateChatCompletionResponse", response.json())

``validate_openai`` raises ``AssertionError`` listing every violation (JSON path + message).

The spec is ``../shared/openai-openapi/openapi.yaml`` relative to the repository root, or the file
named by the environment variable ``OPENAI_OPENAPI_SPEC``.  It is OpenAPI 3.1 (JSON Schema 2020-12)
but about 110 schemas still carry OpenAPI 3.0's ``nullable: true``; those are rewritten as
``anyOf: [<schema without nullable>, {type: "null"}]``.  Documentation-only keywords
(``description``, ``example``, ``examples``, ``x-oaiMeta``) are dropped.  Nothing else is added:
OpenAI's schemas rarely set ``additionalProperties: false`` and neither do we; ``format`` is not
asserted (it is an annotation in 2020-12, and the spec uses non-standard ones like ``unixtime``).

Loading the ~3 MB YAML takes ~1.7 s even with libyaml, so the converted ``components/schemas`` are
cached as JSON in ``<repo>/.pytest_cache/openai-openapi/`` (override the directory with
``OPENAI_OPENAPI_SPEC_CACHE_DIR``; set it to an empty string to disable the cache), keyed by the
spec's resolved path, mtime and size plus a format version.  A cache file that is unreadable,
corrupt or for another spec is ignored and rewritten; a cache directory that can't be written is
silently skipped.  Everything is loaded once per process (``functools.cache``).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS31Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC_PATH = REPO_ROOT.parent / "shared" / "openai-openapi" / "openapi.yaml"
SPEC_ENV = "OPENAI_OPENAPI_SPEC"
CACHE_DIR_ENV = "OPENAI_OPENAPI_SPEC_CACHE_DIR"
DEFAULT_CACHE_DIR = REPO_ROOT / ".pytest_cache" / "openai-openapi"

# Bump when the conversion below changes, so old cache files are not reused.
_CACHE_FORMAT = 1
# Base URI of the in-memory resource; never fetched (the registry has no retriever).
_SPEC_URI = "https://openai-openapi.invalid/openapi.json"

# Keywords whose value is a map of name -> schema, a list of schemas, or a schema.
_SCHEMA_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_VALUES = frozenset(
    {
        "items",
        "additionalItems",
        "additionalProperties",
        "unevaluatedItems",
        "unevaluatedProperties",
        "contains",
        "propertyNames",
        "not",
        "if",
        "then",
        "else",
    }
)
_DROPPED = frozenset({"description", "example", "examples", "x-oaiMeta", "nullable"})

_MAX_SUBERRORS = 6
_MAX_MESSAGE = 300


# ---------------------------------------------------------------------------------------------
# Locating and loading the spec
# ---------------------------------------------------------------------------------------------


def spec_path() -> Path:
    """The spec file in use: ``$OPENAI_OPENAPI_SPEC`` if set, else the shared checkout."""
    env = os.environ.get(SPEC_ENV)
    return Path(env).expanduser().resolve() if env else DEFAULT_SPEC_PATH


def cache_dir() -> Path | None:
    """Where converted schemas are cached, or None when caching is disabled."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env is None:
        return DEFAULT_CACHE_DIR
    return Path(env).expanduser() if env else None


def convert_schema(node: Any) -> Any:
    """Return a converted copy of one schema (the input is never mutated).

    ``nullable: true`` becomes ``anyOf: [<rest>, {type: null}]`` (``nullable: false`` is simply
    dropped), recursively through every subschema keyword; documentation-only keywords are
    dropped; every other keyword value (enum, const, default, required, ...) is kept verbatim.
    """
    if not isinstance(node, dict):
        return node  # boolean schemas (or anything unexpected) pass through
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _DROPPED:
            out[key] = _convert_keyword(key, value)
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _convert_keyword(key: str, value: Any) -> Any:
    if key in _SCHEMA_MAPS and isinstance(value, dict):
        return {name: convert_schema(sub) for name, sub in value.items()}
    if key in _SCHEMA_LISTS and isinstance(value, list):
        return [convert_schema(sub) for sub in value]
    if key in _SCHEMA_VALUES:
        if isinstance(value, list):  # draft-04 style tuple "items"
            return [convert_schema(sub) for sub in value]
        return convert_schema(value)
    return value


def _parse_spec(path: Path) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open("rb") as fh:
        spec = yaml.load(fh, Loader=loader)  # a SafeLoader
    schemas = spec.get("components", {}).get("schemas") if isinstance(spec, dict) else None
    if not isinstance(schemas, dict):
        raise ValueError(f"{path}: no components/schemas mapping")
    return {name: convert_schema(schema) for name, schema in schemas.items()}


def _cache_key(path: Path) -> str:
    st = path.stat()
    raw = f"{_CACHE_FORMAT}|{path.resolve()}|{st.st_mtime_ns}|{st.st_size}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def _read_cache(file: Path, key: str) -> dict[str, Any] | None:
    try:
        data = json.loads(file.read_bytes())
    except (OSError, ValueError):  # missing, unreadable, truncated, not UTF-8, not JSON
        return None
    if (
        isinstance(data, dict)
        and data.get("format") == _CACHE_FORMAT
        and data.get("key") == key
        and isinstance(data.get("schemas"), dict)
        and data["schemas"]
    ):
        return data["schemas"]  # type: ignore[no-any-return]
    return None


def _write_cache(directory: Path, file: Path, key: str, schemas: dict[str, Any]) -> None:
    payload = {"format": _CACHE_FORMAT, "key": key, "schemas": schemas}
    tmp_name = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=directory, prefix=".tmp-", suffix=".json", delete=False
        ) as fh:
            tmp_name = fh.name
            json.dump(payload, fh, separators=(",", ":"), default=str)
        os.replace(tmp_name, file)  # atomic: concurrent readers see old or new, never half
        tmp_name = None
        for stale in directory.glob("components-*.json"):
            if stale != file:
                stale.unlink(missing_ok=True)
    except OSError:
        pass  # caching is an optimisation only
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


def load_schemas(path: Path, cache: Path | None = None) -> dict[str, Any]:
    """Converted ``components/schemas`` of the spec at ``path`` (uncached by the process).

    With ``cache`` (a directory), reuse a valid cache file for this exact spec file or (re)build
    and write one.
    """
    if not path.is_file():
        raise FileNotFoundError(
            f"OpenAI OpenAPI spec not found at {path}; set {SPEC_ENV} to its location"
        )
    if cache is None:
        return _parse_spec(path)
    key = _cache_key(path)
    file = cache / f"components-{key}.json"
    schemas = _read_cache(file, key)
    if schemas is None:
        schemas = _parse_spec(path)
        _write_cache(cache, file, key, schemas)
    return schemas


@functools.cache
def _schemas_for(path: Path, cache: Path | None) -> dict[str, Any]:
    return load_schemas(path, cache)


def schemas() -> dict[str, Any]:
    """The converted ``components/schemas`` of the spec in use (loaded once per process)."""
    return _schemas_for(spec_path(), cache_dir())


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


@functools.cache
def _registry_for(path: Path, cache: Path | None) -> Registry[Any]:
    resource: Resource[Any] = DRAFT202012.create_resource(
        {"components": {"schemas": _schemas_for(path, cache)}}
    )
    registry: Registry[Any] = Registry().with_resource(_SPEC_URI, resource).crawl()
    return registry


@functools.cache
def _validator_for(schema_name: str, path: Path, cache: Path | None) -> Any:
    known = _schemas_for(path, cache)
    if schema_name not in known:
        close = difflib.get_close_matches(schema_name, known, n=5)
        raise KeyError(f"no components/schemas/{schema_name} in {path}; close matches: {close}")
    root = {"$ref": f"{_SPEC_URI}#/components/schemas/{schema_name}"}
    return OAS31Validator(root, registry=_registry_for(path, cache))


def _describe(error: ValidationError) -> str:
    message = error.message
    if len(message) > _MAX_MESSAGE:  # messages embed the instance's repr, which can be huge
        message = message[:_MAX_MESSAGE] + " [...]"
    return f"{error.json_path}: {message}"


def _leaf_errors(errors: Iterable[ValidationError]) -> list[ValidationError]:
    leaves: list[ValidationError] = []
    for error in errors:
        leaves.extend(_leaf_errors(error.context) if error.context else [error])
    return leaves


def _format(error: ValidationError) -> str:
    line = f"- {_describe(error)}"
    if not error.context:
        return line
    # anyOf/oneOf: say why each alternative failed (deduplicated, deepest errors first).
    seen: dict[str, None] = {}
    for leaf in sorted(_leaf_errors(error.context), key=lambda e: -len(e.absolute_path)):
        seen.setdefault(_describe(leaf), None)
    details = list(seen)
    more = len(details) - _MAX_SUBERRORS
    lines = [line] + [f"    · {d}" for d in details[:_MAX_SUBERRORS]]
    if more > 0:
        lines.append(f"    · ... {more} more")
    return "\n".join(lines)


def openai_errors(schema_name: str, instance: object) -> list[str]:
    """Every violation of ``components/schemas/<schema_name>`` as ``"<json path>: <message>"``."""
    validator = _validator_for(schema_name, spec_path(), cache_dir())
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    return [_format(e) for e in errors]


def validate_openai(schema_name: str, instance: object) -> None:
    """Validate instance against components/schemas/<schema_name>; raise AssertionError listing
    every violation (path + message) if it doesn't conform."""
    problems = openai_errors(schema_name, instance)
    if problems:
        raise AssertionError(
            f"{len(problems)} violation(s) of OpenAI schema {schema_name}:\n" + "\n".join(problems)
        )
