"""Orchard: a local-first LLM studio."""

__version__ = "0.1.0"
