"""OpenAI-compatible ``/v1/conversations``: stored conversations and their items."""
