"""openai/completions endpoints."""
