"""The HTTP server's application factory.

`create_app` wires the OpenAI-compatible ``/v1`` routes, the Ollama-compatible ``/api``
routes and the operational routes onto one FastAPI app that talks only to the kernel's
`EngineClientInterface` and to a `ModelStoreInterface`. It owns neither: the caller starts
and closes them (``llmasos serve`` does). `middleware_stack` lists, outermost first, what
every request passes through before a route.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.middleware import Middleware

from llmasos import __version__
from llmasos.access.keys import KeyManager
from llmasos.apps.offer import recommendation_candidates
from llmasos.config import Settings
from llmasos.errors import ConfigError
from llmasos.kernel.interface import EngineClientInterface
from llmasos.memory.memories import MemoryStore
from llmasos.models import ModelStoreInterface
from llmasos.server.admin.router import admin_router
from llmasos.server.apps.router import apps_router
from llmasos.server.auth import AuthMiddleware
from llmasos.server.context import install_request_id_logging
from llmasos.server.errors import install_exception_handlers
from llmasos.server.memory.router import memory_router
from llmasos.server.memory.serving import MemoryService
from llmasos.server.metering import QuotaMiddleware
from llmasos.server.ollama.embed.router import embed_router
from llmasos.server.ollama.generate.router import generate_router
from llmasos.server.ollama.models.router import ollama_models_router
from llmasos.server.openai.chat.router import chat_router
from llmasos.server.openai.completions.router import completions_router
from llmasos.server.openai.conversations.router import conversations_router
from llmasos.server.openai.conversations.serving import ConversationStoreProvider
from llmasos.server.openai.embeddings.router import embeddings_router
from llmasos.server.openai.models.router import models_router
from llmasos.server.openai.responses.router import responses_router
from llmasos.server.ops import (
    DEFAULT_MAX_BODY_BYTES,
    REQUEST_ID_HEADER,
    BodySizeLimitMiddleware,
    JsonBodyMiddleware,
    RequestIdMiddleware,
    ops_router,
)
from llmasos.server.services.router import services_router
from llmasos.storage.database import Database


def middleware_stack(
    settings: Settings, keys: KeyManager | None, max_body_bytes: int
) -> list[Middleware]:
    """What every request passes through, outermost first: its id (echoed and on every log
    line), CORS (only for the configured origins), the body-size limit (413), then with
    authentication on the API key check and quotas with usage metering, and last the
    JSON-body rule for ``/api`` and ``/v1``."""
    stack = [Middleware(RequestIdMiddleware)]
    if settings.cors_origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["*"],
                allow_headers=["*"],
                expose_headers=[REQUEST_ID_HEADER],
            )
        )
    stack.append(Middleware(BodySizeLimitMiddleware, max_bytes=max_body_bytes))
    if keys is not None:
        stack.append(Middleware(AuthMiddleware, keys=keys, default_model=settings.default_model))
        stack.append(Middleware(QuotaMiddleware, database=keys.database))
    stack.append(Middleware(JsonBodyMiddleware))
    return stack


def create_app(
    settings: Settings,
    engine: EngineClientInterface,
    store: ModelStoreInterface,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    keys: KeyManager | None = None,
    database: Database | None = None,
    memory: MemoryStore | None = None,
) -> FastAPI:
    """The LLMasOS HTTP API over ``engine`` and ``store``; with ``settings.auth`` every
    request but ``/health`` must carry an API key that ``keys`` verifies. Conversations and
    stored responses live in ``database`` (default: the keys' database, else the one the
    settings name, opened on first use). ``memory`` adds ``/v1/memories``,
    ``/v1/recommendations`` and memory in chat completions."""
    if settings.auth and keys is None:
        raise ConfigError("authentication is on but no key store was given to the server")
    install_request_id_logging()
    app = FastAPI(
        title="LLMasOS",
        version=__version__,
        description="OpenAI-compatible (/v1) and Ollama-compatible (/api) APIs over the "
        "LLMasOS kernel.",
        middleware=middleware_stack(settings, keys if settings.auth else None, max_body_bytes),
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.store = store
    install_exception_handlers(app)
    app.include_router(ops_router(engine))
    memory_service = None
    if memory is not None:
        memory_service = MemoryService(memory)
        app.include_router(
            memory_router(memory_service, lambda: recommendation_candidates(settings))
        )
    app.include_router(chat_router(engine, memory_service))
    app.include_router(completions_router(engine))
    app.include_router(embeddings_router(engine))
    stores = ConversationStoreProvider(
        settings, database or (keys.database if keys is not None else None)
    )
    app.include_router(conversations_router(stores))
    app.include_router(responses_router(engine, stores))
    app.include_router(models_router(store))
    app.include_router(generate_router(engine))
    app.include_router(embed_router(engine))
    app.include_router(ollama_models_router(engine, store))
    app.include_router(services_router(engine, settings, store))
    app.include_router(admin_router(settings, keys))
    app.include_router(apps_router(settings))
    return app
