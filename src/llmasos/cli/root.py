"""The Typer application every command module adds itself to, and shared CLI state.

Global flags are generated from `Settings`: each setting is a ``--flag`` on the root command
and on ``serve`` (``llmasos --threads 2 run ...``, ``llmasos serve --port 9000``). Command
modules use `state` for the effective settings and the model store, and raise
`LLMasOSError` for failures; `llmasos.cli.main.main` prints those as one line.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, get_args, get_origin

import typer
from rich.console import Console
from rich.markup import escape

from llmasos.config import Settings, load_settings

if TYPE_CHECKING:
    from llmasos.models import ModelStoreInterface

app = typer.Typer(
    name="llmasos",
    help="LLMasOS: a self-hosted LLM operating system.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()
err_console = Console(stderr=True)


@dataclass
class CLIState:
    """What the root callback parsed: setting overrides from flags."""

    overrides: dict[str, Any] = field(default_factory=dict)
    _settings: Settings | None = None
    _store: ModelStoreInterface | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(**self.overrides)
        return self._settings

    def override(self, values: dict[str, Any]) -> None:
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            self.overrides.update(given)
            self._settings = None
            self._store = None

    def reset(self) -> None:
        """Forget overrides and cached objects (tests run several CLIs in one process)."""
        self.overrides.clear()
        self._settings = None
        self._store = None

    @property
    def store(self) -> ModelStoreInterface:
        if self._store is None:
            from llmasos.models import open_model_store

            self._store = open_model_store(self.settings)
        return self._store


state = CLIState()

F = TypeVar("F", bound=Callable[..., Any])


def _option_type(annotation: Any) -> Any:
    """The type Typer should parse for a settings field (optional, so unset means None)."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is list:
        return list[str] | None
    if type(None) in args:  # X | None
        (inner,) = [a for a in args if a is not type(None)]
        return _option_type(inner)
    if str(origin) == "typing.Literal":
        return str | None
    return annotation | None


def settings_options(func: F) -> F:
    """Add one ``--flag`` per `Settings` field to a command; pass them as ``settings=dict``."""
    params = [
        p
        for p in inspect.signature(func, eval_str=True).parameters.values()
        if p.name != "settings_flags"
    ]
    names = list(Settings.model_fields)
    for name in names:
        info = Settings.model_fields[name]
        flag = "--" + name.replace("_", "-")
        help_text = info.description or ""
        if str(get_origin(info.annotation)) == "typing.Literal":
            help_text += f" [{'|'.join(str(a) for a in get_args(info.annotation))}]"
        option = typer.Option(flag, help=help_text, rich_help_panel="Settings", show_default=False)
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[_option_type(info.annotation), option],
            )
        )

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        flags = {name: kwargs.pop(name, None) for name in names}
        return func(*args, settings_flags=flags, **kwargs)

    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def audited(action: str, target: str) -> Iterator[None]:
    """Record a model-store change made from the CLI in the audit log, as the local owner.

    The change itself never fails because the audit write did; that is logged instead.
    """
    outcome = "error"
    try:
        yield
        outcome = "ok"
    finally:
        try:
            from llmasos.access.audit import AuditLog
            from llmasos.storage import open_database

            database = open_database(state.settings)
            try:
                AuditLog(database).record(action, target=target[:255], outcome=outcome)
            finally:
                database.close()
        except Exception as error:
            logging.getLogger(__name__).warning("audit entry for %s not written: %s", action, error)


def fail(message: str, code: int = 1) -> None:
    """Print one error line and exit (the message is text, not Rich markup: a hint such as
    ``pip install 'llmasos[cluster]'`` keeps its brackets)."""
    err_console.print(f"[red]Error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)
