"""The model store: named, versioned, content-addressed models (the OS's disk of models).

The one door is `ModelStoreInterface`, and `open_model_store(settings)` gives the store of a
machine: the layers above hold a store only through those two names (import-linter checks
that they never import the concrete `store`, `repository`, `create`, `pull` or `builtin`
modules); they may read the data types (`manifest`, `names`, `gguf_info`). Inside:
`repository` (blobs, manifests, versions, the writer API), `create` (Modelfiles), `pull`
(the hub), `builtin` (models shipped in packages) and `store`, which puts them together.

May import: the shared modules (config, errors, types, `llmasos.chat_template`) and itself.
"""

from llmasos.models.interface import ModelStoreInterface, PullProgress
from llmasos.models.store import open_model_store

__all__ = ["ModelStoreInterface", "PullProgress", "open_model_store"]
