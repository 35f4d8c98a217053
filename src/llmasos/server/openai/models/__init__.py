"""openai/models endpoints."""
