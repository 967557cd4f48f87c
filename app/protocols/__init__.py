"""The front doors: one package per client API (request models, request → Ask, answers, streams)."""
