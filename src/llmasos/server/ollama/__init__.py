"""Ollama-compatible API under ``/api``: generate/chat, embeddings, model management."""
