"""What the model store is, for everything above it: `ModelStoreInterface`.

The kernel, services, SDK and server hold a store through this protocol, never through the
concrete class, so a store on another machine (the cluster path) or a fake in a test plugs in
at the same seam. `llmasos.models.store.ModelStore` is the implementation on local disk.
Every method is synchronous (it reads and writes files): async callers run it in a thread.
Unknown names raise `ModelNotFoundError`; disk failures raise `StorageError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from llmasos.models.manifest import Manifest, ResolvedModel
from llmasos.models.tuning import TuningChoice

PullProgress = Callable[[str, int, int], None]
"""``progress(file, bytes_done, bytes_total)`` while a pull downloads."""


class ModelStoreInterface(Protocol):
    """Named, versioned models: read them, resolve them to files, and change the names."""

    def list(self) -> Sequence[tuple[str, Manifest]]:
        """``(canonical name, current manifest)`` for every name, sorted by name."""
        ...

    def manifest(self, name: str, /) -> Manifest:
        """The current manifest of ``name``, or the version ``name@DIGEST_PREFIX``."""
        ...

    def versions(self, name: str, /) -> Sequence[Manifest]:
        """The current manifest first, then older versions newest first."""
        ...

    def resolve(self, name: str, /) -> ResolvedModel:
        """The files of ``name`` on disk, ready for a backend to load."""
        ...

    def canonical_name(self, name: str, /) -> str:
        """``"smollm2"`` -> ``"smollm2:latest"``."""
        ...

    def import_path(
        self, path: Path, /, name: str | None = None, projector: Path | None = None
    ) -> Manifest:
        """Import a .gguf file or a model directory under ``name`` (default: its stem);
        ``projector``: a GGUF model's vision projector (``mmproj``)."""
        ...

    def copy(self, source: str, destination: str, /) -> Manifest:
        """Give ``source`` (or one version of it) a second name."""
        ...

    def remove(self, name: str, /) -> None:
        """Remove a name with all its versions (or one old version ``name@DIGEST``)."""
        ...

    def create(self, name: str, modelfile: str, /, *, base_dir: Path) -> Manifest:
        """Build a model from Modelfile text; relative paths resolve against ``base_dir``."""
        ...

    def pull(
        self, source: str, /, *, name: str | None = None, progress: PullProgress | None = None
    ) -> Manifest:
        """Download ``HF_REPO_ID[:FILE]`` from the Hugging Face hub into the store."""
        ...

    def add_version(self, name: str, path: Path, /, *, quantization: str, source: str) -> Manifest:
        """Add a GGUF derived from ``name``'s current weights as a version of it (not
        current), with ``name``'s template and defaults and ``source`` as provenance."""
        ...

    def add_derived(
        self, name: str, paths: Sequence[Path], /, *, like: str, source: str
    ) -> Manifest:
        """Store models made from ``like`` (fine-tuned, pruned, distilled: a .gguf file or an
        HF directory each) as versions of ``name`` in one change, the last one current; each
        keeps ``like``'s template, system prompt and defaults, with ``source`` as provenance."""
        ...

    def tuning_choice(self, name: str, /) -> TuningChoice | None:
        """The version ``llmasos tune`` chose to serve ``name`` on this machine, if any."""
        ...

    def record_tuning(self, choice: TuningChoice, /) -> None:
        """Serve ``choice.digest`` for ``choice.source`` on this machine (`resolve` does)."""
        ...

    def forget_tuning(self, name: str, /) -> bool:
        """Serve ``name`` as it is again on this machine; False if it was not tuned."""
        ...
