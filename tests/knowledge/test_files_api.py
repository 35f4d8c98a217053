"""``/v1/files`` over real HTTP with the real ``openai`` client: upload, list, retrieve,
content, delete, per-user ownership, the size limit and bad names."""

from __future__ import annotations

import select
import socket
from urllib.parse import urlparse

import openai
import pytest

from llmasos.storage.schema import KnowledgeFile
from tests.knowledge.conftest import UPLOAD_LIMIT, KnowledgeServer


def test_upload_list_retrieve_content_delete(kb_server: KnowledgeServer) -> None:
    client = kb_server.openai(kb_server.alice)
    data = b"# Budget\n\nWe spend 10."
    created = client.files.create(file=("notes.md", data), purpose="assistants")
    assert created.id.startswith("file-")
    assert (created.filename, created.bytes, created.purpose) == (
        "notes.md",
        len(data),
        "assistants",
    )
    assert client.files.retrieve(created.id).filename == "notes.md"
    assert created.id in [f.id for f in client.files.list()]
    assert client.files.content(created.id).read() == data
    deleted = client.files.delete(created.id)
    assert deleted.deleted and deleted.id == created.id
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)


def test_equal_bytes_share_one_blob_until_the_last_file_goes(kb_server: KnowledgeServer) -> None:
    client = kb_server.openai(kb_server.alice)
    one = client.files.create(file=("a.txt", b"same bytes"), purpose="assistants")
    two = client.files.create(file=("b.txt", b"same bytes"), purpose="user_data")
    blobs = kb_server.knowledge.files.blobs
    with kb_server.database.session() as session:
        row = session.get(KnowledgeFile, one.id)
        assert row is not None
        digest = row.digest
    client.files.delete(one.id)
    assert blobs.has(digest)
    client.files.delete(two.id)
    assert not blobs.has(digest)


def test_another_users_file_is_not_found(kb_server: KnowledgeServer) -> None:
    alice, bob = kb_server.openai(kb_server.alice), kb_server.openai(kb_server.bob)
    mine = alice.files.create(file=("secret.txt", b"alice only"), purpose="assistants")
    for call in (bob.files.retrieve, bob.files.content, bob.files.delete):
        with pytest.raises(openai.NotFoundError):
            call(mine.id)
    assert mine.id not in [f.id for f in bob.files.list()]
    assert alice.files.retrieve(mine.id).id == mine.id


def test_a_declared_size_past_the_limit_is_413(kb_server: KnowledgeServer) -> None:
    client = kb_server.openai(kb_server.alice)
    with pytest.raises(openai.APIStatusError) as caught:
        client.files.create(file=("big.bin", b"x" * (UPLOAD_LIMIT + 1)), purpose="assistants")
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "file_too_large"  # type: ignore[index]


def test_a_chunked_upload_past_the_limit_is_refused_before_it_is_read_whole(
    kb_server: KnowledgeServer,
) -> None:
    """No Content-Length: the server answers 413 once the limit is passed, before the body
    has ended (it is never read whole), and leaves no temp file behind."""
    url = urlparse(kb_server.url)
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="huge.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(
            (
                "POST /v1/files HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {kb_server.alice}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        piece = b"%x\r\n%s\r\n" % (65536, b"y" * 65536)
        sent, answer, pending = 0, b"", b""
        # send until the server answers (at most 64 times the limit); the body never ends
        while b"\r\n\r\n" not in answer and sent < 64 * UPLOAD_LIMIT:
            readable, writable, _ = select.select([sock], [sock], [], 10)
            if readable:
                answer += sock.recv(65536)
            elif writable:
                pending = pending or piece
                done = sock.send(pending)
                sent, pending = sent + done, pending[done:]
    assert answer.startswith(b"HTTP/1.1 413")
    assert sent < 64 * UPLOAD_LIMIT  # socket buffers hold a few MB; the rest was never sent
    leftovers = [
        p for p in kb_server.knowledge.files.blobs.root.iterdir() if p.name.startswith(".tmp-")
    ]
    assert leftovers == []


def test_path_traversal_in_names_is_only_a_display_name(kb_server: KnowledgeServer) -> None:
    client = kb_server.openai(kb_server.alice)
    for name, expected in (("../../etc/passwd", "passwd"), ("/abs/path/r.txt", "r.txt"),
                           ("C:\\Users\\x\\w.txt", "w.txt")):  # fmt: skip
        assert client.files.create(file=(name, b"text"), purpose="assistants").filename == expected
    root = kb_server.knowledge.files.blobs.root
    assert all(p.parent == root for p in root.iterdir())


@pytest.mark.parametrize(
    ("files", "data", "param"),
    [
        ({"file": ("a.txt", b"x")}, {"purpose": "homework"}, "purpose"),
        ({"file": ("a.txt", b"x")}, {}, "purpose"),
        ({"other": ("a.txt", b"x")}, {"purpose": "assistants"}, "file"),
        ({"file": ("..", b"x")}, {"purpose": "assistants"}, "file"),
    ],
)
def test_bad_uploads_are_400_naming_the_field(
    kb_server: KnowledgeServer,
    files: dict[str, tuple[str, bytes]],
    data: dict[str, str],
    param: str,
) -> None:
    with kb_server.client(kb_server.alice) as http:
        response = http.post("/v1/files", files=files, data=data)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_a_json_body_is_400(kb_server: KnowledgeServer) -> None:
    with kb_server.client(kb_server.alice) as http:
        response = http.post("/v1/files", json={"file": "x", "purpose": "assistants"})
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["error"]["message"]


def test_unknown_ids_are_404(kb_server: KnowledgeServer) -> None:
    with kb_server.client(kb_server.alice) as http:
        for path in ("/v1/files/file-000000000000000000000000", "/v1/files/../../etc"):
            assert http.get(path).status_code == 404


def test_a_nul_in_the_filename_is_400(kb_server: KnowledgeServer) -> None:
    body = (
        b'--B\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="a\x00b.txt"\r\n\r\n'
        b"x\r\n--B--\r\n"
    )
    with kb_server.client(kb_server.alice) as http:
        response = http.post(
            "/v1/files", content=body, headers={"Content-Type": "multipart/form-data; boundary=B"}
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "file"
