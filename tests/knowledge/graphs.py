"""A deterministic graph extractor for tests, plugged in where the model's goes
(`KnowledgeBase(graph_extractor=...)`), and a knowledge base that uses it."""

from __future__ import annotations

import re

from llmasos.config import Settings
from llmasos.kernel.interface import EngineClientInterface
from llmasos.knowledge.files import FileStore
from llmasos.knowledge.graphextract import GraphExtractorInterface, Triple
from llmasos.knowledge.stores import KnowledgeBase
from llmasos.storage import Database
from llmasos.storage.crypto import load_master_key

_FACT = re.compile(r"([A-Z]\w+) (\w+(?: \w+)?) ([A-Z]\w+)\.")


class SentenceExtractor(GraphExtractorInterface):
    """ "Maria manages Acme." -> (Maria, manages, Acme): one triple per such sentence."""

    model = "sentences"

    def __init__(self) -> None:
        self.read: list[str] = []

    async def extract(self, text: str, *, tenant: str = "anonymous") -> list[Triple]:
        self.read.append(text)
        return [Triple(s, "other", p, o, "other") for s, p, o in _FACT.findall(text)]


def graph_kb(
    settings: Settings, database: Database, engine: EngineClientInterface
) -> tuple[KnowledgeBase, SentenceExtractor]:
    extractor = SentenceExtractor()
    kb = KnowledgeBase(
        database,
        engine,
        FileStore.open(settings, database),
        master_key=load_master_key(settings),
        embedding_model=settings.default_embedding_model,
        graph_extractor=extractor,
    )
    return kb, extractor
