"""The semantic file system: versions, the index kept in step, quota, paths and owners."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from llmasos.config import Settings
from llmasos.errors import InvalidRequestError, NotFoundError, PayloadTooLargeError
from llmasos.knowledge.filesystem import FileSystem
from llmasos.knowledge.fstypes import FileExistsConflictError, FindFilters, QuotaExceededError
from llmasos.storage import Database
from llmasos.storage.rotation import rotate_master_key
from llmasos.storage.schema import FsChunk, RetrievalEntry
from tests.knowledge.conftest import ALICE, BOB
from tests.knowledge.documents import docx_bytes, pdf_bytes
from tests.memory.conftest import WordEngine


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


def found(fs: FileSystem, query: str, **filters: object) -> list[str]:
    hits = run(fs.find(ALICE, query, filters=FindFilters(**filters)))  # type: ignore[arg-type]
    return [hit.path for hit in hits]


def by_words(fs: FileSystem, query: str) -> list[str]:
    """Paths whose current texts hold the query's words (BM25 alone: the fake embedder's
    hashed words collide now and then, so absence is checked by words)."""
    return [hit.path for hit in run(fs.find(ALICE, query, mode="bm25"))]


def index_rows(fs: FileSystem) -> int:
    with fs.database.session() as session:
        entries = session.scalar(
            select(func.count())
            .select_from(RetrievalEntry)
            .where(RetrievalEntry.collection == "fs")
        )
        chunks = session.scalar(select(func.count()).select_from(FsChunk))
    assert entries == chunks  # every chunk indexed once, no orphan entries
    return int(entries or 0)


def test_put_get_versions_and_unchanged_content_is_stored_once(fs: FileSystem) -> None:
    first = run(fs.put_bytes(ALICE, "notes/budget.md", b"The budget for 2025 is tight.\n"))
    assert first.path == "/notes/budget.md" and first.version == 1 and first.operation == "write"
    second = run(fs.put_bytes(ALICE, "/notes/budget.md", b"The budget for 2026 is generous.\n"))
    assert second.version == 2 and second.digest != first.digest
    same = run(fs.put_bytes(ALICE, "/notes/budget.md", b"The budget for 2026 is generous.\n"))
    assert same.version == 3 and same.digest == second.digest
    assert fs.read(ALICE, "/notes/budget.md") == b"The budget for 2026 is generous.\n"
    assert fs.read(ALICE, "/notes/budget.md", 1) == b"The budget for 2025 is tight.\n"
    assert len(fs.blobs.digests()) == 2  # three versions, two contents
    assert fs.usage(ALICE)["used_bytes"] == first.size + second.size
    history = fs.history(ALICE, "/notes/budget.md")
    assert [v.version for v in history] == [3, 2, 1]


def test_find_answers_from_the_current_version_after_write_move_delete_and_rollback(
    fs: FileSystem,
) -> None:
    run(fs.put_bytes(ALICE, "/a/plan.txt", b"We will plant tomatoes in the garden."))
    run(fs.put_bytes(ALICE, "/a/other.txt", b"Invoices from the plumber."))
    assert found(fs, "tomatoes garden")[0] == "/a/plan.txt"
    run(fs.put_bytes(ALICE, "/a/plan.txt", b"We will repaint the bathroom ceiling."))
    assert "/a/plan.txt" not in by_words(fs, "tomatoes")
    assert found(fs, "bathroom ceiling")[0] == "/a/plan.txt"
    run(fs.move(ALICE, "/a/plan.txt", "/b/"))
    assert found(fs, "bathroom ceiling")[0] == "/b/plan.txt"
    assert by_words(fs, "plan") == ["/b/plan.txt"]
    run(fs.delete(ALICE, "/b/plan.txt"))
    assert by_words(fs, "bathroom ceiling") == []
    run(fs.rollback(ALICE, "/b/plan.txt"))  # undo the delete
    assert found(fs, "bathroom ceiling")[0] == "/b/plan.txt"
    restored = run(fs.rollback(ALICE, "/b/plan.txt", to=1))  # the tomato text, back at /a
    assert restored.path == "/a/plan.txt" and restored.restored_from == 1
    assert fs.read(ALICE, "/a/plan.txt") == b"We will plant tomatoes in the garden."
    assert found(fs, "tomatoes garden")[0] == "/a/plan.txt"
    assert by_words(fs, "bathroom ceiling") == []
    assert all("bathroom" not in h.snippet for h in run(fs.find(ALICE, "bathroom ceiling")))
    index_rows(fs)


def test_find_filters_by_type_size_and_date_and_one_hit_per_file(fs: FileSystem) -> None:
    run(fs.put_bytes(ALICE, "/doc/long.md", b"# Budget\n\nbudget lines\n\nmore budget"))
    run(fs.put_bytes(ALICE, "/doc/short.txt", b"budget"))
    run(fs.put_bytes(ALICE, "/doc/budget.bin", b"\0\1\2 budget"))
    hits = run(fs.find(ALICE, "budget"))
    assert sorted(h.path for h in hits) == ["/doc/budget.bin", "/doc/long.md", "/doc/short.txt"]
    assert next(h for h in hits if h.path == "/doc/budget.bin").matched == "name"
    assert found(fs, "budget", type="md") == ["/doc/long.md"]
    assert found(fs, "budget", type="binary") == ["/doc/budget.bin"]
    assert found(fs, "budget", max_size=6) == ["/doc/short.txt"]
    assert "/doc/short.txt" not in found(fs, "budget", min_size=7)
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    assert found(fs, "budget", modified_after=tomorrow) == []
    assert len(found(fs, "budget", modified_before=tomorrow)) == 3


def test_binary_files_are_stored_whole_and_found_by_name(fs: FileSystem) -> None:
    data = bytes(range(256)) * 10
    info = run(fs.put_bytes(ALICE, "/photos/holiday-beach.jpg", data))
    assert info.type == "binary" and info.note and "not indexed" in info.note
    assert fs.read(ALICE, "/photos/holiday-beach.jpg") == data
    assert found(fs, "beach holiday") == ["/photos/holiday-beach.jpg"]
    png = run(fs.put_bytes(ALICE, "/photos/board.png", b"\x89PNG\r\n\x1a\n" + bytes(64)))
    assert png.type == "binary" and png.media_type == "image/png"
    assert png.note and "add it to a knowledge base" in png.note


def test_another_owners_paths_are_not_found(fs: FileSystem) -> None:
    run(fs.put_bytes(ALICE, "/secret.txt", b"alice's secret plans"))
    for call in (
        lambda: fs.read(BOB, "/secret.txt"),
        lambda: fs.history(BOB, "/secret.txt"),
        lambda: run(fs.delete(BOB, "/secret.txt")),
        lambda: run(fs.rollback(BOB, "/secret.txt")),
        lambda: run(fs.move(BOB, "/secret.txt", "/mine.txt")),
        lambda: fs.share(BOB, "/secret.txt"),
    ):
        with pytest.raises(NotFoundError):
            call()
    assert run(fs.find(BOB, "secret plans")) == []
    assert fs.list_dir(BOB, "/") == []


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("../etc/passwd", "climbs out"),
        ("/notes/../../etc/passwd", "'..'"),
        ("/a\0b", "NUL"),
        ("/a\nb", "control character"),
        ("/a\x1bb", "control character"),
        ("C:\\Windows\\x", "backslash"),
        ("/" + "x" * 300, "bytes"),
        ("/" + "a/" * 600, "characters"),
        ("/notes/", "directory"),
        ("/", "root"),
        ("", "non-empty"),
    ],
)
def test_bad_paths_are_refused_naming_the_problem(fs: FileSystem, path: str, problem: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        run(fs.put_bytes(ALICE, path, b"x"))
    assert caught.value.status_code == 400 and problem in caught.value.message
    assert fs.list_dir(ALICE, "/") == [] and fs.blobs.digests() == set()


def test_quota_counts_distinct_contents_and_refuses_with_507(fs: FileSystem) -> None:
    fs.quota_bytes = 100
    run(fs.put_bytes(ALICE, "/a.txt", b"a" * 60))
    run(fs.put_bytes(ALICE, "/b.txt", b"a" * 60))  # the same content: free
    with pytest.raises(QuotaExceededError) as caught:
        run(fs.put_bytes(ALICE, "/c.txt", b"c" * 41))
    assert caught.value.status_code == 507 and "quota" in caught.value.message
    assert len(fs.blobs.digests()) == 1  # the refused content was not kept
    run(fs.put_bytes(BOB, "/c.txt", b"c" * 41))  # quotas are per owner
    run(fs.delete(ALICE, "/a.txt"))  # history still holds it
    assert fs.usage(ALICE)["used_bytes"] == 60


def test_concurrent_writes_fill_the_quota_exactly(fs: FileSystem) -> None:
    """Eight writers of 30 new bytes each against 100 bytes: exactly three fit."""
    fs.quota_bytes = 100

    async def write_all() -> list[object]:
        writes = [fs.put_bytes(ALICE, f"/{n}.txt", bytes([65 + n]) * 30) for n in range(8)]
        return await asyncio.gather(*writes, return_exceptions=True)

    results = run(write_all())
    refused = [r for r in results if isinstance(r, QuotaExceededError)]
    assert len(refused) == 5 and len(results) == 8, results
    assert fs.usage(ALICE)["used_bytes"] == 90


def test_ls_move_conflicts_and_errors(fs: FileSystem) -> None:
    run(fs.put_bytes(ALICE, "/a/x.txt", b"x"))
    run(fs.put_bytes(ALICE, "/a/b/y.txt", b"yy"))
    run(fs.put_bytes(ALICE, "/z.txt", b"z"))
    top = fs.list_dir(ALICE, "/")
    assert [(e.name, e.kind) for e in top] == [("a", "directory"), ("z.txt", "file")]
    assert top[0].files == 2 and top[0].size == 3
    assert [e.name for e in fs.list_dir(ALICE, "/a")] == ["b", "x.txt"]
    assert [e.path for e in fs.list_dir(ALICE, "/a/x.txt")] == ["/a/x.txt"]
    with pytest.raises(NotFoundError):
        fs.list_dir(ALICE, "/nope")
    with pytest.raises(FileExistsConflictError):
        run(fs.move(ALICE, "/z.txt", "/a/x.txt"))
    moved = run(fs.move(ALICE, "/z.txt", "/a"))  # an existing directory keeps the name
    assert moved.path == "/a/z.txt" and moved.operation == "move"
    with pytest.raises(InvalidRequestError):
        run(fs.rollback(ALICE, "/a/x.txt"))  # one version only
    with pytest.raises(NotFoundError):
        fs.read(ALICE, "/a/x.txt", 7)
    run(fs.delete(ALICE, "/a/x.txt"))
    with pytest.raises(NotFoundError):
        fs.read(ALICE, "/a/x.txt")
    assert fs.read(ALICE, "/a/b/y.txt") == b"yy"


def test_diff_of_text_and_binary_versions(fs: FileSystem) -> None:
    run(fs.put_bytes(ALICE, "/t.md", b"one\ntwo\n"))
    run(fs.put_bytes(ALICE, "/t.md", b"one\nthree\n"))
    result = fs.diff(ALICE, "/t.md", 1, 2)
    assert "-two" in result["diff"] and "+three" in result["diff"] and not result["binary"]
    assert fs.diff(ALICE, "/t.md", 2, 2)["identical"]
    run(fs.put_bytes(ALICE, "/b.bin", b"\0\xff\xfe"))
    run(fs.put_bytes(ALICE, "/b.bin", b"\0\xff\xfd"))
    assert fs.diff(ALICE, "/b.bin", 1, 2)["binary"]
    with pytest.raises(NotFoundError):
        fs.diff(ALICE, "/t.md", 1, 9)
    fs_limit = PayloadTooLargeError  # diff refuses huge versions with 413
    assert fs_limit.status_code == 413


def test_summaries_are_indexed_with_the_content_and_follow_rollback(fs: FileSystem) -> None:
    run(fs.put_bytes(ALICE, "/r.txt", b"Quarterly numbers went up."))

    async def summarizer(text: str) -> tuple[str, str]:
        return "A report about zeppelin revenue.", "test-model"

    [result] = run(fs.summarize(ALICE, ["/r.txt"], summarizer))
    assert result.summary.startswith("A report") and not result.cached
    assert found(fs, "zeppelin") == ["/r.txt"]
    assert run(fs.summarize(ALICE, ["/r.txt"], summarizer))[0].cached
    run(fs.put_bytes(ALICE, "/r.txt", b"Completely new words."))
    assert found(fs, "zeppelin") == []  # the summary was of the old content
    run(fs.rollback(ALICE, "/r.txt"))
    assert found(fs, "zeppelin") == ["/r.txt"]  # ... and comes back with it


def test_shares_read_the_current_version_until_revoked_or_deleted(fs: FileSystem) -> None:
    run(fs.put_bytes(ALICE, "/s.txt", b"v1"))
    share = fs.share(ALICE, "/s.txt")
    assert share.token and share.token.startswith("fsh_")
    assert fs.open_shared(share.token)[1].read_bytes() == b"v1"
    run(fs.put_bytes(ALICE, "/s.txt", b"v2"))
    assert fs.open_shared(share.token)[1].read_bytes() == b"v2"
    assert [s.id for s in fs.shares(ALICE)] == [share.id] and fs.shares(BOB) == []
    with pytest.raises(NotFoundError):
        fs.unshare(BOB, share.id)
    fs.unshare(ALICE, share.id)
    with pytest.raises(NotFoundError):
        fs.open_shared(share.token)
    with pytest.raises(NotFoundError):
        fs.open_shared("fsh_nonsense")


def test_pdf_and_docx_are_found_by_content_and_a_corrupt_one_by_name(fs: FileSystem) -> None:
    pdf = pdf_bytes([["Lighthouse keeping logbook"], ["The lamp was serviced on Tuesday."]])
    info = run(fs.put_bytes(ALICE, "/docs/log.pdf", pdf))
    assert info.type == "pdf" and info.note is None
    [hit] = run(fs.find(ALICE, "lamp serviced", mode="bm25"))
    assert hit.path == "/docs/log.pdf" and hit.page == 1 and "lamp" in hit.snippet
    docx = docx_bytes("Orchard", [("Pruning", ["Prune the pear trees in March."])])
    assert run(fs.put_bytes(ALICE, "/docs/orchard.docx", docx)).type == "docx"
    assert by_words(fs, "pear trees") == ["/docs/orchard.docx"]
    broken = run(fs.put_bytes(ALICE, "/docs/broken-report.pdf", b"%PDF-1.7 truncated"))
    assert broken.type == "binary" and broken.note and "not indexed" in broken.note
    assert fs.read(ALICE, "/docs/broken-report.pdf") == b"%PDF-1.7 truncated"
    assert by_words(fs, "broken report") == ["/docs/broken-report.pdf"]


def test_a_master_key_rotation_keeps_files_findable_and_summaries_readable(
    fs: FileSystem, settings: Settings, database: Database, engine: WordEngine
) -> None:
    run(fs.put_bytes(ALICE, "/id/passport.txt", b"Passport number X123, expires 2030."))

    async def summarizer(text: str) -> tuple[str, str]:
        return "An identity document.", "test-model"

    run(fs.summarize(ALICE, ["/id/passport.txt"], summarizer))
    result = rotate_master_key(settings, database)
    assert result.reencrypted["fs_chunks.text"] >= 2
    assert result.reencrypted["fs_summaries.text"] == 1
    rotated = FileSystem.open(settings, database, engine)  # a restart after the rotation
    assert by_words(rotated, "passport expires") == ["/id/passport.txt"]
    assert [h.snippet for h in run(rotated.find(ALICE, "identity document", mode="bm25"))]
    assert run(rotated.summarize(ALICE, ["/id/passport.txt"], summarizer))[0].cached
    assert rotated.reindex_stale() == 0
