"""End-to-end tests: real `serve` and `mock-upstream` processes, driven by the official SDK."""
