"""What the model wrote, read: tool calls in its own syntax, reasoning, JSON answers (pure).

One module per tool format (`hermes`, `llama3_json`, `mistral`, `pythonic`), each turning the
whole output text into an `Extraction`; `reasoning` splits a `<think>` block off; `json_answer`
finds, repairs and validates a JSON answer; `checks` holds the calls against the tools the
request offered. Nothing here knows an HTTP API: the front doors build their answers from it.
"""
