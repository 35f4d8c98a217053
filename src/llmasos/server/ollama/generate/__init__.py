"""ollama/generate endpoints."""
