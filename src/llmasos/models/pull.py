"""``llmasos pull``: download a model from the Hugging Face hub into the store.

Source is ``HF_REPO_ID[:FILE]``. The file list and each LFS file's sha256 come from
``GET {endpoint}/api/models/{repo}/tree/main``; files come from
``GET {endpoint}/{repo}/resolve/main/{file}``; the endpoint is ``$HF_ENDPOINT`` or
https://huggingface.co and ``$HF_TOKEN`` is sent if set. Downloads go to
``blobs/*.partial`` and resume with an HTTP Range request (within a pull, on a dropped
connection, and on the next pull); each file is verified against the hub's sha256 (or git
blob sha1 for small files) before it becomes a blob. A mismatch deletes the download.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from llmasos.errors import DownloadError, InvalidRequestError
from llmasos.models.blobs import CHUNK, storage_error, write_chunk
from llmasos.models.gguf_info import (
    check_projector,
    is_ctranslate2_whisper,
    read_gguf,
    read_hf_dir,
)
from llmasos.models.manifest import BlobRef, Manifest
from llmasos.models.names import parse_name
from llmasos.models.repository import (
    SKIPPED_DIRS,
    SKIPPED_SUFFIXES,
    ModelRepository,
    manifest_from_facts,
    with_projector,
)

Progress = Callable[[str, int, int], None]

ATTEMPTS = 4
GGUF_PREFERENCE = ("q4_k_m", "q4_k_s", "q4_0", "q5_k_m", "q8_0", "q4_1")
PROJECTOR_PREFERENCE = ("f16", "bf16", "f32", "q8_0")
SKIPPED_EXTRA = (".md", ".png", ".jpg", ".jpeg", ".gif", ".pdf", ".gguf")
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_QUANT = re.compile(r"(?i)(?:^|[.-])((?:i?q\d+(?:_[a-z0-9]+)*)|bf16|f16|f32)(?:\.gguf)$")


@dataclass(frozen=True)
class HubFile:
    """One file of a hub repo, as the tree API reports it."""

    path: str
    size: int | None
    sha256: str | None
    """Hex sha256 for LFS files."""
    git_oid: str | None
    """Git blob sha1 for small (non-LFS) files."""


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def parse_source(source: str) -> tuple[str, str | None]:
    """``"owner/repo:file.gguf"`` -> ``("owner/repo", "file.gguf")``."""
    text = source.strip()
    for prefix in ("hf:", "https://huggingface.co/", "huggingface.co/", "hf.co/"):
        text = text.removeprefix(prefix)
    repo, _, file = text.partition(":")
    if not _REPO.match(repo):
        raise InvalidRequestError(
            f"invalid Hugging Face repo {source!r}: expected OWNER/REPO or OWNER/REPO:FILE"
        )
    return repo, file or None


class HubClient:
    """The few hub endpoints a pull needs, with one-line errors."""

    def __init__(self, base: str | None = None) -> None:
        self.base = base or endpoint()
        headers = {"User-Agent": "llmasos"}
        if token := os.environ.get("HF_TOKEN"):
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(
            headers=headers,
            follow_redirects=True,
            timeout=httpx.Timeout(30.0, read=60.0),
        )

    def close(self) -> None:
        self.http.close()

    def unreachable(self, error: Exception) -> DownloadError:
        reason = str(error) or type(error).__name__
        return DownloadError(f"cannot reach {self.base}: {reason} (offline?)")

    def _check(self, response: httpx.Response, what: str) -> None:
        if response.status_code in (401, 403):
            raise DownloadError(f"{what}: access denied (gated or private? set HF_TOKEN)")
        if response.status_code == 404:
            raise DownloadError(f"{what}: not found on {self.base}")
        if response.status_code >= 400:
            raise DownloadError(f"{what}: HTTP {response.status_code} from {self.base}")

    def files(self, repo: str) -> dict[str, HubFile]:
        url = f"{self.base}/api/models/{repo}/tree/main"
        try:
            response = self.http.get(url, params={"recursive": "true"})
        except httpx.TransportError as error:
            raise self.unreachable(error) from None
        self._check(response, f"repository {repo}")
        try:
            entries = response.json()
            result = {}
            for entry in entries:
                if entry.get("type") != "file":
                    continue
                lfs = entry.get("lfs") or {}
                result[entry["path"]] = HubFile(
                    path=entry["path"],
                    size=entry.get("size"),
                    sha256=lfs.get("oid") or lfs.get("sha256"),
                    git_oid=None if lfs else entry.get("oid"),
                )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise DownloadError(f"{self.base} sent an unexpected file list for {repo}") from None
        return result

    def file_url(self, repo: str, path: str) -> str:
        return f"{self.base}/{repo}/resolve/main/{quote(path)}"


def choose_files(repo: str, wanted: str | None, files: dict[str, HubFile]) -> list[HubFile]:
    """The files to download: one GGUF (and its vision projector, when the repo has one),
    or a transformers model's weights, config, tokenizer."""
    if wanted is not None:
        if wanted not in files:
            raise DownloadError(f"{repo} has no file {wanted!r}")
        if not wanted.lower().endswith(".gguf") or _is_projector(wanted):
            raise InvalidRequestError(
                f"{wanted}: pull a model's .gguf file (its mmproj comes with it), or the whole "
                "repo (no :FILE)"
            )
        return [files[wanted], *_projector(files)]
    ggufs = sorted(p for p in files if p.lower().endswith(".gguf") and not _is_projector(p))
    if len(ggufs) == 1:
        return [files[ggufs[0]], *_projector(files)]
    if ggufs:
        for quant in GGUF_PREFERENCE:
            for path in ggufs:
                if _quant(path) == quant:
                    return [files[path], *_projector(files)]
        raise DownloadError(
            f"{repo} has several GGUF files; pick one with {repo}:FILE from: {', '.join(ggufs)}"
        )
    ct2 = is_ctranslate2_whisper(p for p in files if "/" not in p)
    chosen = [
        f
        for p, f in sorted(files.items())
        if not any(part.startswith(".") or part in SKIPPED_DIRS for part in p.split("/"))
        and ((ct2 and p == "model.bin") or not p.lower().endswith(SKIPPED_SUFFIXES + SKIPPED_EXTRA))
    ]
    if ct2:  # a whisper for faster-whisper (CTranslate2): model.bin, config, vocabulary
        return chosen
    if "config.json" not in files or not any(f.path.endswith(".safetensors") for f in chosen):
        raise DownloadError(
            f"{repo} has neither a .gguf file, a transformers model in safetensors format, "
            "nor a CTranslate2 whisper (model.bin, config.json, vocabulary)"
        )
    return chosen


