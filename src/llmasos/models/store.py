"""The model store: `ModelRepository` plus Modelfiles, hub pulls and the built-in models.

`ModelStore` is the concrete `ModelStoreInterface` for ``settings.models_dir``: everything a
repository does, and `create` (from Modelfile text, `llmasos.models.create`), `pull` (from
the Hugging Face hub, `llmasos.models.pull`), and the models shipped in Python packages,
registered on first use (`llmasos.models.builtin`). Those modules use only the repository's
public writer API, so this is the one module that knows all of them. Other layers reach the
store through `ModelStoreInterface` and `open_model_store`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from llmasos.models.builtin import register_builtins
from llmasos.models.create import create_model
from llmasos.models.interface import ModelStoreInterface
from llmasos.models.manifest import Manifest
from llmasos.models.pull import pull_model
from llmasos.models.repository import ModelRepository

if TYPE_CHECKING:
    from llmasos.config import Settings


class ModelStore(ModelRepository):
    """Named, versioned models on disk, with the built-ins registered on first use."""

    def register_builtins(self) -> None:
        register_builtins(self)

    def create(self, name: str, modelfile: str, *, base_dir: Path) -> Manifest:
        """Build a model from Modelfile text; relative paths resolve against ``base_dir``."""
        return create_model(self, name, modelfile, base_dir=base_dir)

    def pull(
        self,
        source: str,
        *,
        name: str | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> Manifest:
        """Download ``HF_REPO_ID[:FILE]`` from the Hugging Face hub into the store."""
        return pull_model(self, source, name=name, progress=progress)


def open_model_store(settings: Settings, *, builtins: bool = True) -> ModelStoreInterface:
    """The model store of ``settings.models_dir`` (created on first write)."""
    return ModelStore.open(settings, builtins=builtins)
