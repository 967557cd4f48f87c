"""Reference server of the custom format ("mock upstream") for the demo, tests and benchmarks.

Answers POST on any path. Request and answer follow LiteLLM's custom-endpoint format:

    {"model": M, "params": {"prompt": [P, ...], "max_tokens": 256, "temperature": 1.0,
                            "top_p": 1.0, "top_k": -1}}
    → 200 {"data": [{"prompt": P, "output": [P + CONTINUATION],
                     "params": {"temperature": T, "top_k": K, "top_p": TP}}, ...], "message": "ok"}

Only `prompt` (a non-empty list of strings) is required; the other params default to the values
above (`null` also means the default). Bad requests get 400 and non-POST 405, both with
`{"message": "<what is wrong>", "data": []}`.

The continuation starts with a space and is English-ish text from a small fixed vocabulary: one to
five sentences, each ending with a period, 6–55 tokens in all. It is deterministic: seeded
from (model, prompt, its index in the list, temperature, top_p, top_k), except that with
temperature 0 the index is left out, so equal prompts get equal outputs as in greedy decoding.
A token is one match of `app.tokens.TOKEN_PATTERN` (a run of word characters or one punctuation
mark), the unit of the proxy's usage estimate; the continuation is cut to at most `max_tokens`
such tokens, so `estimate_tokens(continuation) <= max_tokens`.

Tools and JSON answers (`app.mock_upstream.tools`): a prompt that offers tools or asks for JSON,
in the conventions the proxy writes (`app.tool_prompts`), gets the answer a tool-using model
would write instead of the filler. Plain prompts are not affected; they cost two substring
searches more (one when the prompt has no "{"). How it decides:

- Tools: every `{"type": "function", "function": {"name", "description", "parameters"}}` JSON
  object in the prompt (also indented, as `tojson(indent=4)` writes it; a call carrying
  `arguments` is not a tool). Their format: the first of `[TOOL_CALLS]` or `[AVAILABLE_TOOLS]`
  (mistral), `<tool_call>` (hermes), `"parameters": dictionary of argument name and its value`
  (llama3_json), `[func_name1(` (pythonic) found in the prompt; with none, no tools.
- A tool result is in when `<tool_response>`, `[TOOL_RESULTS]`, `ipython<|end_header_id|>` or
  `<|im_start|>tool` comes after the last user-turn marker (`<|im_start|>user`,
  `<|start_header_id|>user`, `[INST]`) and, when tools are offered, after a call to one of them
  made after the instruction: calls count from the end of the turn holding the tool list (in a
  raw prompt, from the end of the first call after it, the instruction's example), so an
  instruction's example call or result marker is neither a call made nor a result.
  Its content runs to the result's or the turn's end. A raw prompt has no turn markers: there,
  text after the result's closing marker (other than a call's opening or `{`, a prefill) is a
  new question, and the result is no longer in.
- With tools and no result, it calls one tool: the one a prefilled call names, else the one
  whose name and description share most words with the last user turn (the first on a tie;
  the instruction's text, when it shares the turn, is left out).
  When that turn names several tools (`get_weather`, as a word), it calls each of them at once
  (parallel calls, in the order named).
  With a result in, it answers `The tool returned: <the last result, 200 chars at most>`,
  unless the prompt ends with the opening of a call (the proxy requires one): then it calls a
  tool not called yet, if there is one.
- `Answer with a single JSON object` with no call to make: a JSON object valid for the schema
  after `that matches this JSON schema:` (`{"answer": ...}` without a schema; the answer text
  when a result is in).
- Arguments and JSON values: `app.mock_upstream.examples` (required properties; strings are
  "example", or the last capitalised word of the user's turn for properties named like a
  place, name or query; numbers 1 and 1.5 within the bounds; the first of enums and unions).
- Written as hermes `<tool_call>\\n{"name": N, "arguments": {...}}\\n</tool_call>`,
  llama3_json `{"name": N, "parameters": {...}}`, mistral `[TOOL_CALLS][{"name": N,
  "arguments": {...}}]`, pythonic `[N(a=1, b="x")]`; JSON as `json.dumps` writes it.
- Prefill: when the prompt ends with the beginning of that answer (the proxy's prefill of a
  call's opening or a JSON `{`), the continuation is the rest of it (the longest such
  beginning, up to 1,024 characters). The answer is cut to `max_tokens` like the filler.

Reasoning (`--reasoning`, `FaultPlan(reasoning=True)`, `complete(body, reasoning=True)`): every
answer, filler included, begins with `<think>\\n…\\n</think>\\n\\n`, unless a prefill already began
the answer; a prompt ending in `<think>\\n` gets the rest of the block. `max_tokens` counts the
thought, so a short limit leaves `<think>` unclosed.

Fault modes (header `x-mock-fault: MODE`, or `--fault MODE` for every request):

    status:CODE    CODE (400-599) with {"message": "mock fault: status CODE", "data": []}
    malformed      200 with a body that is not JSON
    no-data        200 {"message": "ok"}
    not-ok         200 {"message": "model overloaded", "data": []}
    html           200 text/html error page
    wrong-count    200, one item fewer than prompts (*)
    non-string     200, every output is [123] (*)
    empty-output   200, every output is [] (*)
    huge[:BYTES]   200, a valid answer of at least BYTES bytes (default 16 MiB; the first
                   output is padded with text), sent in 64 KiB chunks with a Content-Length (*)
    trickle        200 with a Content-Length of 1 GiB, then one byte of the answer (then
                   spaces) every 200 ms until the client disconnects: a slowloris (*)
    reset-body     200 with the real answer's Content-Length and half its body, then the
                   connection drops (*)
    reset          the status line and headers of a 200 with a Content-Length, then the
                   connection drops
    hang           never answers; returns when the client disconnects
    (*) answers 400 instead when the request is bad.

"The connection drops": the app raises `MockConnectionReset` after sending, so uvicorn closes
the connection and an HTTP client sees the body cut short (httpx: `RemoteProtocolError`);
through `httpx.ASGITransport` the exception itself reaches the caller.

Other request headers: `x-mock-delay-ms: MS` waits MS ms (asyncio.sleep) before answering;
`x-mock-retry-after: SECONDS` adds `Retry-After: SECONDS` to a `status:` answer. A bad header
value answers 400.

For every request, a `FaultPlan` (`create_mock_app(plan=...)`, or the options of
`custom-llm-proxy mock-upstream`) sets:

- `latency` (`--latency DIST`): a wait before each answer, drawn per request from `fixed:MS`,
  `uniform:LO-HI`, `exp:MEAN` (exponential) or `normal:MEAN,SD` (clipped at 0), in ms.
  `--delay-ms MS` (and `create_mock_app(delay_ms=MS)`) means `fixed:MS`.
- `error_rate`, `error_statuses` (`--error-rate P`, `--error-status CODE` repeatable, default
  503): that fraction of requests gets a `status:` fault, its code drawn from the statuses.
- `fault`, `fault_rate` (`--fault MODE`, `--fault-rate P`, default 1): a request the error draw
  spared gets MODE with probability P.
- `retry_after` (`--retry-after SECONDS`): `Retry-After` on every `status:` answer.
- `seed` (`--seed N`): seeds the app's own `random.Random`; the same requests in the same order
  then get the same draws.
- `reasoning` (`--reasoning`): answers begin with a `<think>` block (above).
- `call_ms`, `prompt_ms`, `max_calls` (`--call-ms MS`, `--prompt-ms MS`, `--max-calls N`): a
  GPU server's cost, after the latency: each call computes for `call_ms` + `prompt_ms` per
  prompt in its list, at most `max_calls` calls at once; the others queue for their turn. A
  list of prompts then costs little more than one, as on a GPU (app.batching's benchmark).
A request's `x-mock-fault` replaces the error and fault draws, its `x-mock-delay-ms` the latency,
its `x-mock-retry-after` the plan's `retry_after`.

Counters: `GET /_mock/stats` → `{"requests": R, "faults": F, "in_flight": N}`: POSTs received,
POSTs answered with a fault (from a header or the plan), POSTs being handled now.
`POST /_mock/reset-stats` answers the same object and then sets `requests` and `faults` to 0
(`in_flight` is a gauge, not a count). Other methods on these two paths answer 405.
"""

from __future__ import annotations

from app.mock_upstream.format import BadRequest, complete
from app.mock_upstream.plan import (
    DEFAULT_ERROR_STATUSES,
    FAULT_MODES,
    HUGE_DEFAULT_BYTES,
    LATENCY_FORMS,
    Exponential,
    Fault,
    FaultPlan,
    Fixed,
    Latency,
    Normal,
    Uniform,
    draw_ms,
    parse_fault,
    parse_latency,
)
from app.mock_upstream.server import (
    CHUNK_BYTES,
    TRICKLE_LENGTH,
    MockConnectionReset,
    create_mock_app,
    run_mock_upstream,
)

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_ERROR_STATUSES",
    "FAULT_MODES",
    "HUGE_DEFAULT_BYTES",
    "LATENCY_FORMS",
    "TRICKLE_LENGTH",
    "BadRequest",
    "Exponential",
    "Fault",
    "FaultPlan",
    "Fixed",
    "Latency",
    "MockConnectionReset",
    "Normal",
    "Uniform",
    "complete",
    "create_mock_app",
    "draw_ms",
    "parse_fault",
    "parse_latency",
    "run_mock_upstream",
]
