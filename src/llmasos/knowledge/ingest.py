"""Ingestion: a file attached to a vector store becomes chunks in the index, in the background.

`IngestionWorker` runs one job at a time on the server's event loop (the embedding model is
one model; jobs queue behind each other). A job, for one ``vector_store_files`` row:

1. reads the file's blob and converts it (`llmasos.knowledge.convert`): an unsupported or
   corrupt file fails *that file* with ``last_error`` (``unsupported_file`` /
   ``invalid_file``) and the store stays usable; each image it reads by OCR (an image file,
   the scanned pages of a PDF) is a job in the kernel's ``ocr`` lane on behalf of the
   file's owner (the kernel's run_job syscall), so indexing a scan shares the OCR workers
   fairly with the API's requests and counts against its owner's share;
2. chunks it (`llmasos.knowledge.chunking`) with the row's size and overlap, counting
   tokens with the embedding model's own tokenizer (the kernel's tokenize syscall), so no
   chunk is longer than the model reads;
3. embeds the chunks through the kernel's embed syscall in batches of `EMBED_BATCH`,
   writing ``chunks_done`` after each batch (the progress clients poll);
4. in **one transaction**: drops the row's previous chunks and the chunks of any other file
   of the same name in the store (a changed file re-added replaces the old one), inserts
   the new chunks (text sealed) and their index entries, and marks the row ``completed``.
   Search sees the old chunks or the new ones, never a mix and never none in between.

Hand work survives re-indexing: a chunk edited or disabled by hand keeps the chunker's text
(``original_text``); when the file (or a changed file of the same name) is indexed again,
every new chunk whose text is an old chunk's original gets that chunk's edited text and
disabled flag back. A chunk whose source text changed starts fresh (the log says how many).

A row that was removed or re-queued while the job ran (its ``updated_at`` moved) is left
alone: the job's result is dropped. At start `resume` re-queues rows left ``in_progress``
by a stopped server. A job runs under the process's claim on its row
(`llmasos.storage.claims`), so with several servers on one database a row is indexed by one
of them at a time: a server starting while another indexes the row leaves it alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Final

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.orm import Session

from llmasos.errors import ContextLengthExceededError, InvalidRequestError, LLMasOSError
from llmasos.kernel.interface import EngineClientInterface, JobRequest
from llmasos.knowledge.chunking import Chunk, chunk_document
from llmasos.knowledge.convert import OcrReader, UnsupportedFileError, convert, registered_ocr
from llmasos.models.blobs import BlobStore
from llmasos.retrieval.hybrid import HybridIndex
from llmasos.retrieval.interface import IndexEntry
from llmasos.storage.crypto import ContentCipher
from llmasos.storage.database import Database
from llmasos.storage.schema import (
    KB_CHUNK_ORIGINAL_CONTEXT,
    KB_CHUNK_TEXT_CONTEXT,
    KnowledgeChunk,
    KnowledgeFile,
    User,
    VectorStoreFile,
)

logger = logging.getLogger(__name__)

EMBED_BATCH: Final = 32
CHUNK_KIND: Final = "chunk"
CLAIM_KIND: Final = "vector_store_file"


@dataclass(frozen=True)
class Job:
    store_file_id: int
    queued_at: datetime


@dataclass(frozen=True)
class HandWork:
    """What a person did to a chunk: the chunker's text, theirs (None: not edited), and
    whether they took it out of search."""

    original: str
    edited: str | None
    disabled: bool


def chunk_entry(row: KnowledgeChunk, text: str, embedding: list[float] | None) -> IndexEntry:
    """The index entry of a chunk (metadata: its file, so searches can filter by file)."""
    return IndexEntry(
        ref_id=row.id,
        namespace=row.vector_store_id,
        text=text,
        embedding=embedding,
        created_at=row.created_at,
        user_id=row.user_id,
        kind=CHUNK_KIND,
        metadata={"file_id": row.file_id},
    )


def remove_chunks(session: Session, index: HybridIndex, where: ColumnElement[bool]) -> None:
    """Delete the chunks matching ``where`` and their index entries (same transaction)."""
    ids = list(session.scalars(select(KnowledgeChunk.id).where(where)))
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        index.remove(session, part)
        session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.id.in_(part)))


def insert_chunks(
    session: Session,
    index: HybridIndex,
    cipher: ContentCipher,
    store_file: VectorStoreFile,
    chunks: Sequence[Chunk],
    vectors: Sequence[Sequence[float]],
    now: datetime,
    hand: Sequence[HandWork | None] | None = None,
) -> list[KnowledgeChunk]:
    """Rows for a store file's chunks (text sealed) and their index entries, in the caller's
    transaction; ``hand`` (one per chunk) restores what a person did to them (the chunk's
    text is then already theirs)."""
    work = list(hand) if hand is not None else [None] * len(chunks)
    rows = [
        KnowledgeChunk(
            store_file_id=store_file.id,
            vector_store_id=store_file.vector_store_id,
            file_id=store_file.file_id,
            user_id=store_file.user_id,
            position=chunk.index,
            text=b"",
            tokens=chunk.tokens,
            page=chunk.page,
            headings=list(chunk.headings),
            disabled=done is not None and done.disabled,
            edited=done is not None and done.edited is not None,
            created_at=now,
            updated_at=now,
        )
        for chunk, done in zip(chunks, work, strict=True)
    ]
    session.add_all(rows)
    session.flush()
    for row, chunk, done in zip(rows, chunks, work, strict=True):
        row.text = cipher.encrypt(chunk.text, context=KB_CHUNK_TEXT_CONTEXT.format(id=row.id))
        if done is not None:
            row.original_text = cipher.encrypt(
                done.original, context=KB_CHUNK_ORIGINAL_CONTEXT.format(id=row.id)
            )
    index.add(
        session,
        [
            chunk_entry(row, chunk.text, list(vector))
            for row, chunk, vector in zip(rows, chunks, vectors, strict=True)
            if not row.disabled
        ],
    )
    return rows


def reapply_hand_work(
    chunks: Sequence[Chunk], hand: dict[str, HandWork], count_tokens: Callable[[str], int]
) -> tuple[list[Chunk], list[HandWork | None]]:
    """The chunks with a person's edits put back (text and token count) and, per chunk, the
    hand work it carries: matched by the chunker's text, so only unchanged source text
    gets its edit back."""
    out: list[Chunk] = []
    work: list[HandWork | None] = []
    for chunk in chunks:
        done = hand.get(chunk.text)
        if done is not None and done.edited is not None:
            chunk = replace(chunk, text=done.edited, tokens=count_tokens(done.edited))
        out.append(chunk)
        work.append(done)
    return out, work


class IngestionFailed(LLMasOSError):
    """A file that cannot be indexed; ``code`` is OpenAI's ``last_error.code``."""


