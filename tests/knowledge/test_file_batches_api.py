"""``/v1/vector_stores/{id}/file_batches`` with the real ``openai`` client (create,
upload_and_poll, retrieve, cancel, list files), bad input and ownership; and hand edits to
chunks that survive re-indexing the file."""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest

from tests.knowledge.conftest import KnowledgeServer, wait_for_file

SMALL_CHUNKS = {
    "type": "static",
    "static": {"max_chunk_size_tokens": 64, "chunk_overlap_tokens": 16},
}
TRIP = b"""# Trip

The train to Porto leaves at nine from the central station. We meet at the kiosk by
platform four, and whoever comes first buys coffee for everyone before the doors close.

## Packing

Bring a rain jacket, two books and the charger for the camera. The spare battery stays in
the blue bag, and the maps of the old town are printed twice in case one gets wet.

## Walks

On the second day we walk along the river to the lighthouse, then up the hill to the
gardens, where the tiled church sits behind a row of orange trees and a small market.

## Money

The hotel in Porto costs 90 euros a night, paid in advance. Dinner is shared, lunch is on
each of us, and the museum tickets are bought at the door with the student card.
"""


def upload(client: openai.OpenAI, name: str, data: bytes) -> str:
    return client.files.create(file=(name, data), purpose="assistants").id


def wait_batch(client: openai.OpenAI, store_id: str, batch_id: str) -> Any:
    deadline = time.monotonic() + 60
    while True:
        batch = client.vector_stores.file_batches.retrieve(batch_id, vector_store_id=store_id)
        if batch.status != "in_progress" or time.monotonic() > deadline:
            return batch
        time.sleep(0.05)


def test_a_batch_adds_files_together_and_reports_their_progress(
    kb_server: KnowledgeServer, alice: openai.OpenAI
) -> None:
    store = alice.vector_stores.create(name="trips")
    ids = [upload(alice, "a.md", b"Tomatoes need sun."), upload(alice, "b.md", b"Basil grows.")]
    batch = alice.vector_stores.file_batches.create(
        vector_store_id=store.id, file_ids=ids, attributes={"season": "summer"}
    )
    assert batch.id.startswith("vsfb_") and batch.object == "vector_store.files_batch"
    assert batch.vector_store_id == store.id and batch.file_counts.total == 2
    done = wait_batch(alice, store.id, batch.id)
    assert done.status == "completed" and done.file_counts.completed == 2
    listed = alice.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id)
    assert {f.id for f in listed.data} == set(ids)
    assert all(f.attributes == {"season": "summer"} for f in listed.data)
    found = alice.vector_stores.search(
        store.id, query="basil", filters={"type": "eq", "key": "season", "value": "summer"}
    )
    assert found.data and found.data[0].filename == "b.md"

    # the SDK's own helper: upload, batch, poll
    polled = alice.vector_stores.file_batches.upload_and_poll(
        vector_store_id=store.id, files=[("c.md", b"Carrots like sandy soil.")]
    )
    assert polled.status == "completed" and polled.file_counts.completed == 1
    assert alice.vector_stores.retrieve(store.id).file_counts.completed == 3


def test_each_file_of_a_batch_may_have_its_own_attributes(
    kb_server: KnowledgeServer, alice: openai.OpenAI
) -> None:
    store = alice.vector_stores.create(name="years")
    old, new = upload(alice, "old.md", b"The 2023 plan."), upload(alice, "new.md", b"The plan.")
    with kb_server.client(kb_server.alice) as http:
        body = {
            "files": [
                {"file_id": old, "attributes": {"year": 2023}},
                {"file_id": new, "attributes": {"year": 2024}, "chunking_strategy": SMALL_CHUNKS},
            ]
        }
        batch = http.post(f"/v1/vector_stores/{store.id}/file_batches", json=body).json()
    wait_batch(alice, store.id, batch["id"])
    files = {f.id: f for f in alice.vector_stores.files.list(vector_store_id=store.id)}
    assert files[old].attributes == {"year": 2023} and files[new].attributes == {"year": 2024}
    assert files[new].chunking_strategy.static.max_chunk_size_tokens == 64  # type: ignore[union-attr]


