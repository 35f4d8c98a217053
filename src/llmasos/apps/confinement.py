"""How an installed app is confined by the OS: its manifest turned into a `SandboxSpec`.

The spec comes from the *installed* manifest and the admin's settings, never from the app:
``permissions.network`` chooses between the host's network and a network namespace whose
only way out is the kernel's port; the app's install directory is readable, its data and
temp directories are the only writable places, the LLMasOS home (``secret.key``, the
database, other apps) is hidden; ``storage_mb`` is also the largest file it may write. The
admin's `AppConfinement` (settings ``app_confinement``, ``app_memory_mb``,
``app_processes``) gives the mode and the limits. The supervisor passes it to the monitor
as environment variables, the names the settings use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmasos.apps.manifest import AppManifest
from llmasos.apps.sandbox import StorageDirs, kernel_address
from llmasos.sandbox import (
    ConfinementMode,
    ConfinementReport,
    ResourceLimits,
    SandboxSpec,
    plan,
)

MODE_VARIABLE = "LLMASOS_APP_CONFINEMENT"
MEMORY_VARIABLE = "LLMASOS_APP_MEMORY_MB"
PROCESSES_VARIABLE = "LLMASOS_APP_PROCESSES"


@dataclass(frozen=True)
class AppConfinement:
    """The admin's choices for every app: strict or weaker mode, and the limits."""

    mode: ConfinementMode = ConfinementMode.STRICT
    memory_mb: int = ResourceLimits.memory_mb
    processes: int = ResourceLimits.processes

    @classmethod
    def from_settings(cls, settings: Any) -> AppConfinement:
        return cls(
            mode=ConfinementMode(settings.app_confinement),
            memory_mb=settings.app_memory_mb,
            processes=settings.app_processes,
        )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> AppConfinement:
        """From the variables `environment` writes (defaults where absent); a bad value is
        a `ValueError` naming the variable."""
        try:
            return cls(
                mode=ConfinementMode(environ.get(MODE_VARIABLE, ConfinementMode.STRICT)),
                memory_mb=int(environ.get(MEMORY_VARIABLE, cls.memory_mb)),
                processes=int(environ.get(PROCESSES_VARIABLE, cls.processes)),
            )
        except ValueError as error:
            raise ValueError(
                f"{MODE_VARIABLE}, {MEMORY_VARIABLE} or {PROCESSES_VARIABLE}: {error}"
            ) from None

    def environment(self) -> dict[str, str]:
        return {
            MODE_VARIABLE: str(self.mode),
            MEMORY_VARIABLE: str(self.memory_mb),
            PROCESSES_VARIABLE: str(self.processes),
        }


def app_spec(
    manifest: AppManifest,
    *,
    directory: Path,
    storage: StorageDirs,
    base_url: str,
    port: int | None,
    hidden: tuple[Path, ...],
    confinement: AppConfinement,
) -> SandboxSpec:
    """The sandbox of one app process."""
    permissions = manifest.permissions
    return SandboxSpec(
        name=f"app.{manifest.name}",
        network=permissions.network,
        kernel=kernel_address(base_url),
        listen_port=port,
        readable=(directory,),
        writable=(storage.data, storage.tmp),
        hidden=hidden,
        limits=ResourceLimits(
            memory_mb=confinement.memory_mb,
            processes=confinement.processes,
            file_size_mb=permissions.storage_mb,
        ),
    )


def app_plan(
    manifest: AppManifest,
    *,
    directory: Path,
    app_dir: Path,
    home: Path,
    confinement: AppConfinement,
) -> ConfinementReport:
    """The confinement the app installed in ``directory`` (its version's files; ``app_dir``
    holds its data and temp directories) would get on this machine, in weaker mode's terms
    (never raises): `ConfinementReport.complete` False means strict mode refuses to start
    it."""
    spec = app_spec(
        manifest,
        directory=directory,
        storage=StorageDirs.of(app_dir),
        base_url="http://127.0.0.1:8000",
        port=None,
        hidden=(home,),
        confinement=confinement,
    )
    report = plan(spec, ConfinementMode.ALLOW_WEAKER)
    return ConfinementReport(mode=confinement.mode, layers=report.layers)


def describe(report: ConfinementReport) -> list[str]:
    """One line per layer, for ``app info`` and ``app install``."""
    lines = []
    for layer in report.layers:
        state = "yes" if layer.active else ("MISSING" if layer.required else "no")
        lines.append(f"{layer.name}: {state} - {layer.detail}")
    if not report.complete:
        verdict = (
            "refused to start (strict mode; LLMASOS_APP_CONFINEMENT=allow-weaker runs it)"
            if report.mode is ConfinementMode.STRICT
            else "runs with weaker confinement (allow-weaker)"
        )
        lines.append(verdict)
    return lines