def _is_projector(path: str) -> bool:
    return "mmproj" in path.rsplit("/", 1)[-1].lower()


def _projector(files: dict[str, HubFile]) -> list[HubFile]:
    """The repo's vision projector GGUF, if it has one: the least quantized of them (a
    projector is small, and quantizing it costs more accuracy than it saves)."""
    projectors = sorted(p for p in files if p.lower().endswith(".gguf") and _is_projector(p))
    for quant in PROJECTOR_PREFERENCE:
        for path in projectors:
            if quant in path.rsplit("/", 1)[-1].lower():
                return [files[path]]
    return [files[projectors[0]]] if projectors else []


def _quant(path: str) -> str | None:
    match = _QUANT.search(path.rsplit("/", 1)[-1])
    return match.group(1).lower() if match else None


def default_pull_name(repo: str, file: str | None) -> str:
    namespace, name = (re.sub(r"[^a-z0-9._-]", "-", p.lower()) for p in repo.split("/"))
    tag = (_quant(file) if file else None) or "latest"
    return f"{namespace[:80]}/{name[:80]}:{tag}"


def pull_model(
    store: ModelRepository,
    source: str,
    *,
    name: str | None = None,
    progress: Progress | None = None,
) -> Manifest:
    """Download ``source`` and commit it as ``name`` (default ``owner/repo:QUANT|latest``)."""
    repo, wanted = parse_source(source)
    client = HubClient()
    try:
        files = choose_files(repo, wanted, client.files(repo))
        single = files[0].path if files[0].path.lower().endswith(".gguf") else None
        model = parse_name(name or default_pull_name(repo, single))
        downloads: list[tuple[HubFile, Path, str]] = []
        try:
            for item in files:
                path, digest = _fetch(store, client, repo, item, progress)
                downloads.append((item, path, digest))
            with store.transaction() as tx:
                refs: list[BlobRef] = []
                for item, path, digest in downloads:
                    if path != store.blobs.path(digest):
                        tx.added(digest, store.blobs.adopt(path, digest))
                    refs.append(BlobRef(item.path, digest, store.blobs.path(digest).stat().st_size))
                projector = refs.pop() if single and len(refs) == 2 else None
                blob_paths = {r.path: store.blobs.path(r.digest) for r in refs}
                facts = read_gguf(blob_paths[single]) if single else read_hf_dir(blob_paths, repo)
                label = f"hf:{repo}" + (f":{single}" if single else "")
                manifest = manifest_from_facts(str(model), facts, tuple(refs), label)
                if projector is not None:
                    check_projector(store.blobs.path(projector.digest), facts)
                    manifest = with_projector(manifest, projector)
                return store.commit(tx, model, manifest)
        finally:
            for _, path, digest in downloads:
                if path != store.blobs.path(digest):
                    path.unlink(missing_ok=True)
    finally:
        client.close()


