"""`LLM`: one model, used from Python the same way with or without a running server.

``LLM.from_pretrained(name)`` accepts a store name (``smollm2``), a local ``.gguf`` file or
model directory (imported into the store), or a Hugging Face repo id (pulled into the store
when it is not there yet, which needs the network). It talks to a running LLMasOS server when
one answers at the base URL (``LLMASOS_BASE_URL`` or http://127.0.0.1:8000), else it runs the
kernel in this process (`LocalKernel`). ``max_length`` is the number of new tokens, as in
transformers' ``max_new_tokens``; other keywords are sampling parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import httpx

from llmasos.config import Settings, load_settings
from llmasos.errors import InvalidRequestError, ModelNotFoundError
from llmasos.kernel.interface import GenerateRequest
from llmasos.models import ModelStoreInterface, open_model_store
from llmasos.sdk.client import Client, Messages, as_messages, check_sampling, default_base_url
from llmasos.sdk.local import LocalKernel
from llmasos.sdk.types import ServiceResult
from llmasos.services.interface import sampling_values
from llmasos.types import SamplingParams

PROBE_TIMEOUT = 0.5
Mode = Literal["auto", "server", "local"]


def server_answers(base_url: str) -> bool:
    """True when an LLMasOS server answers at ``base_url``."""
    try:
        response = httpx.get(f"{base_url}/", timeout=PROBE_TIMEOUT)
    except httpx.HTTPError:
        return False
    return "LLMasOS" in response.text


def import_or_pull(store: ModelStoreInterface, name: str) -> str:
    """The store name for ``name``: a store name, a local model path, or an HF repo id."""
    path = Path(name).expanduser()
    if path.suffix == ".gguf" or path.is_dir():
        if not path.exists():
            raise ModelNotFoundError(f"no model file or directory at {path}")
        return store.import_path(path).name
    try:
        return store.manifest(name).name
    except ModelNotFoundError:
        if name.count("/") == 1 and ":" not in name.split("/")[0]:
            return store.pull(name).name  # a Hugging Face repo id
        raise


class LLM:
    """A model to generate with. Build it with `from_pretrained`."""

    def __init__(
        self, name: str, *, client: Client | None = None, kernel: LocalKernel | None = None
    ) -> None:
        if (client is None) == (kernel is None):
            raise InvalidRequestError("an LLM needs exactly one of a client or a local kernel")
        self.name = name
        self.client = client
        self.kernel = kernel

    @classmethod
    def from_pretrained(
        cls,
        name: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        mode: Mode = "auto",
        settings: Settings | None = None,
    ) -> LLM:
        """Open ``name``. ``mode``: ``auto`` (a server if one answers), ``server``, ``local``."""
        url = (base_url or default_base_url()).rstrip("/")
        use_server = mode == "server" or (mode == "auto" and server_answers(url))
        if use_server:
            client = Client(url, api_key=api_key)
            if Path(name).expanduser().exists():
                settings = settings or load_settings()
                name = import_or_pull(open_model_store(settings), name)
            return cls(name, client=client)
        kernel = LocalKernel.shared(settings)
        return cls(import_or_pull(kernel.store, name), kernel=kernel)

    @property
    def is_local(self) -> bool:
        return self.kernel is not None

    def close(self) -> None:
        """Close the HTTP client (a shared local kernel stays up until exit)."""
        if self.client is not None:
            self.client.close()

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "in-process" if self.is_local else (self.client.base_url if self.client else "")
        return f"LLM({self.name!r}, {where})"

    # --- generation -----------------------------------------------------------------------

    def generate_text(self, prompt: str, max_length: int | None = None, **sampling: Any) -> str:
        """The model's answer to ``prompt`` (a user message), at most ``max_length`` tokens."""
        return self.chat(prompt, max_length=max_length, **sampling)

    def chat(self, messages: Messages, max_length: int | None = None, **sampling: Any) -> str:
        """The assistant's reply to ``messages`` (a list of role/content dicts or a string)."""
        return "".join(self.stream(messages, max_length=max_length, **sampling))

    def stream(
        self, messages: Messages, max_length: int | None = None, **sampling: Any
    ) -> Iterator[str]:
        """The reply as it is generated, piece by piece."""
        if max_length is not None:
            sampling["max_tokens"] = max_length
        check_sampling(sampling)
        if self.client is not None:
            for chunk in self.client.chat_stream(messages, self.name, **sampling):
                if chunk.text:
                    yield chunk.text
            return
        assert self.kernel is not None
        values = sampling_values(sampling)
        request = GenerateRequest(
            model=self.name,
            messages=as_messages(messages),
            sampling=SamplingParams(**values),
            explicit=frozenset(values),
        )
        for output in self.kernel.iterate(self.kernel.engine.generate(request)):
            if output.text:
                yield output.text

    def embed(self, texts: str | Iterable[str], model: str | None = None) -> list[list[float]]:
        """Embedding vectors. ``model`` defaults to this model when it is an embedding model,
        else to the configured embedding model."""
        items = [texts] if isinstance(texts, str) else list(texts)
        if self.client is not None:
            return self.client.embed(items, model).vectors
        assert self.kernel is not None
        if model is None and self.kernel.store.manifest(self.name).kind == "embed":
            model = self.name
        return self.kernel.run(self.kernel.engine.embed(model, items)).vectors

    def call(
        self,
        service: str,
        input: str | Mapping[str, Any],
        *,
        parameters: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> ServiceResult:
        """Run a named service with this model."""
        if self.client is not None:
            return self.client.call(
                service, input, model=self.name, parameters=parameters, **params
            )
        assert self.kernel is not None
        runner = self.kernel.services
        if isinstance(input, str):
            definition = runner.registry.get(service)
            if definition.text_input is None:
                raise InvalidRequestError(
                    f"service {service} has no main text input: pass the input as a dict"
                )
            data: dict[str, Any] = {definition.text_input: input}
        else:
            data = dict(input)
        data.update(params)
        return self.kernel.run(runner.call(service, data, model=self.name, parameters=parameters))
