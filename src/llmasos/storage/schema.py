"""The ORM tables, typed with SQLAlchemy 2's ``Mapped[...]``.

These classes describe the newest schema; the migrations in ``storage/migrations/versions``
create it, and a test checks that the two agree. Timestamps are timezone-aware UTC on both
SQLite and PostgreSQL (`UTCDateTime`). Secrets are never stored: API keys as SHA-256 hashes,
passwords as argon2 hashes. User content that must be encrypted goes through
`llmasos.storage.crypto.ContentCipher` before it reaches a column.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ColumnElement,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
ROLES = ("admin", "developer", "user", "pending")


def utcnow() -> datetime:
    return datetime.now(UTC)


def owned_by(column: Any, user_id: int | None) -> ColumnElement[bool]:
    """``column`` (a ``user_id``) names this owner; None, the machine's owner when
    authentication is off, compares with IS NULL."""
    return column.is_(None) if user_id is None else column == user_id  # type: ignore[no-any-return]


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime stored as UTC and always read back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    """A person (or service account) who owns keys, usage and content."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'developer', 'user', 'pending')", name="role"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    keys: Mapped[list[ApiKey]] = relationship(back_populates="user", passive_deletes=True)


class ApiKey(Base):
    """An API key: only its SHA-256 hash is stored; ``key_id`` is its public name."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_user_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    models: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship(back_populates="keys")


class WebSession(Base):
    """A signed-in browser session of the web console (`llmasos.access.sessions`): only the
    SHA-256 of its cookie token is stored."""

    __tablename__ = "web_sessions"
    __table_args__ = (
        UniqueConstraint("token_hash", name="uq_web_sessions_token_hash"),
        Index("ix_web_sessions_user_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditEvent(Base):
    """One append-only audit record; database triggers refuse UPDATE and DELETE."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str | None] = mapped_column(String(64))
    """The user name that acted (None for the local owner or the system)."""
    key_id: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    """What happened, dotted: ``user.create``, ``key.revoke``, ``auth.denied`` ..."""
    target: Mapped[str | None] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(16))
    """``ok`` or ``denied`` (or ``error``)."""
    detail: Mapped[str | None] = mapped_column(Text)


