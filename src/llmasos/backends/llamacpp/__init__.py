"""The llama.cpp backend: GGUF models through llama-cpp-python's low-level API.

`backend.LlamaCppBackend` is the `BackendInterface` (batched ``llama_decode`` over one KV
pool, prefix sharing between sequences, LoRA adapters); `sampler` builds llama.cpp's native
sampler chain per sequence (GBNF grammars from ``llmasos.backends.grammar``, logprobs).
Importing a module here loads the llama.cpp shared library.

May import: ``llmasos.backends.interface``, ``.grammar``, ``llmasos.chat_template``, config,
errors and types — nothing of the kernel, server, access or apps.
"""