def _partial_path(store: ModelRepository, repo: str, item: HubFile) -> Path:
    key = item.sha256 or hashlib.sha256(f"{repo}/{item.path}".encode()).hexdigest()
    return store.blobs.root / f"sha256-{key}.partial"


def _fetch(
    store: ModelRepository, client: HubClient, repo: str, item: HubFile, progress: Progress | None
) -> tuple[Path, str]:
    """Download one file (resuming) and verify it; returns (verified file, digest)."""
    if item.sha256 and store.blobs.has(f"sha256:{item.sha256}"):
        if progress and item.size:
            progress(f"pulling {item.path}", item.size, item.size)
        return store.blobs.path(f"sha256:{item.sha256}"), f"sha256:{item.sha256}"
    partial = _partial_path(store, repo, item)
    try:
        partial.parent.mkdir(parents=True, exist_ok=True)
        expected = _download(client, client.file_url(repo, item.path), partial, item, progress)
        digest, git_oid = _hash(partial)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise storage_error(error, f"download {item.path}") from None
    want = item.sha256 or expected
    if want and digest != f"sha256:{want}":
        partial.unlink(missing_ok=True)
        raise DownloadError(
            f"{item.path}: sha256 mismatch (expected {want[:12]}, got "
            f"{digest.removeprefix('sha256:')[:12]}); the download was discarded"
        )
    if not want and item.git_oid and git_oid != item.git_oid:
        partial.unlink(missing_ok=True)
        raise DownloadError(f"{item.path}: checksum mismatch; the download was discarded")
    return partial, digest


def _download(
    client: HubClient, url: str, partial: Path, item: HubFile, progress: Progress | None
) -> str | None:
    """Fill ``partial`` with the file, resuming; returns the sha256 the server reported."""
    status = f"pulling {item.path}"
    total = item.size or 0
    reported: str | None = None
    last_error: Exception | None = None
    for attempt in range(ATTEMPTS):
        have = partial.stat().st_size if partial.exists() else 0
        if item.size is not None and have == item.size:
            return reported
        if item.size is not None and have > item.size:
            partial.unlink()
            have = 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with client.http.stream("GET", url, headers=headers) as response:
                if response.status_code == 416:
                    partial.unlink(missing_ok=True)
                    continue
                client._check(response, f"{item.path}")
                reported = _etag_sha256(response.headers) or reported
                if response.status_code != 206:
                    have = 0
                total = item.size or (have + int(response.headers.get("content-length", 0)))
                with partial.open("ab" if have else "wb") as out:
                    for chunk in response.iter_bytes():
                        write_chunk(out, chunk)
                        have += len(chunk)
                        if progress:
                            progress(status, have, total)
            if item.size is None or have >= item.size:
                return reported
        except httpx.TransportError as error:
            if isinstance(error, httpx.ConnectError) and attempt == 0 and not partial.exists():
                raise client.unreachable(error) from None
            last_error = error
            time.sleep(min(0.2 * 2**attempt, 2.0))
    raise DownloadError(
        f"{item.path}: download interrupted ({last_error or 'incomplete'}); "
        "run pull again to resume"
    )


def _etag_sha256(headers: Any) -> str | None:
    for key in ("x-linked-etag", "etag"):
        value = str(headers.get(key, "")).strip('"').removeprefix("W/").strip('"')
        if re.fullmatch(r"[0-9a-f]{64}", value):
            return value
    return None


def _hash(path: Path) -> tuple[str, str]:
    """(``sha256:<hex>``, git blob sha1) of a file."""
    sha256 = hashlib.sha256()
    git = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            sha256.update(chunk)
            git.update(chunk)
    return f"sha256:{sha256.hexdigest()}", git.hexdigest()
