"""OpenAI-compatible API under ``/v1``: chat, completions, embeddings, models."""
