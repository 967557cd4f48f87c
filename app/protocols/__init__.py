"""The front doors: one package per client API."""
