"""Run the OS as one process — HTTP server, kernel, model store — until SIGINT/SIGTERM.

`serve` is what ``llmasos serve`` runs (the CLI finds it through the plugin registry, as it
would a replacement face). The default model loads in the background at start-up
(``/health`` answers 503 until it is resident). SIGINT/SIGTERM stop accepting connections,
let in-flight streams finish (up to a grace period), then unload every model. A non-loopback
address without authentication is refused, and so is a master key that sealed none of the
database's content (servers sharing a database must share the key).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from llmasos.access.keys import KeyManager
from llmasos.agents import AgentRuntime, TaskStore
from llmasos.config import Settings
from llmasos.distributed.remote import RemoteEngineClient
from llmasos.errors import ConfigError, LLMasOSError
from llmasos.kernel.client import InProcessEngineClient
from llmasos.knowledge.filesystem import FileSystem
from llmasos.knowledge.stores import KnowledgeBase
from llmasos.memory.memories import MemoryStore
from llmasos.models import ModelStoreInterface
from llmasos.net import is_loopback, uvicorn_server
from llmasos.server.app import create_app
from llmasos.server.context import install_request_id_logging
from llmasos.server.os_system import ServerOperatingSystem
from llmasos.storage import ContentCipher, load_master_key, open_database
from llmasos.storage.rotation import check_master_key
from llmasos.toolchain.autotune import tune_when_idle
from llmasos.tools import ToolSystem
from llmasos.tools.personal import personal_of
from llmasos.workflows.system import open_workflows

if TYPE_CHECKING:
    from llmasos.distributed.client import ClusterEngineClient

logger = logging.getLogger("llmasos.serve")

GRACEFUL_SHUTDOWN_SECONDS = 30


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, with the request id when the record has one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(settings: Settings) -> None:
    install_request_id_logging()
    level = getattr(logging, settings.log_level.upper())
    if settings.log_format == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JsonLogFormatter())
        logging.basicConfig(level=level, handlers=[handler], force=True)
    else:
        logging.basicConfig(
            level=level,
            format="%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
            force=True,
        )


def engine_client(settings: Settings, store: ModelStoreInterface) -> RemoteEngineClient:
    """The in-process kernel, or the cluster client when ``cluster_address`` is set, behind
    the remote providers registered with ``llmasos remote add``."""
    inner: InProcessEngineClient | ClusterEngineClient
    if settings.cluster_address:
        from llmasos.distributed.cluster import require_ray

        require_ray()
        from llmasos.distributed.client import ClusterEngineClient

        inner = ClusterEngineClient(settings, store)
    else:
        inner = InProcessEngineClient(settings, store)
    return RemoteEngineClient(settings, inner)


def serve(
    settings: Settings, store: ModelStoreInterface, *, announce: Callable[[str], None]
) -> None:
    """Serve until stopped; ``announce`` gets the one line that says where it listens."""
    if not settings.auth and not is_loopback(settings.host):
        raise ConfigError(
            f"refusing to serve on {settings.host} without authentication: anyone who can "
            "reach it could use it. Add --auth (and create API keys with `llmasos keys "
            "create`), or bind to 127.0.0.1"
        )
    configure_logging(settings)
    database = open_database(settings)  # users and keys, usage, conversations, memory
    cipher = ContentCipher(load_master_key(settings))
    try:
        check_master_key(database, cipher)  # several servers on one database share one key
    except BaseException:
        database.close()
        raise
    keys = KeyManager(database) if settings.auth else None
    engine = engine_client(settings, store)
    memory = MemoryStore.open(settings, database, engine)
    files = FileSystem.open(settings, database, engine)
    knowledge = KnowledgeBase.open(settings, database, engine)
    task_store = TaskStore(database, cipher)
    agents = AgentRuntime(
        task_store,
        ToolSystem(
            settings,
            database,
            engine,
            memory=memory,
            knowledge=knowledge,
            files=files,
            os=ServerOperatingSystem(settings, database, task_store),
        ),
        priority=settings.task_priority,
    )
    workflows = open_workflows(
        settings, database, engine, store, memory=memory, knowledge=knowledge, files=files
    )
    api = create_app(
        settings,
        engine,
        store,
        keys=keys,
        database=database,
        memory=memory,
        files=files,
        knowledge=knowledge,
        personal=personal_of(settings, database, engine),  # its scheduler runs in the lifespan
        agents=agents,
        workflows=workflows,
        console=True,
    )
    server = uvicorn_server(
        api,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        log_config=None,
    )

    async def warm_up() -> None:
        try:
            await engine.warm_up(settings.default_model)
            logger.info("default model %s is loaded", settings.default_model)
        except LLMasOSError as error:
            logger.warning("default model %s not loaded: %s", settings.default_model, error)

    def busy() -> bool:
        return any(m.running or m.waiting for m in engine.resident_models())

    async def run() -> None:
        warming = asyncio.create_task(warm_up())
        # the first start on a machine tunes the default model's format (on a cluster, the
        # model runs on the nodes)
        tuning = (
            None
            if settings.cluster_address
            else asyncio.create_task(tune_when_idle(settings, store, busy))
        )
        resumed = await knowledge.worker.resume()
        await asyncio.to_thread(knowledge.graph.mark_interrupted)
        if resumed:
            logger.info("resuming the indexing of %d vector store files", resumed)
        resumed = await agents.resume()
        if resumed:
            logger.info("resuming %d agent tasks", resumed)
        runs = await workflows.resume_unfinished()
        if runs:
            logger.info("resuming %d workflow runs", runs)
        workflows.start_scheduler()
        try:
            await server.serve()
        finally:
            warming.cancel()
            if tuning is not None:
                tuning.cancel()
            await agents.close()  # running tasks stay "running" and resume at the next start
            await workflows.close()
            await knowledge.worker.close()
            await knowledge.graph.close()
            await engine.close()
            database.close()

    announce(
        f"LLMasOS listening on http://{settings.host}:{settings.port} "
        f"(default model {settings.default_model})"
    )
    asyncio.run(run())
    if not server.started:
        raise LLMasOSError(
            f"could not start the server on {settings.host}:{settings.port} (is the port in use?)"
        )
