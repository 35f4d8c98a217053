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
