"""OpenAI's Vector Stores API: ``/v1/vector_stores`` (stores, their files, search) and
chunk editing."""
