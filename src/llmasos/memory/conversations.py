"""The conversation store: conversations, their items and stored responses, per owner.

Every read and write names an owner (a user id; None is the machine's owner when
authentication is off), and a row of another owner is indistinguishable from a missing one:
both raise `NotFoundError`. Each item's body is JSON sealed by `ContentCipher` with the
context ``conversation_item:{id}`` and each stored response with ``response:{id}``, so a
ciphertext moved to another row does not open; `llmasos.storage.rotation` registers both
columns for ``keys rotate-master``. A response and the items it adds (its input, a
compaction summary, its output) are written in one transaction: a database that fails
half-way writes nothing. Deleting an item or a conversation removes it from the shared
index (`llmasos.memory.recall`) in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.orm import Session

from llmasos.errors import InvalidRequestError, NotFoundError, PayloadTooLargeError
from llmasos.memory.items import SUMMARY, item_id
from llmasos.retrieval.hybrid import remove_entries
from llmasos.storage.crypto import ContentCipher
from llmasos.storage.database import Database
from llmasos.storage.ids import new_id
from llmasos.storage.schema import (
    ITEM_CONTENT_CONTEXT,
    RESPONSE_BODY_CONTEXT,
    Conversation,
    ConversationItem,
    ConversationSearchRef,
    StoredResponse,
    owned_by,
)

SEARCH_COLLECTION = "conversation"
"""The shared index's collection of conversation turns (`llmasos.memory.recall`)."""
MAX_ITEM_BYTES = 1 << 20
"""The largest item body (its JSON, before encryption) the store accepts: 1 MiB."""
MAX_METADATA_PAIRS = 16
ITEM_CONTEXT = ITEM_CONTENT_CONTEXT
RESPONSE_CONTEXT = RESPONSE_BODY_CONTEXT

Order = Literal["asc", "desc"]


@dataclass(frozen=True)
class ConversationRecord:
    id: str
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime
    items: int = 0

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "conversation",
            "created_at": int(self.created_at.timestamp()),
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class StoredItem:
    id: str
    position: int
    body: dict[str, Any]
    """The item as OpenAI shows it, without its id (``type``, ``role``, ``content`` ...)."""
    created_at: datetime
    summary_through: int | None = None
    response_id: str | None = None

    @property
    def type(self) -> str:
        return str(self.body.get("type"))

    @property
    def is_summary(self) -> bool:
        return self.type == SUMMARY

    def to_openai(self) -> dict[str, Any]:
        """The item as the API returns it; a summary is a system message that says so."""
        if self.is_summary:
            return {
                "id": self.id,
                "type": "message",
                "role": "system",
                "status": "completed",
                "content": self.body.get("content", []),
                "summary_through_position": self.summary_through,
            }
        return {"id": self.id, **self.body}


@dataclass(frozen=True)
class ItemPage:
    data: list[StoredItem]
    has_more: bool

    def to_openai(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [item.to_openai() for item in self.data],
            "first_id": self.data[0].id if self.data else None,
            "last_id": self.data[-1].id if self.data else None,
            "has_more": self.has_more,
        }


@dataclass(frozen=True)
class NewItem:
    """An item about to be stored: its body and, for a summary, what it covers."""

    body: dict[str, Any]
    summary_through: int | None = None
    id: str | None = None


def check_metadata(metadata: dict[str, Any] | None) -> dict[str, str]:
    """OpenAI's metadata rules: at most 16 pairs, keys up to 64 and values up to 512 chars."""
    metadata = metadata or {}
    if len(metadata) > MAX_METADATA_PAIRS:
        raise InvalidRequestError("metadata has more than 16 keys", param="metadata")
    for key, value in metadata.items():
        if not isinstance(value, str) or len(key) > 64 or len(value) > 512:
            raise InvalidRequestError(
                f"metadata[{key[:64]!r}] must be a string of at most 512 characters "
                "under a key of at most 64",
                param="metadata",
            )
    return dict(metadata)


