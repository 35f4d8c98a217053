"""Inference backends, the OS's device drivers: `interface.BackendInterface` is the contract.

Built-ins: `llamacpp` (GGUF on CPU, the default), `transformers` (HF models under torch),
`sentence_transformers` (embeddings). They are registered through the same plugin entry point
a third-party backend uses (`llmasos.plugins`), and loaded by name only when a model needs
one. Shared by them: `grammar` (JSON schema to GBNF); chat templates render through
`llmasos.chat_template`, which the model store shares.

May import: config, errors, types and each other's shared modules — nothing of the kernel,
server, access, apps or sdk (backends know nothing about HTTP, users or apps).
"""
