"""The HTTP server: OpenAI- and Ollama-compatible APIs over the kernel client."""
