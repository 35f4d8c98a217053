"""User memory: stored conversations and responses, context compaction, long-term memory
items, and personalization.

`ConversationStore` keeps conversations, their items and stored responses in the database,
owned by a user, with every item's content sealed by the content cipher. `fit_context`
turns a conversation's items plus a new input into chat messages that fit the model's
context window, counting tokens with the model's own tokenizer through the kernel, and
compacting the oldest turns into a running summary (a kernel request of the user's) when
they do not fit; the turns themselves stay stored. `memories.MemoryStore` keeps each user's
long-term memory items in the shared hybrid index (`llmasos.retrieval`); `recommend` ranks
suggestions from a user's history; `tools` exposes ``memory_search`` / ``memory_add`` to
agents.

May import: retrieval, the kernel's interface and client, access, storage and the shared
modules (config, errors, types) — never server, cli or apps.
"""

from llmasos.memory.compaction import CompactionReport, ContextPlan, fit_context
from llmasos.memory.conversations import (
    ConversationRecord,
    ConversationStore,
    ItemPage,
    StoredItem,
)
from llmasos.memory.items import input_items, items_to_messages

__all__ = [
    "CompactionReport",
    "ContextPlan",
    "ConversationRecord",
    "ConversationStore",
    "ItemPage",
    "StoredItem",
    "fit_context",
    "input_items",
    "items_to_messages",
]
