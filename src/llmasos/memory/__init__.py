"""User memory: conversations, long-term memory items, compaction and personalization."""
