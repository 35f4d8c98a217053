"""The store's models as OpenAI model cards; every name and alias is an id. Remote
providers' models follow, owned by ``remote``."""

from __future__ import annotations

from llmasos.kernel.interface import EngineClientInterface
from llmasos.models import ModelStoreInterface
from llmasos.models.manifest import Manifest
from llmasos.server.openai.models.protocol import ModelCard, ModelList
from llmasos.server.store_access import created_at, in_thread, name_aliases


def card(name: str, manifest: Manifest) -> ModelCard:
    owner = name.split("/", 1)[0] if "/" in name else "library"
    return ModelCard(id=name, created=int(created_at(manifest).timestamp()), owned_by=owner)


REMOTE_OWNER = "remote"


class ModelsService:
    def __init__(self, store: ModelStoreInterface, engine: EngineClientInterface) -> None:
        self.store = store
        self.engine = engine

    async def list(self) -> ModelList:
        entries = await in_thread(self.store.list)
        cards: list[ModelCard] = []
        seen: set[str] = set()
        for name, manifest in entries:
            for alias in name_aliases(name):
                if alias not in seen:
                    seen.add(alias)
                    cards.append(card(alias, manifest))
        for remote in self.engine.remote_models():
            for alias in name_aliases(remote.name):
                if alias not in seen:
                    seen.add(alias)
                    cards.append(ModelCard(id=alias, created=0, owned_by=REMOTE_OWNER))
        return ModelList(data=cards)

    async def get(self, model_id: str) -> ModelCard:
        for remote in self.engine.remote_models():
            if model_id in name_aliases(remote.name):
                return ModelCard(id=model_id, created=0, owned_by=REMOTE_OWNER)
        manifest = await in_thread(self.store.manifest, model_id)
        return card(model_id, manifest)
