"""Wire formats: OpenAI's (what clients speak) and the custom endpoint's (what upstreams speak)."""