class IngestionWorker:
    """The background queue of ingestion jobs of one process."""

    def __init__(
        self,
        database: Database,
        index: HybridIndex,
        cipher: ContentCipher,
        engine: EngineClientInterface,
        blobs: BlobStore,
        embedding_model: str | None,
    ) -> None:
        self.database = database
        self.index = index
        self.cipher = cipher
        self.engine = engine
        self.blobs = blobs
        self.embedding_model = embedding_model
        self._queue: asyncio.Queue[Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._idle: asyncio.Event | None = None

    # --- the queue -------------------------------------------------------------------------

    def enqueue(self, store_file_id: int, queued_at: datetime) -> None:
        """Queue a job (call on the event loop); the worker starts on first use."""
        if self._queue is None or self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._idle = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())
        assert self._idle is not None
        self._idle.clear()
        self._queue.put_nowait(Job(store_file_id, queued_at))

    async def resume(self) -> int:
        """Re-queue the rows a stopped process left in progress; how many."""

        def pending() -> list[tuple[int, datetime]]:
            with self.database.session() as session:
                rows = session.execute(
                    select(VectorStoreFile.id, VectorStoreFile.updated_at)
                    .where(VectorStoreFile.status == "in_progress")
                    .order_by(VectorStoreFile.id)
                ).all()
                return [(int(i), u) for i, u in rows]

        rows = await asyncio.to_thread(pending)
        for row_id, updated in rows:
            self.enqueue(row_id, updated)
        return len(rows)

    async def wait_idle(self) -> None:
        """Until every queued job is done (tests, the CLI's local mode)."""
        if self._queue is None or self._idle is None:
            return
        while not (self._queue.empty() and self._idle.is_set()):
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        assert self._queue is not None and self._idle is not None
        while True:
            if self._queue.empty():
                self._idle.set()
            job = await self._queue.get()
            self._idle.clear()
            try:
                await self.process(job)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not stop the queue: the row says it failed
                logger.exception("ingestion of vector store file %s failed", job.store_file_id)
                await asyncio.to_thread(
                    self._fail, job, "server_error", "internal error while indexing the file"
                )

    # --- one job ---------------------------------------------------------------------------

    async def process(self, job: Job) -> None:
        """Index one row under this process's claim on it; a row another live server is
        indexing (several servers on one database) is left to that server."""
        claims, item = self.database.claims, str(job.store_file_id)
        if not await asyncio.to_thread(claims.claim, CLAIM_KIND, item):
            return
        try:
            await self._process_claimed(job)
        finally:
            await asyncio.to_thread(claims.release, CLAIM_KIND, item)

    async def _process_claimed(self, job: Job) -> None:
        loaded = await asyncio.to_thread(self._load, job)
        if loaded is None:
            return
        data, filename, max_tokens, overlap, tenant = loaded
        try:
            chunks = await self._chunk(data, filename, max_tokens, overlap, tenant)
            if not chunks:
                raise IngestionFailed("the file has no text to index", code="invalid_file")
            chunks, hand = await self._reapply(job, filename, chunks)
            await asyncio.to_thread(self._progress, job, len(chunks), 0)
            vectors: list[list[float]] = []
            for start in range(0, len(chunks), EMBED_BATCH):
                batch = [c.text for c in chunks[start : start + EMBED_BATCH]]
                result = await self.engine.embed(self.embedding_model, batch)
                vectors.extend(result.vectors)
                await asyncio.to_thread(self._progress, job, len(chunks), len(vectors))
        except IngestionFailed as error:
            await asyncio.to_thread(self._fail, job, error.code or "invalid_file", error.message)
            return
        except ContextLengthExceededError as error:  # the chunk size is past the model's
            message = (
                f"{error.message}; add the file again with a smaller max_chunk_size_tokens "
                f"(this store's is {max_tokens})"
            )
            await asyncio.to_thread(self._fail, job, "invalid_file", message)
            return
        except InvalidRequestError as error:  # from the converter
            code = "unsupported_file" if isinstance(error, UnsupportedFileError) else "invalid_file"
            await asyncio.to_thread(self._fail, job, code, error.message)
            return
        except LLMasOSError as error:  # the kernel: no model, queue full, timeout ...
            await asyncio.to_thread(self._fail, job, "server_error", error.message)
            return
        await asyncio.to_thread(self._commit, job, chunks, vectors, hand)

    def _load(self, job: Job) -> tuple[bytes, str, int, int, str] | None:
        """The file's bytes, name, chunking sizes and its owner's tenant name (the machine's
        owner, without a user: ``anonymous``, as the API names it without a key)."""
        with self.database.session() as session:
            row = session.get(VectorStoreFile, job.store_file_id)
            if row is None or row.status != "in_progress" or row.updated_at != job.queued_at:
                return None
            file = session.get(KnowledgeFile, row.file_id)
            if file is None:
                return None
            path: Path = self.blobs.path(file.digest)
            filename, max_tokens, overlap = (
                file.filename,
                row.max_chunk_tokens,
                row.chunk_overlap_tokens,
            )
            owner = session.get(User, row.user_id) if row.user_id is not None else None
            tenant = owner.name if owner is not None else "anonymous"
        try:
            return path.read_bytes(), filename, max_tokens, overlap, tenant
        except OSError as error:
            self._fail(job, "server_error", f"cannot read the file's content: {error.strerror}")
            return None

    async def _chunk(
        self, data: bytes, filename: str, max_tokens: int, overlap: int, tenant: str
    ) -> list[Chunk]:
        loop = asyncio.get_running_loop()
        count = self._token_counter(loop)
        ocr = self._ocr_reader(loop, tenant)

        def work() -> list[Chunk]:
            document = convert(data, filename, ocr=ocr)
            return chunk_document(
                document, max_tokens=max_tokens, overlap_tokens=overlap, count_tokens=count
            )

        return await asyncio.to_thread(work)

    async def _reapply(
        self, job: Job, filename: str, chunks: list[Chunk]
    ) -> tuple[list[Chunk], list[HandWork | None]]:
        """Put back the hand work on this file's chunks (and on the chunks of an older file
        of the same name in the store, which this one replaces)."""
        hand = await asyncio.to_thread(self._hand_work, job, filename)
        if not hand:
            return chunks, [None] * len(chunks)
        count = self._token_counter(asyncio.get_running_loop())
        kept, work = await asyncio.to_thread(reapply_hand_work, chunks, hand, count)
        lost = len(hand) - len({w.original for w in work if w is not None})
        if lost:
            logger.info(
                "re-indexing %s: %d chunk(s) edited or disabled by hand changed in the source "
                "and start fresh",
                filename,
                lost,
            )
        return kept, work

    def _hand_work(self, job: Job, filename: str) -> dict[str, HandWork]:
        with self.database.session() as session:
            row = session.get(VectorStoreFile, job.store_file_id)
            if row is None:
                return {}
            same_name = (
                select(VectorStoreFile.id)
                .join(KnowledgeFile, KnowledgeFile.id == VectorStoreFile.file_id)
                .where(
                    VectorStoreFile.vector_store_id == row.vector_store_id,
                    KnowledgeFile.filename == filename,
                )
            )
            found: dict[str, HandWork] = {}
            for chunk in session.scalars(
                select(KnowledgeChunk)
                .where(
                    KnowledgeChunk.store_file_id.in_(same_name),
                    KnowledgeChunk.original_text.is_not(None),
                )
                .order_by(KnowledgeChunk.id.desc())  # the newest hand work wins
            ):
                assert chunk.original_text is not None
                original = self.cipher.decrypt_text(
                    chunk.original_text, context=KB_CHUNK_ORIGINAL_CONTEXT.format(id=chunk.id)
                )
                text = self.cipher.decrypt_text(
                    chunk.text, context=KB_CHUNK_TEXT_CONTEXT.format(id=chunk.id)
                )
                found.setdefault(
                    original, HandWork(original, text if chunk.edited else None, chunk.disabled)
                )
            return found

    def _ocr_reader(self, loop: asyncio.AbstractEventLoop, tenant: str) -> OcrReader | None:
        """The registered OCR engine as a reader that runs each image as a job in the
        kernel's ``ocr`` lane for ``tenant``, from a worker thread through ``loop``."""
        read = registered_ocr()
        if read is None:
            return None

        def through_kernel(image: bytes) -> str:
            job = JobRequest(kind="ocr", work=lambda: read(image), tenant=tenant)
            return asyncio.run_coroutine_threadsafe(self.engine.run_job(job), loop).result()

        return through_kernel

    def _token_counter(self, loop: asyncio.AbstractEventLoop) -> Callable[[str], int]:
        """Tokens of a text by the embedding model (without its two special tokens), from a
        worker thread through the kernel on ``loop``."""
        model = self.embedding_model

        @lru_cache(maxsize=4096)
        def count(text: str) -> int:
            future = asyncio.run_coroutine_threadsafe(self.engine.tokenize(model, text), loop)
            return max(0, len(future.result()) - 2)

        return count

    def _current(self, session: Session, job: Job) -> VectorStoreFile | None:
        row = session.get(VectorStoreFile, job.store_file_id)
        if row is None or row.status != "in_progress" or row.updated_at != job.queued_at:
            return None
        return row

    def _progress(self, job: Job, total: int, done: int) -> None:
        with self.database.session(write=True) as session:
            row = self._current(session, job)
            if row is not None:
                row.chunks_total, row.chunks_done = total, done

    def _fail(self, job: Job, code: str, message: str) -> None:
        with self.database.session(write=True) as session:
            row = self._current(session, job)
            if row is not None:
                row.status, row.error_code, row.error_message = "failed", code, message[:2000]
                logger.info(
                    "vector store %s: file %s failed: %s", row.vector_store_id, row.file_id, message
                )

    def _commit(
        self,
        job: Job,
        chunks: list[Chunk],
        vectors: list[list[float]],
        hand: list[HandWork | None],
    ) -> None:
        now = datetime.now(UTC)
        with self.database.session(write=True) as session:
            row = self._current(session, job)
            if row is None:
                return
            file = session.get(KnowledgeFile, row.file_id)
            if file is None:
                return
            # the same name added again with other bytes: the newest file replaces the older
            replaced = list(
                session.scalars(
                    select(VectorStoreFile)
                    .join(KnowledgeFile, KnowledgeFile.id == VectorStoreFile.file_id)
                    .where(
                        VectorStoreFile.vector_store_id == row.vector_store_id,
                        VectorStoreFile.id != row.id,
                        KnowledgeFile.filename == file.filename,
                        KnowledgeFile.digest != file.digest,
                        VectorStoreFile.created_at <= row.created_at,
                    )
                )
            )
            for old in replaced:
                remove_chunks(session, self.index, KnowledgeChunk.store_file_id == old.id)
                session.delete(old)
            remove_chunks(session, self.index, KnowledgeChunk.store_file_id == row.id)
            insert_chunks(session, self.index, self.cipher, row, chunks, vectors, now, hand)
            row.status, row.error_code, row.error_message = "completed", None, None
            row.chunks_total = row.chunks_done = len(chunks)
            row.usage_bytes = sum(len(c.text.encode()) for c in chunks)
        logger.info(
            "vector store %s: indexed %s (%d chunks)", row.vector_store_id, row.file_id, len(chunks)
        )
