"""User memory: conversations, long-term memory items, compaction and personalization.

May import: retrieval, the kernel's interface and client, access, storage and the shared
modules (config, errors, types) — never server, cli or apps.
"""