class ConversationStore:
    """Conversations, items and stored responses in one database, sealed by one cipher."""

    def __init__(
        self, database: Database, cipher: ContentCipher, *, max_item_bytes: int = MAX_ITEM_BYTES
    ) -> None:
        self.database = database
        self.cipher = cipher
        self.max_item_bytes = max_item_bytes

    # --- sealing ---------------------------------------------------------------------------

    def _seal_item(self, item_id_: str, body: dict[str, Any], index: int) -> bytes:
        data = json.dumps(body, ensure_ascii=False).encode()
        if len(data) > self.max_item_bytes:
            raise PayloadTooLargeError(
                f"item {index} is {len(data)} bytes; the largest item stored is "
                f"{self.max_item_bytes} bytes",
                param=f"items[{index}]",
            )
        return self.cipher.encrypt(data, context=ITEM_CONTEXT.format(id=item_id_))

    def _open_item(self, row: ConversationItem) -> StoredItem:
        data = self.cipher.decrypt(row.content, context=ITEM_CONTEXT.format(id=row.id))
        return StoredItem(
            id=row.id,
            position=row.position,
            body=json.loads(data),
            created_at=row.created_at,
            summary_through=row.summary_through,
            response_id=row.response_id,
        )

    def check_items(self, items: Iterable[dict[str, Any]]) -> None:
        """Raise `PayloadTooLargeError` (413) for an item over the size limit."""
        for index, body in enumerate(items):
            size = len(json.dumps(body, ensure_ascii=False).encode())
            if size > self.max_item_bytes:
                raise PayloadTooLargeError(
                    f"item {index} is {size} bytes; the largest item stored is "
                    f"{self.max_item_bytes} bytes",
                    param=f"items[{index}]",
                )

    # --- conversations ---------------------------------------------------------------------

    def create(
        self,
        owner: int | None,
        metadata: dict[str, Any] | None = None,
        items: list[dict[str, Any]] | None = None,
    ) -> ConversationRecord:
        metadata = check_metadata(metadata)
        self.check_items(items or [])
        with self.database.session(write=True) as session:
            row = Conversation(
                id=new_id("conv"), user_id=owner, metadata_json=metadata, next_position=0
            )
            session.add(row)
            session.flush()
            self._append(session, row, owner, [NewItem(body) for body in items or []])
            return self._record(row, len(items or []))

    def get(self, owner: int | None, conversation_id: str) -> ConversationRecord:
        with self.database.session() as session:
            row = self._conversation(session, owner, conversation_id)
            return self._record(row, self._count(session, conversation_id))

    def update(
        self, owner: int | None, conversation_id: str, metadata: dict[str, Any] | None
    ) -> ConversationRecord:
        metadata = check_metadata(metadata)
        with self.database.session(write=True) as session:
            row = self._conversation(session, owner, conversation_id)
            row.metadata_json = metadata
            session.flush()
            return self._record(row, self._count(session, conversation_id))

    def delete(self, owner: int | None, conversation_id: str) -> None:
        with self.database.session(write=True) as session:
            row = self._conversation(session, owner, conversation_id)
            forget_indexed(session, self.database, ConversationSearchRef.conversation_id == row.id)
            # Explicit deletes: SQLite enforces ON DELETE CASCADE too, but this keeps the
            # order obvious and does not depend on the connection's pragma.
            session.execute(
                delete(ConversationItem).where(ConversationItem.conversation_id == row.id)
            )
            session.execute(delete(StoredResponse).where(StoredResponse.conversation_id == row.id))
            session.delete(row)

    def list_conversations(
        self, owner: int | None, *, limit: int = 100, after: str | None = None
    ) -> list[ConversationRecord]:
        """The owner's conversations, newest first."""
        with self.database.session() as session:
            query = select(Conversation).where(owned_by(Conversation.user_id, owner))
            if after is not None:
                anchor = self._conversation(session, owner, after)
                query = query.where(
                    (Conversation.created_at < anchor.created_at)
                    | ((Conversation.created_at == anchor.created_at) & (Conversation.id < after))
                )
            rows = session.scalars(
                query.order_by(Conversation.created_at.desc(), Conversation.id.desc()).limit(limit)
            ).all()
            counts = dict(
                session.execute(
                    select(ConversationItem.conversation_id, func.count())
                    .where(ConversationItem.conversation_id.in_([r.id for r in rows]))
                    .group_by(ConversationItem.conversation_id)
                ).all()
            )
            return [self._record(row, int(counts.get(row.id, 0))) for row in rows]

    # --- items -----------------------------------------------------------------------------

    def add_items(
        self, owner: int | None, conversation_id: str, items: list[dict[str, Any]]
    ) -> list[StoredItem]:
        self.check_items(items)
        with self.database.session(write=True) as session:
            row = self._conversation(session, owner, conversation_id)
            return self._append(session, row, owner, [NewItem(body) for body in items])

    def items(self, owner: int | None, conversation_id: str) -> list[StoredItem]:
        """Every item in order (oldest first), summaries included."""
        with self.database.session() as session:
            self._conversation(session, owner, conversation_id)
            rows = session.scalars(
                select(ConversationItem)
                .where(ConversationItem.conversation_id == conversation_id)
                .order_by(ConversationItem.position)
            ).all()
            return [self._open_item(row) for row in rows]

    def list_items(
        self,
        owner: int | None,
        conversation_id: str,
        *,
        after: str | None = None,
        limit: int = 20,
        order: Order = "desc",
    ) -> ItemPage:
        """One page of items; ``after`` is the id of the last item of the previous page."""
        with self.database.session() as session:
            self._conversation(session, owner, conversation_id)
            query = select(ConversationItem).where(
                ConversationItem.conversation_id == conversation_id
            )
            return self._page(session, query, after, limit, order, owner)

    def get_item(self, owner: int | None, conversation_id: str, item_id_: str) -> StoredItem:
        with self.database.session() as session:
            self._conversation(session, owner, conversation_id)
            return self._open_item(self._item(session, conversation_id, item_id_))

    def delete_item(
        self, owner: int | None, conversation_id: str, item_id_: str
    ) -> ConversationRecord:
        with self.database.session(write=True) as session:
            row = self._conversation(session, owner, conversation_id)
            item = self._item(session, conversation_id, item_id_)
            forget_indexed(session, self.database, ConversationSearchRef.item_id == item.id)
            session.delete(item)
            session.flush()
            return self._record(row, self._count(session, conversation_id))

    # --- responses -------------------------------------------------------------------------

    def save_response(
        self,
        owner: int | None,
        response: dict[str, Any],
        *,
        inputs: list[NewItem],
        outputs: list[NewItem],
        conversation_id: str | None = None,
        previous_response_id: str | None = None,
        store: bool = True,
    ) -> list[StoredItem]:
        """Write a response's items (into its conversation, if any) and, with ``store``,
        the response itself: all in one transaction. Returns the items written."""
        response_id = str(response["id"])
        written: list[StoredItem] = []
        with self.database.session(write=True) as session:
            conversation = (
                self._conversation(session, owner, conversation_id)
                if conversation_id is not None
                else None
            )
            if conversation is not None or store:
                written += self._append(
                    session, conversation, owner, inputs, response_id=response_id,
                    direction="input",
                )  # fmt: skip
                written += self._append(
                    session, conversation, owner, outputs, response_id=response_id,
                    direction="output", start=len(inputs),
                )  # fmt: skip
            if store:
                data = json.dumps(response, ensure_ascii=False).encode()
                session.add(
                    StoredResponse(
                        id=response_id,
                        user_id=owner,
                        conversation_id=conversation_id,
                        previous_response_id=previous_response_id,
                        model=str(response.get("model", "")),
                        status=str(response.get("status", "completed")),
                        body=self.cipher.encrypt(
                            data, context=RESPONSE_CONTEXT.format(id=response_id)
                        ),
                    )
                )
        return written

    def get_response(self, owner: int | None, response_id: str) -> dict[str, Any]:
        with self.database.session() as session:
            row = self._response(session, owner, response_id)
            data = self.cipher.decrypt(row.body, context=RESPONSE_CONTEXT.format(id=row.id))
            result: dict[str, Any] = json.loads(data)
            return result

    def delete_response(self, owner: int | None, response_id: str) -> None:
        with self.database.session(write=True) as session:
            row = self._response(session, owner, response_id)
            session.execute(
                delete(ConversationItem).where(
                    ConversationItem.response_id == response_id,
                    ConversationItem.conversation_id.is_(None),
                )
            )
            session.delete(row)

    def response_input_items(
        self,
        owner: int | None,
        response_id: str,
        *,
        after: str | None = None,
        limit: int = 20,
        order: Order = "desc",
    ) -> ItemPage:
        with self.database.session() as session:
            self._response(session, owner, response_id)
            query = select(ConversationItem).where(
                ConversationItem.response_id == response_id,
                ConversationItem.direction == "input",
            )
            return self._page(session, query, after, limit, order, owner)

    def response_chain(
        self, owner: int | None, response_id: str
    ) -> tuple[str | None, list[StoredItem]]:
        """The items a response continues from (``previous_response_id``): every input and
        output of it and of the responses before it, oldest first; and its conversation."""
        chain: list[list[StoredItem]] = []
        seen: set[str] = set()
        conversation_id: str | None = None
        with self.database.session() as session:
            current: str | None = response_id
            first = True
            while current is not None and current not in seen:
                seen.add(current)
                try:
                    row = self._response(session, owner, current)
                except NotFoundError:
                    if first:
                        raise
                    break  # an earlier response was deleted: the chain starts here
                if first:
                    conversation_id = row.conversation_id
                    first = False
                rows = session.scalars(
                    select(ConversationItem)
                    .where(ConversationItem.response_id == current)
                    .order_by(ConversationItem.position)
                ).all()
                chain.append([self._open_item(r) for r in rows])
                current = row.previous_response_id
        ordered = [item for items in reversed(chain) for item in items]
        # Positions along the chain (each response numbers its own items from 0).
        return conversation_id, [
            replace(item, position=index) for index, item in enumerate(ordered)
        ]

    # --- internals -------------------------------------------------------------------------

    def _append(
        self,
        session: Session,
        conversation: Conversation | None,
        owner: int | None,
        items: list[NewItem],
        *,
        response_id: str | None = None,
        direction: str | None = None,
        start: int = 0,
    ) -> list[StoredItem]:
        """Store ``items`` in order: after the conversation's last item, or from ``start``
        for the items of a response outside any conversation."""
        if not items:
            return []
        if conversation is not None:
            start = session.execute(
                update(Conversation)
                .where(Conversation.id == conversation.id)
                .values(next_position=Conversation.next_position + len(items))
                .returning(Conversation.next_position)
            ).scalar_one() - len(items)
        stored = []
        for offset, item in enumerate(items):
            body = dict(item.body)
            body.pop("id", None)
            row_id = item.id or item_id(str(body.get("type", "message")))
            row = ConversationItem(
                id=row_id,
                user_id=owner,
                conversation_id=conversation.id if conversation is not None else None,
                response_id=response_id,
                direction=direction,
                position=start + offset,
                type=str(body.get("type", "message")),
                role=body.get("role"),
                summary_through=item.summary_through,
                content=self._seal_item(row_id, body, offset),
            )
            session.add(row)
            session.flush()
            stored.append(self._open_item(row))
        return stored

    @staticmethod
    def _conversation(session: Session, owner: int | None, conversation_id: str) -> Conversation:
        row = session.get(Conversation, conversation_id)
        if row is None or row.user_id != owner:
            raise NotFoundError(
                f"no conversation {conversation_id[:80]!r}", param="conversation_id"
            )
        return row

    @staticmethod
    def _item(session: Session, conversation_id: str, item_id_: str) -> ConversationItem:
        row = session.get(ConversationItem, item_id_)
        if row is None or row.conversation_id != conversation_id:
            raise NotFoundError(
                f"no item {item_id_[:80]!r} in conversation {conversation_id[:80]!r}",
                param="item_id",
            )
        return row

    @staticmethod
    def _response(session: Session, owner: int | None, response_id: str) -> StoredResponse:
        row = session.get(StoredResponse, response_id)
        if row is None or row.user_id != owner:
            raise NotFoundError(f"no response {response_id[:80]!r}", param="response_id")
        return row

    def _page(
        self,
        session: Session,
        query: Any,
        after: str | None,
        limit: int,
        order: Order,
        owner: int | None,
    ) -> ItemPage:
        if not 1 <= limit <= 100:
            raise InvalidRequestError("limit must be between 1 and 100", param="limit")
        if order not in ("asc", "desc"):
            raise InvalidRequestError('order must be "asc" or "desc"', param="order")
        if after is not None:
            anchor = session.get(ConversationItem, after)
            if anchor is None or anchor.user_id != owner:
                raise NotFoundError(f"no item {after[:80]!r}", param="after")
            key = (ConversationItem.position, ConversationItem.id)
            if order == "asc":
                query = query.where(
                    (key[0] > anchor.position) | ((key[0] == anchor.position) & (key[1] > after))
                )
            else:
                query = query.where(
                    (key[0] < anchor.position) | ((key[0] == anchor.position) & (key[1] < after))
                )
        if order == "asc":
            query = query.order_by(ConversationItem.position, ConversationItem.id)
        else:
            query = query.order_by(ConversationItem.position.desc(), ConversationItem.id.desc())
        rows = session.scalars(query.limit(limit + 1)).all()
        return ItemPage([self._open_item(r) for r in rows[:limit]], has_more=len(rows) > limit)

    @staticmethod
    def _count(session: Session, conversation_id: str) -> int:
        return int(
            session.scalar(
                select(func.count()).where(ConversationItem.conversation_id == conversation_id)
            )
            or 0
        )

    @staticmethod
    def _record(row: Conversation, items: int) -> ConversationRecord:
        return ConversationRecord(
            id=row.id,
            metadata=dict(row.metadata_json or {}),
            created_at=row.created_at,
            updated_at=row.updated_at,
            items=items,
        )


def forget_indexed(session: Session, database: Database, which: ColumnElement[bool]) -> None:
    """Remove from the shared index the items ``which`` selects (a condition on
    `ConversationSearchRef`), in the caller's transaction, before the items themselves go."""
    refs = list(session.scalars(select(ConversationSearchRef.id).where(which)))
    remove_entries(session, database, SEARCH_COLLECTION, refs)
    session.execute(delete(ConversationSearchRef).where(which))
