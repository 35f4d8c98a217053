"""The HTTP server's application factory.

`create_app` wires the OpenAI-compatible ``/v1`` routes, the Ollama-compatible ``/api``
routes and the operational routes onto one FastAPI app that talks only to the kernel's
`EngineClientInterface` and to a `ModelStoreInterface`. It owns neither: the caller starts
and closes them (``llmasos serve`` does). `middleware_stack` lists, outermost first, what
every request passes through before a route.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.middleware import Middleware
from starlette.routing import Route

from llmasos import __version__
from llmasos.access.keys import KeyManager
from llmasos.access.sessions import SessionManager
from llmasos.agents import AgentRuntime
from llmasos.apps.offer import recommendation_candidates
from llmasos.config import Settings
from llmasos.errors import ConfigError
from llmasos.kernel.interface import EngineClientInterface
from llmasos.knowledge.filesystem import FileSystem
from llmasos.knowledge.stores import KnowledgeBase
from llmasos.memory.memories import MemoryStore
from llmasos.models import ModelStoreInterface
from llmasos.net import local_url
from llmasos.perception.service import PerceptionLimits, PerceptionService
from llmasos.server.admin.router import admin_router
from llmasos.server.apps.router import apps_manager_router, apps_router
from llmasos.server.apps.serving import AppsService
from llmasos.server.audio.router import audio_router
from llmasos.server.auth import AuthMiddleware
from llmasos.server.calendar.router import calendar_router
from llmasos.server.console import mount_console
from llmasos.server.context import install_request_id_logging
from llmasos.server.errors import install_exception_handlers
from llmasos.server.fs.router import fs_router
from llmasos.server.fs.serving import FsService
from llmasos.server.mcp.router import mcp_router
from llmasos.server.mcp.serving import McpEndpoint, McpService
from llmasos.server.memory.router import memory_router
from llmasos.server.memory.serving import MemoryService
from llmasos.server.metering import QuotaMiddleware
from llmasos.server.notes.router import notes_router
from llmasos.server.notifications.router import notifications_router
from llmasos.server.ocr.router import ocr_router
from llmasos.server.ollama.embed.router import embed_router
from llmasos.server.ollama.generate.router import generate_router
from llmasos.server.ollama.models.router import ollama_models_router
from llmasos.server.openai.chat.router import chat_router
from llmasos.server.openai.completions.router import completions_router
from llmasos.server.openai.conversations.router import conversations_router
from llmasos.server.openai.conversations.serving import ConversationStoreProvider
from llmasos.server.openai.embeddings.router import embeddings_router
from llmasos.server.openai.files.router import files_router
from llmasos.server.openai.models.router import models_router
from llmasos.server.openai.responses.router import responses_router
from llmasos.server.openai.vector_stores.router import vector_stores_router
from llmasos.server.ops import (
    DEFAULT_MAX_BODY_BYTES,
    REQUEST_ID_HEADER,
    BodySizeLimitMiddleware,
    JsonBodyMiddleware,
    RequestIdMiddleware,
    ops_router,
)
from llmasos.server.outbox.router import outbox_router
from llmasos.server.services.router import services_router
from llmasos.server.session.router import session_router
from llmasos.server.tasks.router import tasks_router
from llmasos.server.vision import ImageReader
from llmasos.server.workflows.router import workflows_router
from llmasos.services.runner import runner_for
from llmasos.storage.database import Database
from llmasos.tools.personal import Personal
from llmasos.workflows.system import Workflows


def middleware_stack(
    settings: Settings,
    keys: KeyManager | None,
    max_body_bytes: int,
    sessions: SessionManager | None = None,
    console: bool = False,
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
    # /v1/files streams its body to disk under its own limit (max_upload_bytes)
    stack.append(
        Middleware(BodySizeLimitMiddleware, max_bytes=max_body_bytes, streamed=("/v1/files",))
    )
    if keys is not None:
        stack.append(
            Middleware(
                AuthMiddleware,
                keys=keys,
                default_model=settings.default_model,
                sessions=sessions,
                console=console,
            )
        )
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
    files: FileSystem | None = None,
    knowledge: KnowledgeBase | None = None,
    personal: Personal | None = None,
    agents: AgentRuntime | None = None,
    workflows: Workflows | None = None,
    console: bool = False,
) -> FastAPI:
    """The LLMasOS HTTP API over ``engine`` and ``store``; with ``settings.auth`` every
    request but ``/health`` must carry an API key that ``keys`` verifies. Conversations and
    stored responses live in ``database`` (default: the keys' database, else the one the
    settings name, opened on first use). ``memory`` adds ``/v1/memories``,
    ``/v1/recommendations`` and memory in chat completions and responses; ``files`` adds
    ``/v1/fs``; ``knowledge`` adds ``/v1/files``, ``/v1/vector_stores`` and grounding on
    vector stores; ``personal`` adds ``/v1/notes``, ``/v1/calendar``, ``/v1/reminders``,
    ``/v1/notifications`` and ``/v1/outbox``, and its reminder scheduler runs for the app's
    lifespan; ``agents`` adds ``/v1/tasks``; ``workflows`` adds ``/v1/workflows``;
    ``console`` mounts the registered web console on every other path
    (`llmasos.server.console`)."""
    if settings.auth and keys is None:
        raise ConfigError("authentication is on but no key store was given to the server")
    install_request_id_logging()

    sessions = SessionManager(keys.database) if settings.auth and keys is not None else None
    stores = ConversationStoreProvider(
        settings, database or (keys.database if keys is not None else None), engine
    )
    mcp_service = McpService(
        settings,
        engine,
        lambda: stores.get().database,
        runner_for(engine, settings.home, store, settings.default_model),
        memory=memory,
        knowledge=knowledge,
        files=files,
    )
    mcp_endpoint = McpEndpoint(mcp_service, auth=settings.auth, host=settings.host)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        """The MCP endpoint's session manager and the reminder scheduler, for the app's life."""
        async with mcp_endpoint.running():
            if personal is not None:
                await personal.start()
            try:
                yield
            finally:
                if personal is not None:
                    await personal.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="LLMasOS",
        version=__version__,
        description="OpenAI-compatible (/v1) and Ollama-compatible (/api) APIs over the "
        "LLMasOS kernel.",
        middleware=middleware_stack(
            settings, keys if settings.auth else None, max_body_bytes, sessions, console
        ),
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.store = store
    install_exception_handlers(app)
    app.include_router(ops_router(engine))
    app.include_router(session_router(sessions))
    memory_service = None
    if memory is not None:
        memory_service = MemoryService(memory, stores.index())
        app.include_router(
            memory_router(memory_service, lambda: recommendation_candidates(settings))
        )
    perception = PerceptionService(
        engine,
        PerceptionLimits(max_audio_seconds=settings.max_audio_seconds),
        store=store,
        speech_model=settings.speech_model,
        voice_model=settings.voice_model,
    )
    app.state.perception = perception
    images = ImageReader(
        perception,
        fetch_image_urls=settings.fetch_image_urls,
        store=store,
        default_model=settings.default_model,
    )
    app.include_router(audio_router(perception))
    app.include_router(ocr_router(perception, fetch_image_urls=settings.fetch_image_urls))
    if files is not None:
        runner = runner_for(engine, settings.home, store, settings.default_model)
        service = FsService(files, engine, runner, settings.home / "fs" / "uploads")
        app.include_router(fs_router(service))
    if knowledge is not None:
        app.include_router(files_router(knowledge))
        app.include_router(vector_stores_router(knowledge))
    if personal is not None:
        app.include_router(notes_router(personal.notes))
        app.include_router(calendar_router(personal.calendar, personal.reminders))
        app.include_router(notifications_router(personal.notifications))
        app.include_router(outbox_router(personal.mail))
    if workflows is not None:
        app.include_router(workflows_router(workflows))
    app.include_router(chat_router(engine, memory_service, images, knowledge, workflows))
    app.include_router(completions_router(engine))
    app.include_router(embeddings_router(engine))
    app.include_router(conversations_router(stores))
    app.include_router(responses_router(engine, stores, memory_service, knowledge))
    app.include_router(models_router(store, engine))
    app.include_router(generate_router(engine, images))
    app.include_router(embed_router(engine))
    app.include_router(ollama_models_router(engine, store))
    app.include_router(services_router(engine, settings, store, knowledge))
    if agents is not None:
        app.include_router(tasks_router(agents, settings.default_model))
    app.include_router(admin_router(settings, keys))
    app.include_router(
        apps_manager_router(
            AppsService(
                settings,
                lambda: stores.get().database,
                local_url(settings.host, settings.port),
            )
        )
    )
    app.include_router(apps_router(settings))
    app.include_router(mcp_router(mcp_service))
    app.router.routes.append(
        Route("/mcp", mcp_endpoint, methods=["GET", "POST", "DELETE"], include_in_schema=False)
    )
    if console:
        mount_console(app, settings)  # last: every API path keeps precedence
    return app
