"""Anthropic's Messages API (`POST /v1/messages`) as a front door onto the shared core (pure)."""
