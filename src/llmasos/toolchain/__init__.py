"""The toolchain: what LLMasOS does to models rather than with them.

Datasets (`datasets`, `dataprep`: ``llmasos data``), fine-tuning (`finetune`, on `training`),
pruning and distillation (`compress`), quantizing with llama.cpp's own quantizer
(`quantize`), the per-machine calibration behind ``llmasos tune`` (`tune`), a token-level
perplexity over a backend's logits (`perplexity`), and getting every result back into the
model store as a GGUF llama.cpp serves (`gguf_export`, `registering`).
May import: backends, models (through `ModelStoreInterface`), config, errors, types.
Heavy libraries (llama_cpp, torch, peft, datasketch, pyarrow, matplotlib) are imported
inside the functions that need them.
"""
