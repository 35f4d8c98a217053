"""Route parameters: a handler's signature turned into a pydantic model that parses requests.

`HandlerParameters.of(handler)` reads the handler's typed parameters once, at registration.
`from_query` parses a query string (repeated keys fill list parameters; a pydantic-model
parameter takes its fields from the query string), `from_body` parses a JSON object mapping
parameter names to values (a handler whose only parameter is a pydantic model may also take
the whole body as that model). Both return the keyword arguments for the handler, or raise
`ParameterError` naming every parameter that is missing, unknown or invalid, and why.
A parameter annotated with starlette's `Request` receives the request itself.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from starlette.requests import Request

from llmasos.errors import InvalidRequestError

_LIST_ORIGINS = (list, tuple, set, frozenset)


class ParameterError(InvalidRequestError):
    """A request's parameters do not fit the handler's signature (HTTP 422)."""

    status_code = 422
    default_code = "invalid_parameter"

    def __init__(self, problems: list[tuple[str | None, str]]) -> None:
        self.problems = problems
        message = "; ".join(
            f"parameter {param!r}: {reason}" if param else reason for param, reason in problems
        )
        super().__init__(message, param=problems[0][0] if problems else None)

    def to_body(self) -> dict[str, object]:
        """The JSON body of the 422 answer: the usual error object plus one entry a problem."""
        body = self.to_openai()
        body["errors"] = [{"param": param, "reason": reason} for param, reason in self.problems]
        return body


def _strip_optional(annotation: Any) -> Any:
    """``X`` for ``X | None`` / ``Optional[X]`` / ``Annotated[X, ...]``, else ``annotation``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _strip_optional(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        rest = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(rest) == 1:
            return _strip_optional(rest[0])
    return annotation


def _is_model(annotation: Any) -> bool:
    bare = _strip_optional(annotation)
    return isinstance(bare, type) and issubclass(bare, BaseModel)


def _is_list(annotation: Any) -> bool:
    bare = _strip_optional(annotation)
    return bare in _LIST_ORIGINS or typing.get_origin(bare) in _LIST_ORIGINS


@dataclass(frozen=True)
class HandlerParameters:
    """The parsed signature of one route handler."""

    names: tuple[str, ...]
    """The parameters filled from the request, in signature order."""
    request_names: tuple[str, ...]
    """Parameters annotated with `Request`: they receive the request object."""
    model: type[BaseModel]
    """Validates the parameters; field ``p{i}`` has the alias ``names[i]``."""
    model_params: frozenset[str]
    list_params: frozenset[str]

    @classmethod
    def of(cls, handler: Callable[..., Any]) -> HandlerParameters:
        where = getattr(handler, "__qualname__", repr(handler))
        try:
            hints = typing.get_type_hints(handler, include_extras=True)
        except Exception as error:  # an annotation that does not resolve
            raise InvalidRequestError(f"route handler {where}: {error}") from error
        fields: dict[str, Any] = {}
        names: list[str] = []
        request_names: list[str] = []
        for parameter in inspect.signature(handler).parameters.values():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise InvalidRequestError(
                    f"route handler {where}: *args and **kwargs parameters cannot be "
                    "filled from a request; name each parameter"
                )
            if parameter.kind is parameter.POSITIONAL_ONLY:
                raise InvalidRequestError(
                    f"route handler {where}: positional-only parameter {parameter.name!r} "
                    "cannot be filled by name"
                )
            annotation = hints.get(parameter.name, Any)
            if annotation is Request:
                request_names.append(parameter.name)
                continue
            default = ... if parameter.default is parameter.empty else parameter.default
            fields[f"p{len(names)}"] = (annotation, Field(default, alias=parameter.name))
            names.append(parameter.name)
        try:
            model = create_model(
                f"{getattr(handler, '__name__', 'handler')}_parameters",
                __config__=ConfigDict(extra="forbid", populate_by_name=False),
                **fields,
            )
            model.model_json_schema()  # fail now, not on the first request
        except Exception as error:
            raise InvalidRequestError(
                f"route handler {where}: its parameter types cannot be read from a request "
                f"({error})"
            ) from error
        return cls(
            names=tuple(names),
            request_names=tuple(request_names),
            model=model,
            model_params=frozenset(n for n in names if _is_model(hints.get(n, Any))),
            list_params=frozenset(n for n in names if _is_list(hints.get(n, Any))),
        )

    def schema(self) -> dict[str, Any]:
        """JSON schema of the parameters (names, types, defaults, which are required)."""
        return self.model.model_json_schema()

    def from_query(self, query: Mapping[str, list[str]]) -> dict[str, Any]:
        """Keyword arguments from a query string given as ``{key: [values]}``."""
        values: dict[str, Any] = {}
        for key, items in query.items():
            if key in self.list_params or len(items) > 1:
                values[key] = items
            else:
                values[key] = items[-1]
        for name in self.model_params:
            if name in values:
                continue
            fields = self.model.model_fields[f"p{self.names.index(name)}"].annotation
            model_fields = _strip_optional(fields).model_fields
            aliases = {field.alias or key for key, field in model_fields.items()}
            taken = {key: values.pop(key) for key in list(values) if key in aliases}
            if taken:
                values[name] = taken
        return self.validate(values)

    def from_body(self, body: bytes, path: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Keyword arguments from a JSON body (an object of parameter values) and the
        path's parameters (``/items/{name}``)."""
        if not body.strip():
            data: Any = {}
        else:
            try:
                data = json.loads(body)
            except ValueError as error:
                raise ParameterError([(None, f"the body is not valid JSON ({error})")]) from None
        if len(self.names) == 1 and self.names[0] in self.model_params:
            only = self.names[0]
            if not (isinstance(data, dict) and set(data) == {only}):
                data = {only: data}  # the whole body is the model
        if not isinstance(data, dict):
            raise ParameterError(
                [(None, f"the body must be a JSON object of parameters, not {type(data).__name__}")]
            )
        return self.validate({**data, **(path or {})})

    def validate(self, values: Mapping[str, Any]) -> dict[str, Any]:
        try:
            parsed = self.model.model_validate(values)
        except ValidationError as error:
            problems: list[tuple[str | None, str]] = []
            for item in error.errors(include_url=False):
                location = ".".join(str(part) for part in item["loc"])
                if item["type"] == "missing":
                    reason = "missing"
                elif item["type"] == "extra_forbidden":
                    reason = f"unknown parameter (expected one of: {', '.join(self.names)})"
                else:
                    reason = item["msg"]
                problems.append((location or None, reason))
            raise ParameterError(problems) from None
        return {name: getattr(parsed, f"p{index}") for index, name in enumerate(self.names)}
