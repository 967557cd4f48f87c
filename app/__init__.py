"""custom-llm-proxy: an OpenAI-compatible proxy for custom LLM API endpoints."""

__version__ = "0.1.0"
