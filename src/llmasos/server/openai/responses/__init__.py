"""OpenAI-compatible ``/v1/responses``: the Responses API over stored conversations."""
