"""The dataset registry: prepared datasets under ``$LLMASOS_HOME/datasets/<name>/``.

A dataset is a directory holding ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl``
(one JSON object per row, in the task's format), ``dataset.json`` (its `DatasetManifest`:
task, source, splits with the sha256 digest and row and token counts of each file, labels)
and the data-prep report (``report.json``, ``tokens.png``). A dataset's digest is the sha256
of its split digests, so two preparations that produced the same rows share a digest.

`publish` moves a fully written staging directory into place with one ``os.replace``, so a
dataset is either wholly registered or absent. Names are ``[a-z0-9][a-z0-9._-]*``.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from llmasos.errors import InvalidRequestError, NotFoundError, StorageError

Task = Literal["chat", "completion", "classification"]
TASKS: tuple[Task, ...] = ("chat", "completion", "classification")
SPLITS = ("train", "validation", "test")
MANIFEST = "dataset.json"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class SplitInfo:
    rows: int
    digest: str
    """``sha256:<hex>`` of the split's jsonl file."""
    tokens: int
    """Tokens of the rows as the model sees them (chat rows rendered with its template)."""


@dataclass(frozen=True)
class DatasetManifest:
    name: str
    task: Task
    digest: str
    """sha256 of the split digests in split order."""
    source: str
    """The input file's path."""
    source_digest: str
    model: str
    """The model whose tokenizer counted the tokens."""
    splits: dict[str, SplitInfo]
    labels: list[str] = field(default_factory=list)
    """Classification: the labels, sorted."""
    created_at: str = ""

    @property
    def short_id(self) -> str:
        return self.digest.removeprefix("sha256:")[:12]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetManifest:
        splits = {k: SplitInfo(**v) for k, v in data["splits"].items()}
        return cls(**{**data, "splits": splits})


def file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return f"sha256:{sha.hexdigest()}"


def combined_digest(digests: list[str]) -> str:
    joined = "\n".join(digests).encode()
    return f"sha256:{hashlib.sha256(joined).hexdigest()}"


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InvalidRequestError(
            f"dataset name {name!r} must be lowercase letters, digits, '.', '_' or '-' "
            "(at most 64, starting with a letter or digit)",
            param="name",
        )
    return name


class DatasetRegistry:
    """Prepared datasets in one directory (``settings.home / "datasets"``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / check_name(name)

    def exists(self, name: str) -> bool:
        return (self.path(name) / MANIFEST).is_file()

    def get(self, name: str) -> DatasetManifest:
        manifest = self.path(name) / MANIFEST
        if not manifest.is_file():
            known = ", ".join(m.name for m in self.list()) or "none"
            raise NotFoundError(
                f"no dataset named {name!r} (prepared: {known}; `llmasos data prep` makes one)"
            )
        return DatasetManifest.from_dict(json.loads(manifest.read_text()))

    def list(self) -> list[DatasetManifest]:
        if not self.root.is_dir():
            return []
        found = []
        for entry in sorted(self.root.iterdir()):
            if (entry / MANIFEST).is_file() and NAME_PATTERN.match(entry.name):
                found.append(DatasetManifest.from_dict(json.loads((entry / MANIFEST).read_text())))
        return found

    def rows(self, name: str, split: str) -> builtins.list[dict[str, Any]]:
        """The rows of one split of ``name``."""
        if split not in SPLITS:
            raise InvalidRequestError(f"split {split!r} is not one of {', '.join(SPLITS)}")
        self.get(name)
        with (self.path(name) / f"{split}.jsonl").open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def report(self, name: str) -> dict[str, Any]:
        self.get(name)
        report = self.path(name) / "report.json"
        return dict(json.loads(report.read_text())) if report.is_file() else {}

    def remove(self, name: str) -> None:
        self.get(name)
        target = self.path(name)
        trash = target.with_name(f".rm-{target.name}-{os.getpid()}")
        try:
            os.replace(target, trash)
            shutil.rmtree(trash)
        except OSError as error:
            raise StorageError(f"could not remove dataset {name}: {error}") from None

    def staging(self, name: str) -> Path:
        """A fresh directory to write ``name`` into before `publish`."""
        check_name(name)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            staging = self.root / f".tmp-{name}-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
        except OSError as error:
            raise StorageError(f"cannot write datasets in {self.root}: {error}") from None
        return staging

    def publish(self, staging: Path, manifest: DatasetManifest, *, replace: bool) -> None:
        """Write the manifest into ``staging`` and move it into place as ``manifest.name``."""
        target = self.path(manifest.name)
        try:
            (staging / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2))
            if target.exists():
                if not replace:
                    raise InvalidRequestError(
                        f"a dataset named {manifest.name!r} exists; "
                        "remove it (`llmasos data rm`) or pass --force"
                    )
                old = target.with_name(f".old-{target.name}-{os.getpid()}")
                os.replace(target, old)
                os.replace(staging, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(staging, target)
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise StorageError(f"could not register dataset {manifest.name}: {error}") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
