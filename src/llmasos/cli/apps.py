"""``llmasos app ...``: scaffold, install, run and remove apps.

``new`` writes a working app from a template; ``install``, ``upgrade``, ``list``, ``info``
and ``remove`` manage ``$LLMASOS_HOME/apps`` (`llmasos.apps.store`); ``start``, ``stop``
and ``logs`` run an installed app as its own process with a capability key
(`llmasos.apps.supervisor`; its monitor restarts it when it crashes). ``install`` and
``upgrade`` show the permissions an app asks for and wait for a yes unless ``--yes`` is
given. Failures are `LLMasOSError` lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmasos.apps.catalog import BUILTIN_PREFIX, builtin_names, builtin_path
from llmasos.apps.confinement import AppConfinement, app_plan, describe
from llmasos.apps.manifest import AppManifest, load_manifest
from llmasos.apps.sandbox import MB
from llmasos.apps.scaffold import TEMPLATES, scaffold
from llmasos.apps.store import AppStore, Confirm, InstalledApp
from llmasos.cli.output import JSON_OPTION_HELP, Column, print_json, print_table, table
from llmasos.cli.remote import base_url
from llmasos.cli.root import app, console, err_console, state
from llmasos.errors import LLMasOSError
from llmasos.sandbox import ConfinementReport

if TYPE_CHECKING:
    from llmasos.apps.supervisor import AppSupervisor

apps_app = typer.Typer(help="Create, install and run apps.", no_args_is_help=True)
app.add_typer(apps_app, name="app")

Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before installing.")]
Index = Annotated[
    str | None, typer.Option("--index", help="Install NAME[@VERSION] from this index URL.")
]
Server = Annotated[
    str | None,
    typer.Option("--server", help="The LLMasOS server the app calls (default: --host/--port)."),
]


def _store() -> AppStore:
    return AppStore(state.settings.home)


@contextmanager
def _supervisor(server: str | None = None) -> Iterator[AppSupervisor]:
    from llmasos.apps.supervisor import AppSupervisor
    from llmasos.storage import open_database

    with open_database(state.settings) as database:
        yield AppSupervisor(
            _store(),
            database,
            server or base_url(state.settings),
            AppConfinement.from_settings(state.settings),
        )


def _confirm(yes: bool, verb: str) -> Confirm:
    def confirm(manifest: AppManifest) -> bool:
        err_console.print(
            f"{verb} [bold]{manifest.name}[/bold] {manifest.version}"
            + (f" — {manifest.description}" if manifest.description else ""),
            highlight=False,
        )
        err_console.print("It asks for:", highlight=False)
        for line in manifest.permissions.describe():
            err_console.print(f"  - {line}", highlight=False)
        home = state.settings.home
        app_dir = home / "apps" / manifest.name
        report = app_plan(
            manifest,
            directory=app_dir / manifest.version,
            app_dir=app_dir,
            home=home,
            confinement=AppConfinement.from_settings(state.settings),
        )
        err_console.print(f"Confinement on this machine: {report.summary()}", highlight=False)
        if not report.complete:
            for line in describe(report):
                err_console.print(f"  - {line}", highlight=False, markup=False)
        return yes or typer.confirm("Proceed?", default=False, err=True)

    return confirm


@apps_app.command("new")
def new(
    name: Annotated[str, typer.Argument(help="The app's name (lowercase, digits, '-').")],
    template: Annotated[
        str, typer.Option("--template", "-t", help=f"One of: {', '.join(TEMPLATES)}.")
    ] = "chat",
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Where to create it (default: ./NAME).")
    ] = None,
) -> None:
    """Scaffold a new app from a template."""
    target = directory or Path(name)
    manifest = scaffold(name, template, target)
    console.print(
        f"created {manifest.name} {manifest.version} ({template}) in {target}", highlight=False
    )


@apps_app.command("install")
def install(
    source: Annotated[
        str,
        typer.Argument(
            help="A directory, an archive, INDEX_URL#NAME, builtin:NAME, or NAME with --index."
        ),
    ],
    yes: Yes = False,
    index: Index = None,
) -> None:
    """Install an app (shows its permissions and asks first)."""
    installed = _store().install(source, confirm=_confirm(yes, "Installing"), index=index)
    console.print(f"installed {installed.name} {installed.version}", highlight=False)


@apps_app.command("upgrade")
def upgrade(
    source: Annotated[
        str, typer.Argument(help="A directory, an archive, INDEX_URL#NAME, or NAME with --index.")
    ],
    yes: Yes = False,
    index: Index = None,
    server: Server = None,
) -> None:
    """Replace an installed app by a newer version; a running app is restarted on it."""
    with _supervisor(server) as supervisor:
        store = supervisor.store

        def activate(new: InstalledApp) -> None:
            name = new.name
            if supervisor.status(name) is not None:
                supervisor.stop(name)
                running_before.append(name)
                supervisor.start(name)

        running_before: list[str] = []
        try:
            old, installed = store.upgrade(
                source, confirm=_confirm(yes, "Upgrading to"), index=index, activate=activate
            )
        except LLMasOSError:
            for name in running_before:  # the old version is current again: bring it back
                supervisor.start(name)
            raise
    console.print(f"upgraded {installed.name} {old} -> {installed.version}", highlight=False)


def _permissions(manifest: AppManifest) -> dict[str, Any]:
    permissions = manifest.permissions
    return {
        "calls": list(permissions.calls),
        "models": list(permissions.models),
        "network": permissions.network,
        "storage_mb": permissions.storage_mb,
    }


@apps_app.command("list")
def list_apps(
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Installed apps, their versions and whether they run.

    --json fields: name, version, description, state, url, pid, restarts, last_exit.
    """
    with _supervisor() as supervisor:
        installed_apps = supervisor.store.list()
        if as_json:
            print_json(
                [
                    {
                        "name": installed.name,
                        "version": installed.version,
                        "description": installed.manifest.description,
                        **supervisor.run_record(installed.name),
                    }
                    for installed in installed_apps
                ]
            )
            return
        rows = table(Column("NAME", key=True), "VERSION", "STATUS", "DESCRIPTION", plain=True)
        for installed in installed_apps:
            rows.add_row(
                installed.name,
                installed.version,
                _run_status(supervisor, installed.name, with_pid=False),
                installed.manifest.description,
            )
        print_table(rows)