class Quota(Base):
    """Limits of one user (``key_id`` None) or of one of their keys; None: no limit."""

    __tablename__ = "quotas"
    __table_args__ = (Index("ix_quotas_user_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), unique=True)
    """``user:<user id>`` or ``key:<key id>``: the name the counters are kept under."""
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key_id: Mapped[str | None] = mapped_column(String(32))
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    tokens_per_day: Mapped[int | None] = mapped_column(BigInteger)
    tokens_per_month: Mapped[int | None] = mapped_column(BigInteger)
    concurrent_requests: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class QuotaCounter(Base):
    """A fixed-window counter: (subject, period, window start) -> count, updated atomically."""

    __tablename__ = "quota_counters"

    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    period: Mapped[str] = mapped_column(String(16), primary_key=True)
    """``minute``, ``day``, ``month`` (fixed UTC windows) or ``concurrent`` (start 0)."""
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    """Unix seconds of the window's start."""
    count: Mapped[int] = mapped_column(BigInteger)


class UsageRecord(Base):
    """One metered generation or embedding request."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_created_at", "created_at"),
        Index("ix_usage_records_user_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    user_name: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(32))
    app: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(255))
    endpoint: Mapped[str] = mapped_column(String(64))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    status: Mapped[int] = mapped_column(Integer)
    """The HTTP status; 499 when the client went away before the response finished."""


class ModelPrice(Base):
    """What a model's tokens cost, per 1,000, in the operator's currency."""

    __tablename__ = "model_prices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(255), unique=True)
    prompt_per_1k: Mapped[float] = mapped_column(Float)
    completion_per_1k: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


ITEM_CONTENT_CONTEXT = "conversation_item:{id}"
"""The ``ContentCipher`` context of `ConversationItem.content` (bound to the row's id)."""
RESPONSE_BODY_CONTEXT = "response:{id}"
"""The ``ContentCipher`` context of `StoredResponse.body`."""


class Conversation(Base):
    """A stored conversation (OpenAI's Conversations API); its items hold the content."""

    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_user_id", "user_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """``conv_`` and 24 hex digits."""
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    """The owner; None is the machine's owner when authentication is off."""
    metadata_json: Mapped[dict[str, str]] = mapped_column("metadata", JSON)
    """Up to 16 string pairs the client attaches (OpenAI's ``metadata``); not content."""
    next_position: Mapped[int] = mapped_column(Integer, default=0)
    """The position the next item gets; items are ordered by position."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class RetrievalEntry(Base):
    """One searchable text of the shared hybrid index (`llmasos.retrieval`).

    ``terms`` holds the text's index terms, blinded with a key derived from the master key
    (so the index does not reveal the words); ``embedding`` the float32 vector. The text
    itself lives, encrypted, in the table of the collection that owns the entry.
    """

    __tablename__ = "retrieval_entries"
    __table_args__ = (
        UniqueConstraint("collection", "ref_id", name="uq_retrieval_entries_collection"),
        Index("ix_retrieval_entries_namespace", "collection", "namespace", "created_at"),
        Index("ix_retrieval_entries_user_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection: Mapped[str] = mapped_column(String(32))
    """Who owns the entries: ``memory``, later ``knowledge`` ..."""
    namespace: Mapped[str] = mapped_column(String(64))
    """The search scope inside a collection, e.g. one user's memories."""
    ref_id: Mapped[int] = mapped_column(Integer)
    """The id of the owning row in the collection's table."""
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    terms: Mapped[str] = mapped_column(Text)
    terms_key: Mapped[str] = mapped_column(String(8))
    """Fingerprint of the key that blinded ``terms``; stale entries are re-indexed."""
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)


class RetrievalNamespace(Base):
    """Per-namespace counters of the retrieval index: a search checks them (one key lookup)
    to know whether its cached vectors are current."""

    __tablename__ = "retrieval_namespaces"

    collection: Mapped[str] = mapped_column(String(32), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    entries: Mapped[int] = mapped_column(Integer)
    max_entry_id: Mapped[int] = mapped_column(Integer)


class Memory(Base):
    """One long-term memory item of a user; ``text`` is a `ContentCipher` token."""

    __tablename__ = "memories"
    __table_args__ = (
        UniqueConstraint("owner", "text_key", name="uq_memories_owner"),
        Index("ix_memories_owner_created_at", "owner", "created_at"),
        Index("ix_memories_user_id", "user_id"),
        CheckConstraint("kind IN ('fact', 'preference', 'event', 'document_note')", name="kind"),
        CheckConstraint("source IN ('conversation', 'app', 'user')", name="source"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    """``user:<id>``, or ``local`` for the machine's owner when authentication is off."""
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    source_ref: Mapped[str | None] = mapped_column(String(128))
    """The conversation item or app the memory came from, when known."""
    text: Mapped[bytes] = mapped_column(LargeBinary)
    text_key: Mapped[str] = mapped_column(String(64))
    """A keyed hash of the normalised text: the same fact twice is one item."""
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ConversationItem(Base):
    """One item of a conversation or of a stored response: a message, a function call, a
    function call's output, or a running summary made by compaction."""

    __tablename__ = "conversation_items"
    __table_args__ = (
        Index("ix_conversation_items_conversation_id", "conversation_id", "position"),
        Index("ix_conversation_items_response_id", "response_id"),
        Index("ix_conversation_items_user_id", "user_id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    conversation_id: Mapped[str | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    response_id: Mapped[str | None] = mapped_column(String(64))
    """The response that added it (as its input or its output), if any."""
    direction: Mapped[str | None] = mapped_column(String(8))
    """``input`` or ``output`` of ``response_id``."""
    position: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(32))
    """``message``, ``function_call``, ``function_call_output`` or ``summary``."""
    role: Mapped[str | None] = mapped_column(String(16))
    summary_through: Mapped[int | None] = mapped_column(Integer)
    """For a summary: the position of the last item it summarizes."""
    content: Mapped[bytes] = mapped_column(LargeBinary)
    """The item's body as JSON, sealed by `ContentCipher` with context
    ``conversation_item:{id}``."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ConversationSearchRef(Base):
    """A conversation item that is in the shared hybrid index (collection ``conversation``).

    The index refers to rows by integer id; conversation items have string ids, so each
    indexed item gets one of these rows, whose ``id`` is the entry's ``ref_id``. It goes
    with its item (foreign-key cascade); the index entry is removed by whoever deletes
    the item (`llmasos.memory.conversations`)."""

    __tablename__ = "conversation_search"
    __table_args__ = (
        UniqueConstraint("item_id", name="uq_conversation_search_item_id"),
        Index("ix_conversation_search_conversation_id", "conversation_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(
        ForeignKey("conversation_items.id", ondelete="CASCADE"), nullable=False
    )
    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))


class StoredResponse(Base):
    """A response created with ``store: true`` (OpenAI's Responses API)."""

    __tablename__ = "responses"
    __table_args__ = (Index("ix_responses_user_id", "user_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    conversation_id: Mapped[str | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    previous_response_id: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    """The response object as JSON, sealed with context ``response:{id}``."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MemorySetting(Base):
    """Per-owner memory preferences (a missing row means the defaults)."""

    __tablename__ = "memory_settings"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    chat_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    """Inject relevant memories into this owner's chat requests."""
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class FsFile(Base):
    """One file of a user's file space: its identity across moves, and its current state.

    The current state (path, content digest, size, type, deleted) repeats the newest
    `FsVersion` so listing and reading need no join. At most one live file has a path
    (a partial unique index); deleted files keep their row and history for rollback.
    """

    __tablename__ = "fs_files"
    __table_args__ = (
        Index("ix_fs_files_owner", "owner", "path"),
        Index(
            "uq_fs_files_live",
            "owner",
            "path",
            unique=True,
            sqlite_where=text("deleted = 0"),
            postgresql_where=text("NOT deleted"),
        ),
        Index("ix_fs_files_user_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    """``user:<id>``, or ``local`` for the machine's owner when authentication is off."""
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(1024))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    head: Mapped[int] = mapped_column(Integer)
    """The number of the newest version."""
    digest: Mapped[str] = mapped_column(String(80))
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    """When the newest version was made (the file's modification time)."""


class FsVersion(Base):
    """One version of a file: the state after a write, move, delete or rollback."""

    __tablename__ = "fs_versions"
    __table_args__ = (
        UniqueConstraint("file_id", "number", name="uq_fs_versions_file_id"),
        CheckConstraint("operation IN ('write', 'move', 'delete', 'rollback')", name="operation"),
        Index("ix_fs_versions_digest", "digest"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("fs_files.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    operation: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(1024))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    digest: Mapped[str] = mapped_column(String(80))
    """``sha256:<hex>`` of the content (kept on a delete: the content that was deleted)."""
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(128))
    restored_from: Mapped[int | None] = mapped_column(Integer)
    """For a rollback: the version number whose state it restored."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class FsChunk(Base):
    """One searchable text of a file's current version (its name, a content chunk or its
    summary), indexed in the retrieval index under collection ``fs`` with this row's id;
    ``text`` is a `ContentCipher` token (context ``fs_chunk:{id}``), kept for snippets."""

    __tablename__ = "fs_chunks"
    __table_args__ = (Index("ix_fs_chunks_file_id", "file_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("fs_files.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    """``name``, ``content`` or ``summary``."""
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[bytes] = mapped_column(LargeBinary)
    page: Mapped[int | None] = mapped_column(Integer)


class FsSummary(Base):
    """A summary the model made of one content (by digest) for one owner; indexed with
    every file of that owner whose current version has this content."""

    __tablename__ = "fs_summaries"
    __table_args__ = (UniqueConstraint("owner", "digest", name="uq_fs_summaries_owner"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(80))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    text: Mapped[bytes] = mapped_column(LargeBinary)
    """A `ContentCipher` token, context ``fs_summary:{id}``."""
    model: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class FsShare(Base):
    """A read-only link to a file: whoever holds the token reads the file's current version."""

    __tablename__ = "fs_shares"
    __table_args__ = (
        UniqueConstraint("token_hash", name="uq_fs_shares_token_hash"),
        Index("ix_fs_shares_file_id", "file_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the token; the token itself is shown once."""
    file_id: Mapped[int] = mapped_column(ForeignKey("fs_files.id", ondelete="CASCADE"))
    owner: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


KB_CHUNK_TEXT_CONTEXT = "kb_chunk:{id}"
KB_CHUNK_ORIGINAL_CONTEXT = "kb_chunk_original:{id}"
"""The ``ContentCipher`` context of `KnowledgeChunk.text`."""


class KnowledgeFile(Base):
    """An uploaded file (OpenAI's Files API); its bytes are a content-addressed blob."""

    __tablename__ = "kb_files"
    __table_args__ = (
        Index("ix_kb_files_user_id", "user_id", "created_at"),
        Index("ix_kb_files_digest", "digest"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """``file-`` and 24 hex digits."""
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    """The owner; None is the machine's owner when authentication is off."""
    filename: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(80))
    """``sha256:<hex>`` of the bytes: the blob's name (blobs are shared by equal files)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class VectorStore(Base):
    """A knowledge base (OpenAI's vector store): files chunked, embedded and indexed."""

    __tablename__ = "vector_stores"
    __table_args__ = (Index("ix_vector_stores_user_id", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """``vs_`` and 24 hex digits; also the store's namespace in the retrieval index."""
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    meta: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)
    max_chunk_tokens: Mapped[int] = mapped_column(Integer)
    """The store's default chunk size (a file may be added with its own)."""
    chunk_overlap_tokens: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_active_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class VectorStoreFileBatch(Base):
    """Files added to a vector store together (OpenAI's ``vector_store.file_batch``): its
    files are the `VectorStoreFile` rows naming it, its status and counts are theirs."""

    __tablename__ = "vector_store_file_batches"
    __table_args__ = (Index("ix_vector_store_file_batches_vector_store_id", "vector_store_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """``vsfb_`` and 24 hex digits."""
    vector_store_id: Mapped[str] = mapped_column(ForeignKey("vector_stores.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class VectorStoreFile(Base):
    """A file attached to a vector store, with its ingestion status and progress."""

    __tablename__ = "vector_store_files"
    __table_args__ = (
        UniqueConstraint(
            "vector_store_id", "file_id", name="uq_vector_store_files_vector_store_id"
        ),
        Index("ix_vector_store_files_file_id", "file_id"),
        Index("ix_vector_store_files_status", "status"),
        Index("ix_vector_store_files_batch_id", "batch_id"),
        CheckConstraint(
            "status IN ('in_progress', 'completed', 'failed', 'cancelled')", name="status"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vector_store_id: Mapped[str] = mapped_column(ForeignKey("vector_stores.id", ondelete="CASCADE"))
    file_id: Mapped[str] = mapped_column(ForeignKey("kb_files.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Up to 16 key -> string/number/boolean pairs that search filters read."""
    max_chunk_tokens: Mapped[int] = mapped_column(Integer)
    chunk_overlap_tokens: Mapped[int] = mapped_column(Integer)
    chunks_total: Mapped[int] = mapped_column(Integer, default=0)
    """Progress: chunks to embed (0 until the file is converted) ..."""
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    """... and chunks embedded so far."""
    usage_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    batch_id: Mapped[str | None] = mapped_column(String(64))
    """The file batch that last added it (rows go with their store, batches too)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class KnowledgeChunk(Base):
    """One chunk of a file in a vector store; ``text`` is a `ContentCipher` token
    (context `KB_CHUNK_TEXT_CONTEXT`). Its index entry has ``ref_id`` = this id."""

    __tablename__ = "kb_chunks"
    __table_args__ = (
        Index("ix_kb_chunks_store_file_id", "store_file_id", "position"),
        Index("ix_kb_chunks_vector_store_id", "vector_store_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    store_file_id: Mapped[int] = mapped_column(
        ForeignKey("vector_store_files.id", ondelete="CASCADE")
    )
    vector_store_id: Mapped[str] = mapped_column(String(64))
    file_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    """The chunk's order in its file (0-based)."""
    text: Mapped[bytes] = mapped_column(LargeBinary)
    tokens: Mapped[int] = mapped_column(Integer)
    page: Mapped[int | None] = mapped_column(Integer)
    headings: Mapped[list[str]] = mapped_column(JSON, default=list)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    """A disabled chunk is kept but not indexed (search never returns it)."""
    edited: Mapped[bool] = mapped_column(Boolean, default=False)
    """Its text was changed by hand."""
    original_text: Mapped[bytes | None] = mapped_column(LargeBinary)
    """For a chunk edited or disabled by hand: the text the chunker made (a `ContentCipher`
    token, context `KB_CHUNK_ORIGINAL_CONTEXT`), so that re-indexing the file finds the same
    chunk again and keeps the hand's work."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# --- personal tools: notes, calendar, reminders, notifications, mail -------------------------
# Every row has an ``owner`` (``user:<id>``, or ``local`` with authentication off) and the
# ``user_id`` it cascades with; personal text is one `ContentCipher` token per row
# (``content``: a JSON object, context ``<table>:<id>``).


class Note(Base):
    """A user's note; ``content`` seals ``{"title", "body", "tags"}``."""

    __tablename__ = "notes"
    __table_args__ = (Index("ix_notes_owner", "owner", "updated_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WorkflowDefinition(Base):
    """A user's workflow: its YAML source (the definition is data), a webhook token's hash
    and its cron schedule."""

    __tablename__ = "workflows"
    __table_args__ = (Index("ix_workflows_user_id", "user_id", "name"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """``wf_`` and 24 hex digits."""
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(Text)
    hook_hash: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the webhook token (the token itself is shown once, at creation)."""
    schedule: Mapped[str | None] = mapped_column(String(128))
    last_scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CalendarEvent(Base):
    """A calendar event; ``content`` seals ``{"title", "location", "notes"}``. The times are
    instants (UTC); ``time_zone`` is the IANA zone it was made in and is shown in."""

    __tablename__ = "calendar_events"
    __table_args__ = (
        UniqueConstraint("owner", "uid", name="uq_calendar_events_owner"),
        Index("ix_calendar_events_owner_start", "owner", "start_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    uid: Mapped[str] = mapped_column(String(255))
    """The iCalendar UID: importing the same event again updates it."""
    start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    end_at: Mapped[datetime] = mapped_column(UTCDateTime())
    time_zone: Mapped[str] = mapped_column(String(64))
    all_day: Mapped[bool] = mapped_column(Boolean, default=False)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Reminder(Base):
    """A reminder that fires once at ``due_at``: ``pending`` until the scheduler claims it
    (``fired``, with its notification, in one transaction); ``content`` seals ``{"text"}``."""

    __tablename__ = "reminders"
    __table_args__ = (
        Index("ix_reminders_owner", "owner", "due_at"),
        Index("ix_reminders_status_due", "status", "due_at"),
        CheckConstraint("status IN ('pending', 'fired')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    event_id: Mapped[int | None] = mapped_column(
        ForeignKey("calendar_events.id", ondelete="CASCADE")
    )
    """The event this is the alarm of; deleting the event deletes it."""
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    time_zone: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Notification(Base):
    """One message in a user's notification inbox; ``content`` seals ``{"title", "body"}``.
    ``webhook_status`` is None without a webhook, else pending, delivered or failed."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_owner", "owner", "id"),
        Index("ix_notifications_webhook_status", "webhook_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    source_ref: Mapped[str | None] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    webhook_status: Mapped[str | None] = mapped_column(String(16))
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_error: Mapped[str | None] = mapped_column(String(500))


class NotificationSetting(Base):
    """A user's webhook: every new notification is POSTed there as JSON (sealed URL)."""

    __tablename__ = "notification_settings"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    webhook_url: Mapped[bytes | None] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OutboxMessage(Base):
    """Mail sent (or tried) as a user; ``content`` seals ``{"to", "cc", "subject", "body"}``.
    ``idempotency_key`` (a task's ``task:step``) makes a resumed task find its mail sent."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key", name="uq_outbox_owner"),
        Index("ix_outbox_owner", "owner", "id"),
        CheckConstraint("status IN ('queued', 'sent', 'failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(String(1000))
    message_id: Mapped[str | None] = mapped_column(String(255))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ToolCall(Base):
    """The result of a side-effecting tool call, under its ``task:step`` key, written in the
    same transaction as the effect: the same key again returns it instead of acting."""

    __tablename__ = "tool_calls"
    __table_args__ = (UniqueConstraint("owner", "idempotency_key", name="uq_tool_calls_owner"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    tool: Mapped[str] = mapped_column(String(64))
    result: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


KG_ENTITY_NAME_CONTEXT = "kg_entity:{id}"
"""The ``ContentCipher`` context of `GraphEntity.name`."""
KG_RELATION_PREDICATE_CONTEXT = "kg_relation:{id}"
"""The ``ContentCipher`` context of `GraphRelation.predicate`."""


class GraphEntity(Base):
    """An entity of a store's knowledge graph; ``name`` is sealed, ``name_key`` a keyed
    hash of its normalized form (lookup and de-duplication without the name in clear)."""

    __tablename__ = "kg_entities"
    __table_args__ = (
        UniqueConstraint("vector_store_id", "name_key", name="uq_kg_entities_vector_store_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vector_store_id: Mapped[str] = mapped_column(ForeignKey("vector_stores.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[bytes] = mapped_column(LargeBinary)
    name_key: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(16))
    mentions: Mapped[int] = mapped_column(Integer, default=0)
    """Distinct chunks whose triples name it (recounted after every build)."""
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    """float32 embedding of the name: near-duplicate merging and question lookup."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class GraphRelation(Base):
    """One triple: subject —predicate→ object, citing the chunk that states it. Deleting the
    chunk (a re-indexed or removed file) deletes its triples."""

    __tablename__ = "kg_relations"
    __table_args__ = (
        Index("ix_kg_relations_vector_store_id", "vector_store_id"),
        Index("ix_kg_relations_chunk_id", "chunk_id"),
        Index("ix_kg_relations_subject_id", "subject_id"),
        Index("ix_kg_relations_object_id", "object_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vector_store_id: Mapped[str] = mapped_column(ForeignKey("vector_stores.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    subject_id: Mapped[int] = mapped_column(ForeignKey("kg_entities.id", ondelete="CASCADE"))
    predicate: Mapped[bytes] = mapped_column(LargeBinary)
    object_id: Mapped[int] = mapped_column(ForeignKey("kg_entities.id", ondelete="CASCADE"))
    chunk_id: Mapped[int] = mapped_column(ForeignKey("kb_chunks.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class GraphExtraction(Base):
    """A chunk whose current text has been read for triples (it may have given none); an
    edited or disabled chunk loses this row and its triples, so the next build reads it."""

    __tablename__ = "kg_extractions"
    __table_args__ = (Index("ix_kg_extractions_vector_store_id", "vector_store_id"),)

    chunk_id: Mapped[int] = mapped_column(
        ForeignKey("kb_chunks.id", ondelete="CASCADE"), primary_key=True
    )
    vector_store_id: Mapped[str] = mapped_column(ForeignKey("vector_stores.id", ondelete="CASCADE"))
    triples: Mapped[int] = mapped_column(Integer)
    extracted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class GraphBuild(Base):
    """The latest graph build of a store: status and progress, like an ingestion job."""

    __tablename__ = "kg_builds"
    __table_args__ = (
        CheckConstraint("status IN ('in_progress', 'completed', 'failed')", name="status"),
    )

    vector_store_id: Mapped[str] = mapped_column(
        ForeignKey("vector_stores.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    chunks_total: Mapped[int] = mapped_column(Integer, default=0)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    triples_added: Mapped[int] = mapped_column(Integer, default=0)
    files_in_progress: Mapped[int] = mapped_column(Integer, default=0)
    """Files still being indexed when the build started: their chunks were not read."""
    model: Mapped[str | None] = mapped_column(String(255))
    error_message: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


TASK_CONTENT_CONTEXT = "task:{id}"
"""The ``ContentCipher`` context of `AgentTask.content`."""
TASK_RESULT_CONTEXT = "task_result:{id}"
"""The ``ContentCipher`` context of `AgentTask.result`."""
TASK_STEP_CONTENT_CONTEXT = "task_step:{id}"
"""The ``ContentCipher`` context of `AgentTaskStep.content`."""


class AgentTask(Base):
    """A natural-language task run by the agent runtime (`llmasos.agents`) for its owner."""

    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_user_id", "user_id", "created_at"),
        Index("ix_tasks_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """``task_`` and 24 hex digits."""
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    """The owner; None is the machine's owner when authentication is off."""
    status: Mapped[str] = mapped_column(String(24))
    """``queued``, ``running``, ``waiting_approval``, ``completed``, ``stopped`` (a budget
    ran out), ``failed`` or ``cancelled``."""
    model: Mapped[str] = mapped_column(String(255))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    """Not content: the tools allowed and granted, the budget, and who runs it (the
    principal's name, role and scopes when it was created)."""
    content: Mapped[bytes] = mapped_column(LargeBinary)
    """The instruction, sealed by `ContentCipher` with context ``task:{id}``."""
    result: Mapped[bytes | None] = mapped_column(LargeBinary)
    """The final answer or why it ended, sealed with context ``task_result:{id}``."""
    error_code: Mapped[str | None] = mapped_column(String(32))
    steps: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    elapsed_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    """Time spent running (not waiting for approval), summed over restarts."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AgentTaskStep(Base):
    """One step of a task: a model turn and the tool call it made, or its final answer."""

    __tablename__ = "task_steps"
    __table_args__ = (
        UniqueConstraint("task_id", "number", name="uq_task_steps_task_id"),
        Index("ix_task_steps_user_id", "user_id"),
    )

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    """``{task_id}:{number}``, also the idempotency key of the step's tool call."""
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    """1, 2, 3 ... in the order they ran."""
    kind: Mapped[str] = mapped_column(String(16))
    """``tool_call`` or ``answer``."""
    status: Mapped[str] = mapped_column(String(24))
    """``running`` (started, result not recorded), ``waiting_approval``, ``approved``,
    ``denied``, ``completed`` or ``failed`` (the tool reported an error)."""
    tool: Mapped[str | None] = mapped_column(String(64))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    model_ms: Mapped[float] = mapped_column(Float, default=0.0)
    tool_ms: Mapped[float] = mapped_column(Float, default=0.0)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    """JSON (model text, arguments, result, approval text, effects), sealed by
    `ContentCipher` with context ``task_step:{id}``."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


MCP_SERVER_CONFIG_CONTEXT = "mcp_server:{id}"
"""The ``ContentCipher`` context of `McpServerRecord.config`."""


class McpServerRecord(Base):
    """An external MCP server a user registered (`llmasos.tools.mcp`). How to reach it —
    command, arguments, environment, URL, headers — is one JSON object sealed by the content
    cipher (context `MCP_SERVER_CONFIG_CONTEXT`), since environments and headers carry
    tokens. Names are unique per owner (checked by the store: the owner may be NULL)."""

    __tablename__ = "mcp_servers"
    __table_args__ = (Index("ix_mcp_servers_user_id", "user_id", "name"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """``mcp_`` and 24 hex digits."""
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    """The owner; None is the machine's owner when authentication is off."""
    name: Mapped[str] = mapped_column(String(64))
    transport: Mapped[str] = mapped_column(String(16))
    """``stdio`` or ``http`` (streamable HTTP)."""
    config: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


WORKFLOW_RUN_INPUTS_CONTEXT = "workflow_run.inputs:{id}"
WORKFLOW_RUN_OUTPUT_CONTEXT = "workflow_run.output:{id}"
WORKFLOW_STEP_INPUTS_CONTEXT = "workflow_step.inputs:{id}"
WORKFLOW_STEP_OUTPUT_CONTEXT = "workflow_step.output:{id}"


class WorkflowRun(Base):
    """One run: the definition it started with (a snapshot), its input, status and output."""

    __tablename__ = "workflow_runs"
    __table_args__ = (
        Index("ix_workflow_runs_user_id", "user_id", "workflow", "created_at"),
        Index("ix_workflow_runs_status", "status"),
        CheckConstraint(
            "status IN ('queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')",
            name="status",
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """``run_`` and 24 hex digits."""
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    workflow: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(32))
    """``manual``, ``schedule``, ``webhook`` or ``chat``."""
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    output: Mapped[Any] = mapped_column(JSON(none_as_null=True), nullable=True)
    """None is SQL NULL (not JSON ``null``): a clear value is then ``IS NOT NULL``."""
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sealed_inputs: Mapped[bytes | None] = mapped_column(LargeBinary)
    """``inputs`` as a `ContentCipher` token of its JSON (context
    `WORKFLOW_RUN_INPUTS_CONTEXT`); then ``inputs`` is ``{}``. Rows written without a
    cipher keep the clear columns."""
    sealed_output: Mapped[bytes | None] = mapped_column(LargeBinary)
    """``output`` sealed likewise (`WORKFLOW_RUN_OUTPUT_CONTEXT`)."""
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    """The engine executing the run (one per server process), while it holds the lease ..."""
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """... which it renews; past this time another server may take the run over."""


class WorkflowStep(Base):
    """One node's record in a run (a map's items are ``NAME[i]``, a sub-workflow's nodes
    ``NAME/CHILD``): written when the node starts and when it ends, so a resumed run skips
    every ``succeeded`` / ``skipped`` / ``failed`` step and never runs a finished one twice."""

    __tablename__ = "workflow_steps"
    __table_args__ = (
        UniqueConstraint("run_id", "key", name="uq_workflow_steps_run_id"),
        Index("ix_workflow_steps_cache_key", "cache_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    node_type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    """``running``, ``waiting`` (a human node), ``succeeded``, ``skipped`` or ``failed``."""
    inputs: Mapped[Any] = mapped_column(JSON(none_as_null=True), nullable=True)
    output: Mapped[Any] = mapped_column(JSON(none_as_null=True), nullable=True)
    sealed_inputs: Mapped[bytes | None] = mapped_column(LargeBinary)
    """``inputs`` and ``output`` as `ContentCipher` tokens of their JSON (contexts
    `WORKFLOW_STEP_INPUTS_CONTEXT`, `WORKFLOW_STEP_OUTPUT_CONTEXT`); the clear columns are
    then None."""
    sealed_output: Mapped[bytes | None] = mapped_column(LargeBinary)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    model: Mapped[str | None] = mapped_column(String(255))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[float | None] = mapped_column(Float)
    """What the node's tokens cost by the price table when it finished (`usage_cost`): 0
    without tokens, None when its model has no price (unknown, not free)."""
    cache_key: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
