"""openai/chat endpoints."""
