"""Model names: parsing, canonical form, digests, suggestions."""

from __future__ import annotations

import pytest

from llmasos.errors import InvalidRequestError
from llmasos.models.names import canonical, not_found_message, parse_name, split_digest


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("smollm2", "smollm2:latest"),
        ("SmolLM2:135M", "smollm2:135m"),
        ("library/smollm2:135m", "smollm2:135m"),
        ("foo/bar", "foo/bar:latest"),
        ("all-minilm:l6-v2", "all-minilm:l6-v2"),
    ],
)
def test_canonical(text: str, expected: str) -> None:
    assert canonical(text) == expected


@pytest.mark.parametrize("bad", ["", "a/b/c", "-x", "x:", "x:y:z", "has space", "x:-t", "ü"])
def test_bad_names_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidRequestError, match=r"model name|required"):
        parse_name(bad)


def test_split_digest() -> None:
    assert split_digest("foo:1@ABC12") == ("foo:1", "abc12")
    assert split_digest("foo@sha256:abc") == ("foo", "abc")
    assert split_digest("foo") == ("foo", None)
    with pytest.raises(InvalidRequestError, match="invalid model version"):
        split_digest("foo@xyz")


def test_not_found_suggests_close_names() -> None:
    message = not_found_message("smolm2", ["smollm2:latest", "all-minilm:latest"])
    assert "did you mean 'smollm2:latest'" in message
    assert "llmasos list" in not_found_message("zzzz", ["smollm2:latest"])
