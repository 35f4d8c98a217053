"""openai/embeddings endpoints."""
