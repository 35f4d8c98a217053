"""The transformers backend: HF causal LMs (and de-quantized GGUF) under torch.

`backend.TransformersBackend` is the `BackendInterface`; `loading` reads weights (bf16 on
CPU, CUDA when present, GGUF de-quantized once and cached as safetensors), `cache` keeps one
KV slot per sequence and builds each batched step, `sampling` and `structured` pick tokens
(llguidance for grammars), `tokens` maps token ids to bytes, `bench` times raw steps.
Importing a module here imports torch: the registry loads this package only when a model
needs it.

May import: ``llmasos.backends.interface``, ``llmasos.chat_template``, config,
errors and types — nothing of the kernel, server, access or apps.
"""
