"""ollama/embed endpoints."""
