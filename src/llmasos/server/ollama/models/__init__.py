"""ollama/models endpoints."""
