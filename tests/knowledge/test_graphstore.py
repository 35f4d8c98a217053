"""`KnowledgeGraph` on SQLite and PostgreSQL with a deterministic extractor plugged in where
the model's goes (`KnowledgeBase(graph_extractor=...)`): builds cite real chunks, edits and
re-indexing drop and rebuild triples, names are sealed, questions find entities, graph mode
adds the chunks of neighbouring triples, and another user's store is not found."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from llmasos.access.principal import ROLE_SCOPES, Principal
from llmasos.access.users import UserManager
from llmasos.config import Settings
from llmasos.errors import InvalidRequestError, NotFoundError
from llmasos.knowledge.filters import parse_filter
from llmasos.knowledge.stores import KnowledgeBase
from llmasos.storage import Database
from llmasos.storage.schema import GraphEntity, GraphRelation, KnowledgeChunk
from llmasos.tools import ToolContext, ToolSystem
from llmasos.tools.registry import ToolSet
from tests.knowledge.conftest import KnowledgeEngine
from tests.knowledge.graphs import SentenceExtractor, graph_kb
from tests.storage.conftest import database, settings

__all__ = ["database", "settings"]

PEOPLE = b"Maria manages Acme. Bob knows Maria."
PLACES = b"Acme owns Lisbon. Lisbon hosts Offsite."
OTHER = b"Quentin paints Murals."


def open_kb(settings: Settings, database: Database) -> tuple[KnowledgeBase, SentenceExtractor]:
    return graph_kb(settings, database, KnowledgeEngine())


async def add(kb: KnowledgeBase, user: int, store: str, name: str, data: bytes) -> str:
    file = kb.files.add_bytes(user, name, data, "assistants")
    await kb.add_file(user, store, file.id)
    await kb.worker.wait_idle()
    return file.id


def cited_chunks(database: Database) -> set[int]:
    with database.session() as session:
        relations = set(session.scalars(select(GraphRelation.chunk_id)))
        chunks = set(session.scalars(select(KnowledgeChunk.id)))
    assert relations <= chunks
    return relations


def test_build_query_incremental_and_ownership(settings: Settings, database: Database) -> None:
    kb, extractor = open_kb(settings, database)
    users = UserManager(database)
    alice, bob = users.create("alice", role="user").id, users.create("bob", role="user").id

    async def scenario() -> None:
        store = (await kb.create_store(alice, name="work")).id
        empty = await kb.graph.build(alice, store)
        assert (empty.status, empty.chunks_total, empty.relations) == ("completed", 0, 0)
        nothing = await kb.graph.query(alice, store, "What is connected to Maria?")
        assert not nothing.found and "empty" in nothing.message

        await add(kb, alice, store, "people.md", PEOPLE)
        places = await add(kb, alice, store, "places.md", PLACES)
        info = await kb.graph.build(alice, store)
        assert info.status == "completed" and info.chunks_done == info.chunks_total == 2
        assert (info.entities, info.relations, info.chunks_pending) == (5, 4, 0)
        assert info.model == "sentences" and len(cited_chunks(database)) == 2

        with database.session() as session:  # names and predicates are sealed
            sealed = list(session.scalars(select(GraphEntity.name)))
            assert sealed and not any(b"Maria" in n for n in sealed)

        near = await kb.graph.query(alice, store, "what is connected to maria?")
        assert near.found and near.mode == "neighbourhood"
        assert [e.entity.name for e in near.entities] == ["Maria"]
        assert {(e.subject, e.predicate, e.object) for e in near.edges} == {
            ("Maria", "manages", "Acme"),
            ("Bob", "knows", "Maria"),
        }
        cite = near.edges[0].citation
        assert cite.filename == "people.md" and cite.chunk_id.startswith("chunk_")
        assert "Maria" in cite.quote
        wide = await kb.graph.query(alice, store, "Maria", hops=2)
        assert {e.object for e in wide.edges} >= {"Lisbon"}

        path = await kb.graph.query(alice, store, "How is Bob related to Offsite?")
        assert path.found and path.mode == "path"
        assert [(e.subject, e.object) for e in path.edges] == [
            ("Bob", "Maria"), ("Maria", "Acme"), ("Acme", "Lisbon"), ("Lisbon", "Offsite")
        ]  # fmt: skip
        assert {e.citation.filename for e in path.edges} == {"people.md", "places.md"}
        short = await kb.graph.query(alice, store, "Bob and Offsite", max_hops=2)
        assert not short.found and "at most 2 hops" in short.message
        missing = await kb.graph.query(alice, store, "Who is Zeppelin?")
        assert not missing.found and "not found" in missing.message
        with pytest.raises(InvalidRequestError):
            await kb.graph.query(alice, store, "Maria", hops=9)

        # another user's store is not found, everywhere
        with pytest.raises(NotFoundError):
            kb.graph.status(bob, store)
        with pytest.raises(NotFoundError):
            await kb.graph.start_build(bob, store)
        with pytest.raises(NotFoundError):
            await kb.graph.query(bob, store, "Maria")

        # an edited chunk drops its triples at once and is read again by the next build
        chunk = kb.list_chunks(alice, store, places)[0]
        await kb.update_chunk(alice, store, chunk.id, text="Acme owns Porto.")
        after_edit = kb.graph.status(alice, store)
        assert after_edit.relations == 2 and after_edit.chunks_pending == 1
        assert not (await kb.graph.query(alice, store, "Lisbon")).found
        extractor.read.clear()
        rebuilt = await kb.graph.build(alice, store)
        assert extractor.read == ["Acme owns Porto."]  # only the changed chunk
        assert rebuilt.relations == 3 and rebuilt.entities == 4  # Lisbon, Offsite gone
        porto = await kb.graph.query(alice, store, "Porto")
        assert porto.edges[0].citation.quote == "Acme owns Porto."

        # a disabled chunk leaves the graph; a re-indexed file replaces its chunks' triples
        await kb.update_chunk(alice, store, chunk.id, disabled=True)
        assert kb.graph.status(alice, store).chunks_pending == 0
        assert not (await kb.graph.query(alice, store, "Porto")).found
        await add(kb, alice, store, "people.md", OTHER)
        assert kb.graph.status(alice, store).relations == 0  # the old people.md chunk went
        final = await kb.graph.build(alice, store)
        assert final.relations == 1 and final.entities == 2
        assert len(cited_chunks(database)) == 1

        kb.delete_store(alice, store)
        with database.session() as session:
            assert not list(session.scalars(select(GraphEntity.id)))

    asyncio.run(scenario())


def test_graph_mode_adds_chunks_of_neighbouring_triples(
    settings: Settings, database: Database
) -> None:
    kb, _ = open_kb(settings, database)
    alice = UserManager(database).create("alice", role="user").id

    async def scenario() -> None:
        store = (await kb.create_store(alice, name="graph")).id
        await add(kb, alice, store, "a.md", b"Maria manages Acme. The budget review is Monday.")
        await add(kb, alice, store, "b.md", b"Acme owns Lisbon.")
        for n in range(6):
            await add(kb, alice, store, f"noise{n}.md", f"Weather note {n} about rain.".encode())
        plain = await kb.search(alice, [store], "budget review", max_num_results=3)
        assert plain.results[0].chunk.filename == "a.md"
        await kb.graph.build(alice, store)
        graph = await kb.search(alice, [store], "budget review", max_num_results=3, graph=True)
        names = [r.chunk.filename for r in graph.results]
        assert names[0] == "a.md" and "b.md" in names  # reached through Acme
        assert len(names) == len(set(names)) <= 3
        for result in graph.results:
            assert 0.0 <= result.score <= 1.0
        # a file filter holds in graph mode too
        only_a = await kb.search(
            alice, [store], "budget review", graph=True,
            filters=parse_filter({"type": "eq", "key": "team", "value": "none"}),
        )  # fmt: skip
        assert only_a.results == []

    asyncio.run(scenario())


def test_kg_search_tool(settings: Settings, database: Database) -> None:
    kb, _ = open_kb(settings, database)
    users = UserManager(database)
    alice, bob = users.create("alice", role="user").id, users.create("bob", role="user").id
    system = ToolSystem(settings=settings, database=database, engine=kb.engine, knowledge=kb)

    def context(user_id: int, name: str) -> ToolContext:
        principal = Principal(user_id=user_id, name=name, role="user", scopes=ROLE_SCOPES["user"])
        return ToolContext(principal, system)

    async def scenario() -> None:
        store = (await kb.create_store(alice, name="tooling")).id
        await add(kb, alice, store, "people.md", PEOPLE)
        await kb.graph.build(alice, store)
        tools = await ToolSet.load(context(alice, "alice"), allowed=["knowledge"])
        assert "kg_search" in tools.names()  # with the group's other tools (file_search ...)
        assert all(t.spec.set_name == "knowledge" for t in tools.tools())
        spec = tools.get("kg_search").spec
        assert (spec.permission, spec.group, spec.side_effect) == ("knowledge", "knowledge", False)
        mine = context(alice, "alice")
        result = await tools.call(
            "kg_search", {"query": "what is connected to Maria", "store": "tooling"}, mine
        )
        assert not result.is_error and result.output["found"]
        assert result.output["edges"][0]["citation"]["filename"] == "people.md"
        missing = await tools.call("kg_search", {"query": "Zeppelin", "store": store}, mine)
        assert not missing.is_error and not missing.output["found"]
        theirs = await tools.call(
            "kg_search", {"query": "Maria", "store": store}, context(bob, "bob")
        )
        assert theirs.is_error and "no knowledge base" in theirs.text()
        assert (await tools.call("kg_search", {"query": "Maria"}, mine)).is_error

    asyncio.run(scenario())
