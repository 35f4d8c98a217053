"""The model repository: named, versioned, content-addressed models in one directory.

Layout (see docs/design/models.md)::

    blobs/sha256-<hex>                          file contents, by sha256
    manifests/<namespace>/<name>/<tag>          the current manifest of a name (JSON)
    versions/<namespace>/<name>/<tag>/<hex>     older manifests of that name
    dirs/<manifest hex>/...                     HF layouts made of links to blobs, on resolve
    builtin.json                                which built-in models were registered
    tuning.json                                 the fastest version per machine (`tuning`)

Every change is written to temp files in the target directory and moved into place with
``os.replace`` under an exclusive lock; on any failure the temp files and the blobs the
operation added are removed, so the store is left exactly as it was. Disk errors become
`StorageError`; unknown names become `ModelNotFoundError` with close names suggested.

`ModelRepository` reads, imports, copies and removes models, and is the writer API every
other way in builds on: `transaction` (the lock, and rollback of what a failed change
added), `add_model_files` and `commit`. `llmasos.models.create`, `.pull` and `.builtin` use
only that API; `llmasos.models.store.ModelStore` adds them on top. Nothing here knows about
Modelfiles, the hub or the built-in packages.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from llmasos.errors import InvalidRequestError, ModelFormatError, ModelNotFoundError, StorageError
from llmasos.models.blobs import (
    TEMP_PREFIX,
    BlobStore,
    Transaction,
    storage_error,
    write_text_atomic,
)
from llmasos.models.gguf_info import (
    ModelFacts,
    check_projector,
    is_ctranslate2_whisper,
    read_gguf,
    read_hf_dir,
)
from llmasos.models.known import known_overrides
from llmasos.models.manifest import BlobRef, Manifest, ModelName, ResolvedModel
from llmasos.models.names import not_found_message, parse_name, split_digest
from llmasos.models.tuning import TuningChoice, TuningRecord

if TYPE_CHECKING:
    from llmasos.config import Settings

#: Files in a model directory that are never stored (other weight formats, VCS noise).
SKIPPED_SUFFIXES = (".bin", ".pt", ".pth", ".h5", ".msgpack", ".ot", ".onnx", ".ckpt", ".tflite")
SKIPPED_DIRS = {"onnx", "openvino", "coreml", "flax_model", "tf_model"}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def seal(manifest: Manifest) -> Manifest:
    """The manifest with ``digest`` set to the sha256 of its canonical JSON (minus digest)."""
    data = asdict(manifest)
    data.pop("digest")
    if not data["capabilities"]:
        data.pop("capabilities")  # text-only manifests keep the digests they had
    if data["projector"] is None:
        data.pop("projector")
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return replace(manifest, digest=f"sha256:{hashlib.sha256(canonical.encode()).hexdigest()}")


def manifest_from_facts(
    name: str, facts: ModelFacts, files: tuple[BlobRef, ...], source: str
) -> Manifest:
    """A new manifest from a model's facts; a model LLMasOS knows gets its settings
    (`llmasos.models.known`)."""
    manifest = Manifest(
        name=name,
        format=facts.format,
        kind=facts.kind,
        files=files,
        family=facts.family,
        parameter_count=facts.parameter_count,
        quantization=facts.quantization,
        context_length=facts.context_length,
        embedding_length=facts.embedding_length,
        chat_template=facts.chat_template,
        license=facts.license,
        source=source,
        created_at=now_iso(),
        capabilities=facts.capabilities,
    )
    return seal(replace(manifest, **known_overrides(facts.chat_template)))


def with_projector(manifest: Manifest, projector: BlobRef) -> Manifest:
    """``manifest`` with a vision projector: it sees images (``vision``)."""
    capabilities = tuple(dict.fromkeys((*manifest.capabilities, "vision")))
    return seal(replace(manifest, projector=projector, capabilities=capabilities))


def extra_blobs(manifest: Manifest) -> list[BlobRef]:
    """The blobs of ``manifest`` beside its files: the adapter, the vision projector."""
    return [ref for ref in (manifest.adapter, manifest.projector) if ref is not None]


def default_name(path: Path) -> str:
    """The name ``import`` gives a path: its stem, lowercased, odd characters as ``-``."""
    stem = path.name[: -len(".gguf")] if path.name.lower().endswith(".gguf") else path.name
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._")
    return cleaned or "model"


def model_dir_files(directory: Path) -> dict[str, Path]:
    """The files of a model directory to store (relative path -> path)."""
    files: dict[str, Path] = {}
    # a CTranslate2 model's weights are model.bin: keep it there (and only there)
    ct2 = is_ctranslate2_whisper(p.name for p in directory.iterdir() if p.is_file())
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if any(p.startswith(".") or p in SKIPPED_DIRS for p in relative.parts):
            continue
        kept = ct2 and relative.as_posix() == "model.bin"
        if path.is_file() and (kept or not path.name.endswith(SKIPPED_SUFFIXES)):
            files[relative.as_posix()] = path
    return files


class ModelRepository:
    """Named, versioned models on disk. Safe to share between processes (file lock)."""

    def __init__(self, root: Path, *, builtins: bool = True) -> None:
        self.root = root
        self.blobs = BlobStore(root / "blobs")
        self._builtins = builtins
        self._builtins_checked = False

    @classmethod
    def open(cls, settings: Settings, *, builtins: bool = True) -> Self:
        """The store of ``settings.models_dir``; directories are created on first write."""
        return cls(settings.models_dir, builtins=builtins)

    # -- reading -------------------------------------------------------------------------

    def list(self) -> builtins.list[tuple[str, Manifest]]:
        """``(canonical name, current manifest)`` for every name, sorted by name."""
        self._ensure_builtins()
        return [(str(n), self._read(self._manifest_path(n))) for n in self._all_names()]

    def canonical_name(self, name: str) -> str:
        """``"smollm2"`` -> ``"smollm2:latest"`` (an ``@digest`` suffix is dropped)."""
        return str(parse_name(split_digest(name)[0]))

    def manifest(self, name: str) -> Manifest:
        """The current manifest of ``name``, or the version ``name@DIGEST_PREFIX``."""
        self._ensure_builtins()
        text, digest = split_digest(name)
        model = parse_name(text)
        current = self._current(model, name)
        if digest is None:
            return current
        matches = [
            m
            for m in self._versions(model, current)
            if m.digest.removeprefix("sha256:").startswith(digest)
        ]
        if not matches:
            raise ModelNotFoundError(
                f"model {str(model)!r} has no version {digest!r} "
                f"(see `llmasos show {model} --versions`)"
            )
        if len({m.digest for m in matches}) > 1:
            ids = ", ".join(m.short_id for m in matches)
            raise InvalidRequestError(
                f"version prefix {digest!r} of {str(model)!r} is ambiguous: matches {ids}"
            )
        return matches[0]

    def versions(self, name: str) -> builtins.list[Manifest]:
        """The current manifest first, then older versions newest first."""
        self._ensure_builtins()
        model = parse_name(split_digest(name)[0])
        return self._versions(model, self._current(model, name))

    def resolve(self, name: str) -> ResolvedModel:
        """The files of ``name`` on disk, ready for a backend to load.

        Without an ``@DIGEST``, a name that ``llmasos tune`` tuned on this machine resolves
        to the version it chose (same name, template and defaults; faster weights)."""
        manifest = self.manifest(name)
        if split_digest(name)[1] is None:
            manifest = self._tuned(name, manifest)
        for ref in (*manifest.files, *extra_blobs(manifest)):
            if not self.blobs.has(ref.digest):
                raise StorageError(
                    f"model {manifest.name!r} is damaged: blob {ref.digest} ({ref.path}) is "
                    "missing; import or pull it again"
                )
        adapter: Path | None = None
        if manifest.format == "gguf":
            main = next((f for f in manifest.files if f.path.endswith(".gguf")), manifest.files[0])
            path = self.blobs.path(main.digest)
            if manifest.adapter is not None:
                adapter = self.blobs.path(manifest.adapter.digest)
        else:
            path = self._materialize(manifest)
            if manifest.adapter is not None:
                adapter = path / Path(manifest.adapter.path).parent
        projector = self.blobs.path(manifest.projector.digest) if manifest.projector else None
        return ResolvedModel(
            manifest=manifest, path=path, adapter_path=adapter, projector_path=projector
        )

    def _tuned(self, name: str, current: Manifest) -> Manifest:
        choice = self.tuning.get(current.digest)
        if choice is None or choice.digest == current.digest:
            return current
        model = parse_name(split_digest(name)[0])
        for version in self._versions(model, current):
            if version.digest == choice.digest:
                return version
        # tuned under another tag of the same manifest (`tune smollm2:135m`, then `smollm2`)
        stem = choice.digest.removeprefix("sha256:")
        for path in sorted(self._version_dir(model).parent.glob(f"*/{stem}")):
            if path.is_file():
                return self._read(path)
        return current  # the chosen version was removed: serve what the user has

    @property
    def tuning(self) -> TuningRecord:
        """Which version of each model this machine serves fastest (`llmasos.models.tuning`)."""
        return TuningRecord(self.root / "tuning.json")

    def tuning_choice(self, name: str) -> TuningChoice | None:
        """What ``llmasos tune`` chose for ``name``'s current version on this machine."""
        return self.tuning.get(self.manifest(name).digest)

    def record_tuning(self, choice: TuningChoice) -> None:
        """Serve ``choice.digest`` for ``choice.source`` on this machine from now on."""
        with self._locked():
            self.tuning.put(choice)

    def forget_tuning(self, name: str) -> bool:
        """Serve ``name`` as it is again on this machine; False if it was not tuned."""
        with self._locked():
            return self.tuning.forget(self.manifest(name).digest)

    # -- writing -------------------------------------------------------------------------

    def add_version(self, name: str, path: Path, *, quantization: str, source: str) -> Manifest:
        """Add the GGUF at ``path`` as a version of ``name`` derived from its current one,
        without making it current: the same template, system prompt and defaults, other
        weights. ``source`` is its provenance (what it was made from, and how)."""
        model = parse_name(split_digest(name)[0])
        current = self.manifest(name)
        if current.format != "gguf":
            raise InvalidRequestError(f"{current.name} is not a GGUF model; only GGUFs convert")
        with self.transaction() as tx:
            files, _ = self.add_model_files(tx, Path(path))
            files = tuple(replace(f, path=current.files[0].path) for f in files)
            derived = seal(
                replace(
                    current,
                    files=files,
                    quantization=quantization,
                    source=source,
                    created_at=now_iso(),
                )
            )
            version = self._version_path(model, derived)
            tx.new_paths[:0] = self._missing_dirs(version.parent)
            write_text_atomic(version, derived.to_json())
            tx.new_paths.append(version)
            return derived

    def add_derived(self, name: str, paths: Sequence[Path], *, like: str, source: str) -> Manifest:
        """Store the models at ``paths`` (made from ``like``) as versions of ``name``, all or
        none, the last one current, each with ``like``'s settings and ``source``."""
        if not paths:
            raise InvalidRequestError("nothing to store")
        model = parse_name(name)
        base = self.manifest(like)
        self._ensure_builtins()
        with self.transaction() as tx:
            manifest = base
            for path in paths:
                files, facts = self.add_model_files(tx, Path(path))
                made = manifest_from_facts(str(model), facts, files, source)
                manifest = self.commit(
                    tx,
                    model,
                    seal(
                        replace(
                            made,
                            chat_template=base.chat_template or made.chat_template,
                            system=base.system,
                            parameters=dict(base.parameters),
                            messages=base.messages,
                            license=base.license or made.license,
                        )
                    ),
                )
            return manifest

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Hold the store's lock for one change; on any failure delete what it added.

        Inside, add files with `add_model_files` (or ``blobs``, recording them with
        ``tx.added``) and publish names with `commit`.
        """
        with self._locked():
            tx = Transaction(self.blobs)
            try:
                yield tx
            except OSError as error:
                tx.rollback()
                raise storage_error(error, "update the model store") from None
            except BaseException:
                tx.rollback()
                raise

    def commit(self, tx: Transaction, model: ModelName, manifest: Manifest) -> Manifest:
        """Make ``manifest`` the current version of ``model``; the old one becomes a version."""
        path = self._manifest_path(model)
        if path.is_file():
            old = self._read(path)
            if _same_content(old, manifest):
                return old
            version = self._version_path(model, old)
            if not version.exists():
                tx.new_paths[:0] = self._missing_dirs(version.parent)
                write_text_atomic(version, old.to_json())
                tx.new_paths.append(version)
        tx.new_paths[:0] = self._missing_dirs(path.parent)
        write_text_atomic(path, manifest.to_json())
        return manifest

    def import_path(
        self, path: Path, name: str | None = None, projector: Path | None = None
    ) -> Manifest:
        """Import a .gguf file or an HF model directory under ``name`` (default: its stem);
        ``projector``: a GGUF model's vision projector (``mmproj``), stored beside it."""
        path = Path(path).expanduser()
        model = parse_name(name if name is not None else default_name(path))
        self._ensure_builtins()
        if projector is not None:
            projector = Path(projector).expanduser()
            if not path.is_file():
                raise InvalidRequestError("a vision projector goes with a .gguf model file")
            check_projector(projector, read_gguf(path))
        with self.transaction() as tx:
            files, facts = self.add_model_files(tx, path)
            manifest = manifest_from_facts(str(model), facts, files, str(path.resolve()))
            if projector is not None:
                ref = replace(self._add_blob(tx, projector, False, None), path="mmproj.gguf")
                manifest = with_projector(manifest, ref)
            return self.commit(tx, model, manifest)

    def add_model_files(
        self,
        tx: Transaction,
        path: Path,
        *,
        link: bool = False,
        known: Callable[[Path], str | None] | None = None,
        facts: ModelFacts | None = None,
    ) -> tuple[tuple[BlobRef, ...], ModelFacts]:
        """Read a model's facts (raising before any write), then add its files as blobs.

        ``known`` may give a file's digest without hashing; ``facts`` skips reading them.
        """
        if path.is_file():
            facts = facts or read_gguf(path)
            ref = self._add_blob(tx, path, link, known)
            return (replace(ref, path=path.name if path.suffix else "model.gguf"),), facts
        if path.is_dir():
            if not (path / "config.json").is_file():
                read_hf_dir({}, path.name)  # raises: not a model directory
            entries = model_dir_files(path)
            facts = facts or read_hf_dir(entries, path.name)
            refs = [
                replace(self._add_blob(tx, source, link, known), path=relative)
                for relative, source in entries.items()
            ]
            return tuple(refs), facts
        if path.exists():
            raise ModelFormatError(f"{path} is neither a .gguf file nor a model directory")
        raise ModelNotFoundError(f"no such file or directory: {path}")

    def _add_blob(
        self, tx: Transaction, source: Path, link: bool, known: Callable[[Path], str | None] | None
    ) -> BlobRef:
        digest = known(source) if known else None
        if not self.blobs.root.exists():
            tx.new_paths[:0] = self._missing_dirs(self.blobs.root)
        if digest and self.blobs.has(digest):
            return BlobRef("", digest, source.stat().st_size)
        ref, new = self.blobs.add_file(source, link=link)
        tx.added(ref.digest, new)
        return ref

    def copy(self, source: str, destination: str) -> Manifest:
        """Give the model ``source`` (or one version of it) a second name."""
        target = parse_name(destination)
        manifest = self.manifest(source)
        with self.transaction() as tx:
            copied = seal(replace(manifest, name=str(target), created_at=now_iso()))
            return self.commit(tx, target, copied)

    def remove(self, name: str) -> None:
        """Remove a name with all its versions (or just ``name@DIGEST`` if it is an old one)."""
        text, digest = split_digest(name)
        model = parse_name(text)
        target = self.manifest(name)
        current = self._current(model, name)
        with self._locked():
            if digest is not None and target.digest != current.digest:
                self._version_path(model, target).unlink(missing_ok=True)
            else:
                self._manifest_path(model).unlink(missing_ok=True)
                shutil.rmtree(self._version_dir(model), ignore_errors=True)
                self._prune_empty(self._manifest_path(model).parent, self.root / "manifests")
                self._prune_empty(self._version_dir(model), self.root / "versions")
            self.collect_garbage()

    def collect_garbage(self) -> None:
        """Delete blobs and link directories no manifest refers to."""
        manifests = [self._read(p) for p in self._manifest_files()]
        used = {f.digest for m in manifests for f in m.files}
        used |= {m.adapter.digest for m in manifests if m.adapter}
        used |= {m.projector.digest for m in manifests if m.projector}
        for digest in self.blobs.digests() - used:
            self.blobs.remove(digest)
        live = {m.digest.removeprefix("sha256:") for m in manifests}
        dirs = self.root / "dirs"
        if dirs.is_dir():
            for entry in dirs.iterdir():
                if entry.name not in live:
                    shutil.rmtree(entry, ignore_errors=True)

    # -- internals -----------------------------------------------------------------------

    def _ensure_builtins(self) -> None:
        if self._builtins and not self._builtins_checked:
            self._builtins_checked = True
            self.register_builtins()

    def register_builtins(self) -> None:
        """Register the models shipped in packages (`ModelStore` does; a bare repository has
        none)."""

    def _manifest_path(self, model: ModelName) -> Path:
        return self.root / "manifests" / model.namespace / model.name / model.tag

    def _version_dir(self, model: ModelName) -> Path:
        return self.root / "versions" / model.namespace / model.name / model.tag

    def _version_path(self, model: ModelName, manifest: Manifest) -> Path:
        return self._version_dir(model) / manifest.digest.removeprefix("sha256:")

    def _all_names(self) -> builtins.list[ModelName]:
        base = self.root / "manifests"
        if not base.is_dir():
            return []
        names = []
        for path in base.glob("*/*/*"):
            if path.is_file() and not path.name.startswith(TEMP_PREFIX):
                namespace, name, tag = path.relative_to(base).parts
                names.append(ModelName(namespace, name, tag))
        return sorted(names, key=str)

    def _manifest_files(self) -> Iterator[Path]:
        for top, pattern in (("manifests", "*/*/*"), ("versions", "*/*/*/*")):
            base = self.root / top
            if base.is_dir():
                for path in base.glob(pattern):
                    if path.is_file() and not path.name.startswith(TEMP_PREFIX):
                        yield path

    def _read(self, path: Path) -> Manifest:
        try:
            manifest: Manifest = Manifest.from_json(path.read_text(encoding="utf-8"))
            return manifest
        except OSError as error:
            raise storage_error(error, f"read {path}") from None
        except (ValueError, TypeError, KeyError) as error:
            raise StorageError(f"manifest {path} is corrupt: {error}") from None

    def _current(self, model: ModelName, asked: str) -> Manifest:
        path = self._manifest_path(model)
        if not path.is_file():
            known = [str(n) for n in self._all_names()]
            raise ModelNotFoundError(not_found_message(split_digest(asked)[0], known))
        return self._read(path)

    def _versions(self, model: ModelName, current: Manifest) -> builtins.list[Manifest]:
        directory = self._version_dir(model)
        older = []
        if directory.is_dir():
            older = [
                self._read(p)
                for p in directory.iterdir()
                if p.is_file() and not p.name.startswith(TEMP_PREFIX)
            ]
        older = [m for m in older if m.digest != current.digest]
        older.sort(key=lambda m: m.created_at, reverse=True)
        return [current, *older]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle = (self.root / ".lock").open("a")
        except OSError as error:
            raise storage_error(error, f"write to {self.root}") from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _missing_dirs(self, directory: Path) -> builtins.list[Path]:
        """The ancestors of ``directory`` below the root that do not exist, outermost first."""
        missing: builtins.list[Path] = []
        while directory != self.root and not directory.exists():
            missing.append(directory)
            directory = directory.parent
        return missing[::-1]

    def _materialize(self, manifest: Manifest) -> Path:
        """``dirs/<hex>/`` with each file linked to its blob under its relative path."""
        target = self.root / "dirs" / manifest.digest.removeprefix("sha256:")
        refs = [*manifest.files, *extra_blobs(manifest)]
        if target.is_dir() and all((target / r.path).exists() for r in refs):
            return target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=target.parent))
            try:
                for ref in refs:
                    link = temp / ref.path
                    link.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        os.link(self.blobs.path(ref.digest), link)
                    except OSError:
                        link.symlink_to(self.blobs.path(ref.digest).resolve())
                shutil.rmtree(target, ignore_errors=True)
                os.replace(temp, target)
            except BaseException:
                shutil.rmtree(temp, ignore_errors=True)
                raise
        except OSError as error:
            raise storage_error(error, f"lay out {manifest.name} in {target}") from None
        return target

    @staticmethod
    def _prune_empty(directory: Path, stop: Path) -> None:
        while directory != stop and directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
            directory = directory.parent


def _same_content(a: Manifest, b: Manifest) -> bool:
    def strip(m: Manifest) -> dict[str, Any]:
        data = asdict(m)
        for key in ("digest", "created_at", "source"):
            data.pop(key)
        return data

    return strip(a) == strip(b)
