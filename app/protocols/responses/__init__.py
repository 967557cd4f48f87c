"""OpenAI's Responses API (POST /v1/responses): request models, request → Ask, answers, events."""
