"""`KnowledgeBase` on SQLite and PostgreSQL: ingestion, search with file filters, chunk
edits, atomic replacement, deletes that leave no index entry behind, and ownership."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from llmasos.access.users import UserManager
from llmasos.config import Settings
from llmasos.errors import NotFoundError
from llmasos.knowledge.filters import parse_filter
from llmasos.knowledge.stores import KnowledgeBase, reindex_after_rotation
from llmasos.storage import Database
from llmasos.storage.rotation import rotate_master_key
from llmasos.storage.schema import KnowledgeChunk, RetrievalEntry, User
from tests.knowledge.conftest import KnowledgeEngine
from tests.storage.conftest import database, settings

__all__ = ["database", "settings"]


def entries(database: Database) -> int:
    with database.session() as session:
        where = RetrievalEntry.collection == "knowledge"
        return int(session.scalar(select(func.count()).select_from(RetrievalEntry).where(where)))


def test_store_lifecycle(settings: Settings, database: Database) -> None:
    kb = KnowledgeBase.open(settings, database, KnowledgeEngine())
    alice = UserManager(database).create("alice", role="user").id

    async def scenario() -> None:
        store = await kb.create_store(alice, name="work")
        one = kb.files.add_bytes(
            alice, "plan.md", b"# Plan\n\nThe launch is in March.", "assistants"
        )
        two = kb.files.add_bytes(alice, "zoo.txt", b"Giraffes eat acacia leaves.", "assistants")
        await kb.add_file(alice, store.id, one.id, attributes={"team": "a"})
        await kb.add_file(alice, store.id, two.id, attributes={"team": "b"})
        await kb.worker.wait_idle()
        assert kb.get_store(alice, store.id).file_counts.completed == 2

        page = await kb.search(alice, [store.id], "launch giraffes")
        assert {r.chunk.filename for r in page.results} == {"plan.md", "zoo.txt"}
        only_b = await kb.search(
            alice, [store.id], "launch giraffes",
            filters=parse_filter({"type": "eq", "key": "team", "value": "b"}),
        )  # fmt: skip
        assert {r.chunk.filename for r in only_b.results} == {"zoo.txt"}

        chunk = page.results[0].chunk
        await kb.update_chunk(alice, store.id, chunk.id, text="Zeppelins are slow.")
        found = await kb.search(alice, [store.id], "zeppelins")
        assert found.results[0].chunk.id == chunk.id
        await kb.update_chunk(alice, store.id, chunk.id, disabled=True)
        found = await kb.search(alice, [store.id], "zeppelins")
        assert chunk.id not in [r.chunk.id for r in found.results]

        changed = kb.files.add_bytes(alice, "plan.md", b"# Plan\n\nLaunch in June.", "assistants")
        await kb.add_file(alice, store.id, changed.id)
        await kb.worker.wait_idle()
        assert {f.file_id for f in kb.list_files(alice, store.id)} == {changed.id, two.id}
        texts = [r.chunk.text for r in (await kb.search(alice, [store.id], "launch")).results]
        assert texts and not any("March" in t for t in texts)

        with pytest.raises(NotFoundError):
            kb.get_store(None, store.id)  # the local owner is not alice
        kb.delete_file(alice, two.id)
        assert entries(database) == 1
        kb.delete_store(alice, store.id)
        assert entries(database) == 0
        with database.session() as session:
            assert session.scalar(select(func.count()).select_from(KnowledgeChunk)) == 0

    asyncio.run(scenario())


def test_deleting_a_user_deletes_their_knowledge(settings: Settings, database: Database) -> None:
    kb = KnowledgeBase.open(settings, database, KnowledgeEngine())
    users = UserManager(database)
    bob = users.create("bob", role="user").id

    async def scenario() -> None:
        store = await kb.create_store(bob, name="b")
        file = kb.files.add_bytes(bob, "b.txt", b"Bob's notes about boats.", "assistants")
        await kb.add_file(bob, store.id, file.id)
        await kb.worker.wait_idle()

    asyncio.run(scenario())
    assert entries(database) == 1
    with database.session(write=True) as session:  # as deleting the user's row does
        session.delete(session.get(User, bob))
    assert entries(database) == 0
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(KnowledgeChunk)) == 0


def test_files_left_in_progress_are_resumed_at_start(
    settings: Settings, database: Database
) -> None:
    """A server stopped mid-indexing: the next one re-queues the row and finishes it."""
    first = KnowledgeBase.open(settings, database, KnowledgeEngine())

    async def stopped() -> str:
        store = await first.create_store(None, name="s")
        file = first.files.add_bytes(None, "a.md", b"# A\n\nAlpha beta.", "assistants")
        first.worker.enqueue = lambda *args: None  # type: ignore[method-assign]  # it stops
        await first.add_file(None, store.id, file.id)
        return store.id

    store_id = asyncio.run(stopped())
    assert first.get_store(None, store_id).status == "in_progress"
    second = KnowledgeBase.open(settings, database, KnowledgeEngine())

    async def restarted() -> None:
        assert await second.worker.resume() == 1
        await second.worker.wait_idle()

    asyncio.run(restarted())
    assert second.get_store(None, store_id).file_counts.completed == 1


def test_a_zip_bomb_docx_fails_alone(settings: Settings, database: Database) -> None:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w") as member:  # 300 MiB unpacked, streamed
            for _ in range(300):
                member.write(b" " * 2**20)
    kb = KnowledgeBase.open(settings, database, KnowledgeEngine())

    async def scenario() -> None:
        store = await kb.create_store(None, name="s")
        bomb = kb.files.add_bytes(None, "bomb.docx", buffer.getvalue(), "assistants")
        await kb.add_file(None, store.id, bomb.id)
        await kb.worker.wait_idle()
        info = kb.get_file(None, store.id, bomb.id)
        assert info.status == "failed" and info.error_code == "invalid_file"
        assert "zip bomb" in (info.error_message or "")

    asyncio.run(scenario())


def test_rotating_the_master_key_keeps_chunks_readable_and_searchable(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLMASOS_SECRET_KEY", raising=False)
    kb = KnowledgeBase.open(settings, database, KnowledgeEngine())

    async def add() -> tuple[str, str, str]:
        store = await kb.create_store(None, name="s")
        file = kb.files.add_bytes(None, "a.md", b"# A\n\nAardvarks dig burrows.", "assistants")
        await kb.add_file(None, store.id, file.id)
        await kb.worker.wait_idle()
        chunk = kb.list_chunks(None, store.id, file.id)[0]
        return store.id, chunk.id, chunk.text

    store_id, chunk_id, text = asyncio.run(add())
    result = rotate_master_key(settings, database)
    assert result.reencrypted["kb_chunks.text"] == 1
    assert reindex_after_rotation(settings, database) == 1
    after = KnowledgeBase.open(settings, database, KnowledgeEngine())
    assert after.get_chunk(None, store_id, chunk_id).text == text
    page = asyncio.run(after.search(None, [store_id], "aardvarks", mode="bm25"))
    assert [r.chunk.id for r in page.results] == [chunk_id]


def test_scanned_pdfs_and_images_are_indexed_through_ocr(
    settings: Settings, database: Database
) -> None:
    from llmasos.knowledge.convert import registered_ocr
    from tests.knowledge.test_convert import scanned_pdf
    from tests.perception.media_fixtures import text_png

    if registered_ocr() is None:
        pytest.skip("no OCR engine (make setup installs tesseract-ocr)")
    engine = KnowledgeEngine()
    kb = KnowledgeBase.open(settings, database, engine)

    async def scenario() -> None:
        store = await kb.create_store(None, name="scans")
        scan = kb.files.add_bytes(
            None, "scan.pdf", scanned_pdf([["Invoice for the harbour crane"]]), "assistants"
        )
        await kb.add_file(None, store.id, scan.id)
        await kb.worker.wait_idle()
        assert kb.get_file(None, store.id, scan.id).status == "completed"
        chunks = kb.list_chunks(None, store.id, scan.id)
        assert any("harbour" in chunk.text.lower() for chunk in chunks)
        # a photographed page, uploaded as an image, is read the same way
        photo = kb.files.add_bytes(
            None, "whiteboard.png", text_png(["Ferry timetable for winter"]), "assistants"
        )
        await kb.add_file(None, store.id, photo.id)
        await kb.worker.wait_idle()
        assert kb.get_file(None, store.id, photo.id).status == "completed"
        chunks = kb.list_chunks(None, store.id, photo.id)
        assert any("ferry" in chunk.text.lower() for chunk in chunks)

    asyncio.run(scenario())
    # every image was read as a job in the kernel's OCR lane, for the files' owner
    done = {"kind": "ocr", "outcome": "done"}
    assert engine.lanes.metrics.registry.get_sample_value("llmasos:job_lane_jobs_total", done) == 2
    assert engine.lanes.shares.snapshot().keys() == {"anonymous"}
