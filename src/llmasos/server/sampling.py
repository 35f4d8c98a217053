"""Build `SamplingParams` from only the fields a caller actually gave.

Both API dialects name their parameters differently; each maps its names onto
`SamplingParams` fields and passes just the ones present. Fields not given keep
`SamplingParams()` defaults here and are listed as not explicit, so the kernel (with
``apply_model_defaults=True``) fills them from the model's manifest. Out-of-range values
raise `InvalidRequestError` naming the caller's parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from llmasos.errors import InvalidRequestError
from llmasos.types import SamplingParams

SAMPLING_FIELDS = frozenset(f.name for f in fields(SamplingParams))


def build_sampling(
    given: Mapping[str, Any],
    *,
    param_names: Mapping[str, str] | None = None,
    unset: frozenset[str] = frozenset(),
) -> tuple[SamplingParams, frozenset[str]]:
    """`SamplingParams` from ``given`` (field -> value; None means not given).

    ``unset`` lists fields whose None is an explicit value (``max_tokens=None``: no limit).
    ``param_names`` maps a field to the caller's name for it, for error messages.
    Returns the params and the set of explicitly given field names.
    """
    values = {k: v for k, v in given.items() if v is not None or k in unset}
    unknown = set(values) - SAMPLING_FIELDS
    if unknown:
        raise ValueError(f"not SamplingParams fields: {sorted(unknown)}")
    try:
        sampling = SamplingParams(**values)
    except InvalidRequestError as error:
        names = param_names or {}
        param = names.get(error.param or "", error.param)
        message = error.message
        if param and error.param and param != error.param:
            message = message.replace(error.param, param, 1)
        raise InvalidRequestError(message, param=param) from None
    except (TypeError, ValueError) as error:
        raise InvalidRequestError(f"invalid sampling parameters: {error}") from None
    return sampling, frozenset(values)


def stop_sequences(stop: str | list[str] | None) -> tuple[str, ...] | None:
    """OpenAI's ``stop`` (a string or a list) as a tuple; empty strings dropped."""
    if stop is None:
        return None
    items = [stop] if isinstance(stop, str) else list(stop)
    return tuple(s for s in items if s)


def logit_bias_by_token(bias: Mapping[str, float] | None) -> dict[int, float] | None:
    """OpenAI's ``logit_bias`` (token id strings -> bias in [-100, 100]) keyed by int."""
    if bias is None:
        return None
    result: dict[int, float] = {}
    for key, value in bias.items():
        try:
            token = int(key)
        except ValueError:
            raise InvalidRequestError(
                f"logit_bias keys must be token ids, got {key!r}", param="logit_bias"
            ) from None
        if token < 0:
            raise InvalidRequestError(f"invalid token id {key!r}", param="logit_bias")
        if not -100.0 <= value <= 100.0:
            raise InvalidRequestError(
                f"logit_bias[{key}]={value} must be between -100 and 100", param="logit_bias"
            )
        result[token] = float(value)
    return result