def test_cancelling_a_batch_stops_its_files_and_keeps_the_store_usable(
    kb_server: KnowledgeServer, alice: openai.OpenAI
) -> None:
    store = alice.vector_stores.create(name="halted")
    ids = [upload(alice, "x.md", b"Slowfile: xylophones."), upload(alice, "y.md", b"Yaks roam.")]
    kb_server.engine.gate.clear()  # "slowfile" waits to embed: the batch stays in progress
    try:
        batch = alice.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=ids)
        assert batch.status == "in_progress"
        cancelled = alice.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
        assert cancelled.status == "cancelled" and cancelled.file_counts.cancelled == 2
        # the worker runs one job at a time: y.md waits behind x.md, both are stopped
    finally:
        kb_server.engine.gate.set()
    with kb_server.client(kb_server.alice) as http:
        for file_id in ids:
            assert wait_for_file(http, store.id, file_id)["status"] == "cancelled"
    assert wait_batch(alice, store.id, batch.id).status == "cancelled"
    assert alice.vector_stores.search(store.id, query="yaks").data == []
    again = alice.vector_stores.files.create(vector_store_id=store.id, file_id=ids[1])
    assert again.status == "in_progress"  # a cancelled file is added again like any other
    with kb_server.client(kb_server.alice) as http:
        assert wait_for_file(http, store.id, ids[1])["status"] == "completed"
    assert alice.vector_stores.search(store.id, query="yaks").data


def test_bad_batches_are_refused_whole_and_other_users_batches_are_404(
    kb_server: KnowledgeServer, alice: openai.OpenAI
) -> None:
    store = alice.vector_stores.create(name="strict")
    good = upload(alice, "g.md", b"Good file.")
    with kb_server.client(kb_server.alice) as http:
        url = f"/v1/vector_stores/{store.id}/file_batches"
        for body, status in (
            ({"file_ids": []}, 400),
            ({"file_ids": [good, good]}, 400),
            ({"file_ids": [good], "files": [{"file_id": good}]}, 400),
            ({"file_ids": ["file-" + "0" * 24] * 501}, 400),
            ({"file_ids": [good, "file-" + "0" * 24]}, 404),
        ):
            response = http.post(url, json=body)
            assert response.status_code == status, (body, response.text)
            assert response.json()["error"]["message"]
    # the refused batch with an unknown file attached nothing
    assert alice.vector_stores.retrieve(store.id).file_counts.total == 0
    batch = alice.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=[good])
    bob = kb_server.openai(kb_server.bob)
    for call in (
        lambda: bob.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id),
        lambda: bob.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id),
        lambda: bob.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id),
        lambda: alice.vector_stores.file_batches.retrieve("vsfb_x", vector_store_id=store.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    wait_batch(alice, store.id, batch.id)


def test_hand_edits_and_disabled_chunks_survive_re_indexing(
    kb_server: KnowledgeServer, alice: openai.OpenAI
) -> None:
    store = alice.vector_stores.create(name="kept", chunking_strategy=SMALL_CHUNKS)  # type: ignore[arg-type]
    file_id = upload(alice, "trip.md", TRIP)
    alice.vector_stores.files.create(vector_store_id=store.id, file_id=file_id)
    with kb_server.client(kb_server.alice) as http:
        wait_for_file(http, store.id, file_id)
        base = f"/v1/vector_stores/{store.id}"
        chunks = http.get(f"{base}/files/{file_id}/chunks").json()["data"]
        assert len(chunks) >= 3
        first, second = chunks[0], chunks[1]
        http.patch(f"{base}/chunks/{first['id']}", json={"text": "The zeppelin leaves at ten."})
        http.patch(f"{base}/chunks/{second['id']}", json={"disabled": True})

        # the same file again: every chunk is made anew, the hand work comes back
        http.post(f"{base}/files", json={"file_id": file_id})
        assert wait_for_file(http, store.id, file_id)["status"] == "completed"
        again = http.get(f"{base}/files/{file_id}/chunks").json()["data"]
        by_position = {c["position"]: c for c in again}
        assert by_position[0]["edited"] and by_position[0]["text"] == "The zeppelin leaves at ten."
        assert by_position[1]["disabled"] and by_position[1]["text"] == second["text"]
        assert not any(c["edited"] or c["disabled"] for c in again[2:])
        hits = http.post(f"{base}/search", json={"query": "zeppelin"}).json()["data"]
        assert hits and hits[0]["chunk_id"] == by_position[0]["id"]
        hits = http.post(f"{base}/search", json={"query": second["text"]}).json()["data"]
        assert by_position[1]["id"] not in [h["chunk_id"] for h in hits]

        # a changed file of the same name: the unchanged first chunk keeps its edit
        changed = TRIP.replace(b"90 euros", b"95 euros")
        new_id = upload(alice, "trip.md", changed)
        http.post(f"{base}/files", json={"file_id": new_id})
        assert wait_for_file(http, store.id, new_id)["status"] == "completed"
        latest = http.get(f"{base}/files/{new_id}/chunks").json()["data"]
        assert latest[0]["edited"] and latest[0]["text"] == "The zeppelin leaves at ten."

        # enabled and edited back to nothing special: a re-index leaves it as made
        http.patch(f"{base}/chunks/{latest[1]['id']}", json={"disabled": False})
        http.post(f"{base}/files", json={"file_id": new_id})
        wait_for_file(http, store.id, new_id)
        final = http.get(f"{base}/files/{new_id}/chunks").json()["data"]
        assert not final[1]["disabled"] and final[0]["edited"]
