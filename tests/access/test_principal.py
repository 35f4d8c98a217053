"""Scope names and what a principal's scopes allow: the ``files`` scope and its
``files:/DIR`` directory scopes."""

from __future__ import annotations

import pytest

from llmasos.access.principal import Principal, check_scopes, effective_scopes, is_files_scope
from llmasos.errors import InvalidRequestError


def test_directory_scopes_are_checked_and_granted_to_roles_with_files() -> None:
    assert check_scopes(["files:/notes", "files:/a/b c"]) == ["files:/notes", "files:/a/b c"]
    for bad in ("files:notes", "files:/../x", "files:/a//b", "files:/a\x00", "files:"):
        assert not is_files_scope(bad)
        with pytest.raises(InvalidRequestError, match="unknown scope"):
            check_scopes([bad])
    assert effective_scopes("user", ["files:/notes"]) == frozenset({"files:/notes"})
    assert effective_scopes("pending", ["files:/notes"]) == frozenset()


def test_a_directory_scope_reaches_the_files_endpoints_only() -> None:
    app = Principal(user_id=3, name="app:x", role="user", scopes=frozenset({"files:/notes"}))
    assert app.allows_scope("files") and not app.allows_scope("chat")
    chat = Principal(user_id=3, name="u", role="user", scopes=frozenset({"chat"}))
    assert not chat.allows_scope("files")
