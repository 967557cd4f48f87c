"""A generation request's way in: its key, its body (size limit, content type, one parse),
its model (404, or 403 for a key that may not use it) and its place in the rate limits (429).

In this order, so that each refusal costs the least work: the key is checked before the body
is read, and the limits are charged only for a request that is otherwise ready to go upstream.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from app.auth import ApiKey, presented_key
from app.disconnect import client_connection
from app.errors import ClientClosedRequest, InvalidRequest, PayloadTooLarge
from app.limits import Grant
from app.routing import ModelRoute
from app.serving import Answer, Door, Generation, serve_generation
from app.state import ProxyState, proxy_state
from app.tokens import estimate_tokens
from app.translate import check_prompt_size

Model = TypeVar("Model", bound=BaseModel)

# Pydantic names union members in error locations ('str', 'list[TextPart]'); they are not params.
_UNION_TAGS = {"str", "int", "float", "bool", "none", "list", "dict"}


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing one over `limit` bytes before reading it where it says its size."""
    content_type = declared = None
    for name, value in request.scope["headers"]:  # the raw list: no Headers object to build
        if name == b"content-type" and content_type is None:
            content_type = value.decode("latin-1")
        elif name == b"content-length" and declared is None:
            declared = value
    _check_content_type(content_type)
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    # Straight from the ASGI receive channel: Request.stream()'s generator costs more than the
    # rest of reading a small body.
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientClosedRequest("the client closed the connection while sending")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        if not message.get("more_body", False):
            return b"".join((*chunks, chunk)) if chunks else chunk  # mostly one message
        chunks.append(chunk)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")


def _check_content_type(content_type: str | None) -> None:
    if content_type is None:
        return  # lenient: plenty of scripts omit it; the body must still be JSON
    media = content_type.partition(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise InvalidRequest(
            f"Content-Type must be application/json, not '{media}'.", code="invalid_content_type"
        )


async def authorized_body(
    request: Request, model: type[Model]
) -> tuple[ProxyState, ApiKey | None, Model]:
    """The proxy's state, the caller's key (None when the proxy is open) and the validated
    body, once the key checked out."""
    state = proxy_state(request)
    key = state.keys.authenticate(request.scope)
    body = parse_body(model, await read_body(request, state.config.max_request_bytes))
    return state, key, body


def allowed_route(state: ProxyState, key: ApiKey | None, model: str) -> ModelRoute:
    """The model's route: ModelNotFound (404) if there is none, PermissionDenied (403) if the
    key may not use it (checked by the configured name an alias stands for)."""
    route = state.router.resolve(model)
    if key is not None:
        key.check_model(route.name)  # a key's models are configured names, whatever alias came
    return route


async def admit(state: ProxyState, key: ApiKey | None, job: Generation) -> Grant | None:
    """Charge the request against its key's and its model's limits; None when none apply.

    Raises RateLimited (429), or LimitsUnavailable (503) while the limits' backend cannot be
    reached under the fail_closed policy.
    """
    limiter = state.limiter
    if limiter is None:
        return None
    label = key.label if key is not None else None
    budgets = limiter.budgets(label, job.route.name)
    if not budgets:
        return None
    tokens = reserved_tokens(job) if any(b.kind == "tokens" for b in budgets) else 0
    return await limiter.admit(budgets, tokens, key=label, model=job.route.name)


def reserved_tokens(job: Generation) -> int:
    """What a request may use at most, reserved until its usage is known: the prompt (by the
    estimate, cheap even for megabytes) and `max_tokens` for every choice."""
    prompt = sum(estimate_tokens(text) for text in job.counted_prompts)
    return prompt + job.sampling.max_tokens * len(job.prompts)


def parse_body(model: type[Model], body: bytes) -> Model:
    """Parse and validate in one pass; a failure becomes a 400 naming the param."""
    if not body:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise _to_invalid_request(exc) from None


def _to_invalid_request(exc: ValidationError) -> InvalidRequest:
    errors = exc.errors(include_url=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        reason = first.get("ctx", {}).get("error", first["msg"])
        return InvalidRequest(
            f"We could not parse the JSON body of your request ({reason}).", code="invalid_json"
        )
    if first["type"] == "model_type" and not first["loc"]:
        return InvalidRequest("The request body must be a JSON object.")
    param = _param_name(first["loc"])
    if first["type"] == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
    detail = first["msg"]
    if all(_param_name(error["loc"]) == param for error in errors[1:]) and len(errors) > 1:
        detail = "; or ".join(error["msg"] for error in errors)
    return InvalidRequest(
        f"Invalid value for '{param}': {detail}{_shown(first.get('input'))}", param=param
    )


def _param_name(loc: tuple[int | str, ...]) -> str:
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        elif "[" in part or part in _UNION_TAGS or part.startswith(("function-", "constrained-")):
            continue
        else:
            name += f".{part}" if name else part
    return name


def _shown(value: Any) -> str:
    if isinstance(value, str | int | float | bool) or value is None:
        text = repr(value)
        return f" (got {text if len(text) <= 60 else text[:60] + '…'})"
    return ""


def keep_client_key(request: Request, job: Generation) -> None:
    """Note the client's key on the job when its model (or a fallback) may send it upstream
    (`forward_client_auth`); the dispatcher sends it only to models that say so."""
    config = job.route.config
    if config.forward_client_auth or config.fallbacks:
        job.client_key = presented_key(request.scope)


async def serve_job(
    request: Request,
    state: ProxyState,
    key: ApiKey | None,
    job: Generation,
    *,
    prompt_param: str,
    stream: bool,
    door: Door,
) -> Answer:
    """A generation's common way out: the prompt size limit, the client's key for models that
    forward it, its way through the model's response cache if it has one, the rate limits,
    then the answer (JSON or a stream), as the client API's `door` builds it."""
    check_prompt_size(job.prompts, state.config.max_prompt_chars, prompt_param)
    keep_client_key(request, job)
    cached = None
    if job.route.config.cache is not None and state.cache is not None:
        owner = key.label if key is not None else ""
        cached = state.cache.run_for(job, owner, request.scope["headers"])
    grant = await admit(state, key, job)
    return await serve_generation(
        state,
        job,
        request_id=request.scope["request_id"],
        receive=request.receive,
        connection=client_connection(request.scope),
        stream=stream,
        door=door,
        grant=grant,
        record=request.scope.get("record"),
        cached=cached,
    )
