"""Ids of stored objects: a kind prefix and 24 random hex digits, as OpenAI's ids look.

``new_id("conv")`` is ``conv_`` and 24 hex digits; OpenAI's file ids use a hyphen
(``new_id("file", separator="-")``). 96 random bits: collisions are not a concern, and an id
says nothing about when or by whom it was made.
"""

from __future__ import annotations

import secrets


def new_id(prefix: str, *, separator: str = "_") -> str:
    return f"{prefix}{separator}{secrets.token_hex(12)}"