def _run_status(supervisor: AppSupervisor, name: str, *, with_pid: bool) -> str:
    """``running URL`` (with restarts), or ``stopped`` (with why, when the last run failed)."""
    running = supervisor.status(name)
    monitor = supervisor.monitor(name)
    if running is not None:
        text = "running" + (f", pid {running.pid}," if with_pid else "") + f" {running.url}"
        if monitor is not None and monitor.restarts:
            plural = "s" if monitor.restarts > 1 else ""
            text += f" ({monitor.restarts} restart{plural}, last: {monitor.last_exit})"
        return text
    if monitor is not None and monitor.state == "failed":
        return f"stopped (failed: {monitor.last_exit})"
    return "stopped"


@apps_app.command("builtins")
def list_builtins(
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """The apps shipped with LLMasOS; install one with `app install builtin:NAME`.

    --json fields: source, name, version, description, permissions.
    """
    manifests = [(BUILTIN_PREFIX + n, load_manifest(builtin_path(n))) for n in builtin_names()]
    if as_json:
        print_json(
            [
                {
                    "source": source,
                    "name": manifest.name,
                    "version": manifest.version,
                    "description": manifest.description,
                    "permissions": _permissions(manifest),
                }
                for source, manifest in manifests
            ]
        )
        return
    rows = table(Column("NAME", key=True), "VERSION", "PERMISSIONS", "DESCRIPTION", plain=True)
    for source, manifest in manifests:
        calls = ", ".join(manifest.permissions.calls) or "-"
        rows.add_row(source, manifest.version, calls, manifest.description)
    print_table(rows)


@apps_app.command("info")
def info(
    name: Annotated[str, typer.Argument(help="An installed app.")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """An installed app's manifest, permissions, source, state and OS confinement.

    --json fields: name, version, description, entry, installed_at, source, sha256, directory,
    state, url, pid, restarts, last_exit, storage_used_bytes, storage_quota_bytes, permissions,
    confinement. The confinement has source (running or planned), mode, complete and layers
    (each: name, active, detail, required).
    """
    with _supervisor() as supervisor:
        installed = supervisor.store.get(name)
        used, quota = supervisor.storage(name)
        manifest = installed.manifest
        report, source = _confinement(supervisor, name)
        if as_json:
            print_json(
                {
                    "name": manifest.name,
                    "version": manifest.version,
                    "description": manifest.description,
                    "entry": manifest.entry,
                    "installed_at": installed.installed_at,
                    "source": installed.source,
                    "sha256": installed.sha256,
                    "directory": str(installed.directory),
                    **supervisor.run_record(name),
                    "storage_used_bytes": used,
                    "storage_quota_bytes": quota,
                    "permissions": _permissions(manifest),
                    "confinement": {"source": source, **report.to_json()},
                }
            )
            return
        lines = [
            f"name:        {manifest.name}",
            f"version:     {manifest.version}",
            f"description: {manifest.description}",
            f"entry:       {manifest.entry}",
            f"installed:   {installed.installed_at} from {installed.source}",
            f"sha256:      {installed.sha256 or '-'}",
            f"directory:   {installed.directory}",
            f"status:      {_run_status(supervisor, name, with_pid=True)}",
            f"storage:     {used / MB:.2f} MB used of {quota / MB:g} MB (data and temp)",
            "permissions:",
            *(f"  - {line}" for line in manifest.permissions.describe()),
            f"confinement ({'in force' if source == 'running' else 'on this machine'}, "
            f"{report.mode}):",
            *(f"  - {line}" for line in describe(report)),
        ]
        console.print("\n".join(lines), highlight=False, markup=False)


def _confinement(supervisor: AppSupervisor, name: str) -> tuple[ConfinementReport, str]:
    """The layers a running app's monitor reported (``running``), else the plan for this
    machine (``planned``)."""
    monitor = supervisor.monitor(name)
    if supervisor.status(name) is not None and monitor is not None and monitor.confinement:
        return ConfinementReport.from_json(monitor.confinement), "running"
    return supervisor.confinement_plan(name), "planned"


@apps_app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="An installed app.")]) -> None:
    """Stop and delete an app, with its logs and data."""
    with _supervisor() as supervisor:
        supervisor.store.get(name)
        supervisor.stop(name)
        removed = supervisor.store.remove(name)
    console.print(f"removed {removed.name} {removed.version}", highlight=False)


@apps_app.command("start")
def start(
    name: Annotated[str, typer.Argument(help="An installed app.")], server: Server = None
) -> None:
    """Run an app as its own process, with a key limited to its permissions."""
    with _supervisor(server) as supervisor:
        running = supervisor.start(name)
        monitor = supervisor.monitor(name)
    console.print(
        f"started {name} {running.version}: {running.url} (pid {running.pid})", highlight=False
    )
    if monitor is not None and monitor.confinement is not None:
        summary = ConfinementReport.from_json(monitor.confinement).summary()
        console.print(f"confinement: {summary}", highlight=False, markup=False)


@apps_app.command("stop")
def stop(name: Annotated[str, typer.Argument(help="An installed app.")]) -> None:
    """Stop a running app and revoke its key."""
    with _supervisor() as supervisor:
        stopped = supervisor.stop(name)
    console.print(f"stopped {name}" if stopped else f"{name} was not running", highlight=False)


@apps_app.command("logs")
def logs(
    name: Annotated[str, typer.Argument(help="An installed app.")],
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many lines.")] = 50,
) -> None:
    """The last lines of an app's log."""
    with _supervisor() as supervisor:
        for line in supervisor.logs(name, lines):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
