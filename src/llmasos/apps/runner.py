"""``python -m llmasos.apps.runner APP_DIR [--network on|off] [--storage-mb N]``: the
process an installed app's code runs in.

`llmasos.apps.monitor` starts it (and restarts it when it crashes) with the app's
environment (``LLMASOS_BASE_URL``, ``LLMASOS_API_KEY`` — the app's capability key —,
``LLMASOS_APP_HOST``/``PORT``, ``LLMASOS_APP_DATA``/``TMP``). It reads the manifest, installs
the sandbox guard (`llmasos.apps.sandbox`) for the manifest's ``network`` and
``storage_mb`` permissions — the monitor passes them as options, read once when the app
started —, then imports the entry point (``module:attribute``) with the app's directory
first on ``sys.path``, checks it is an app program (an `llmasos.Application`, or anything
with the same ``name`` and ``run()``: `AppProgram`) and serves it until SIGTERM. Any failure
is one ``error:`` line on stderr (the app's log) and exit status 1. The runner never imports
the SDK itself: the app's own code brings it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Protocol, runtime_checkable

from llmasos.apps.manifest import MAX_STORAGE_MB, AppManifest, load_manifest
from llmasos.apps.sandbox import SandboxPolicy, install
from llmasos.errors import LLMasOSError


@runtime_checkable
class AppProgram(Protocol):
    """What the runner needs of an app's entry point (`llmasos.Application` is one)."""

    name: str

    def run(self) -> None:
        """Serve on ``LLMASOS_APP_HOST``/``PORT`` until SIGTERM."""
        ...


def load_application(directory: Path, manifest: AppManifest | None = None) -> AppProgram:
    """Import the app's entry point and check it is an app program."""
    manifest = manifest or load_manifest(directory)
    sys.path.insert(0, str(directory))
    try:
        module = importlib.import_module(manifest.module)
    except LLMasOSError:
        raise
    except Exception as error:
        raise LLMasOSError(
            f"importing {manifest.module} failed: {type(error).__name__}: {error}"
        ) from error
    application = getattr(module, manifest.attribute, None)
    if not isinstance(application, AppProgram) or isinstance(application, type):
        raise LLMasOSError(
            f"app.entry {manifest.entry!r} is not an llmasos.Application "
            f"(found {type(application).__name__})"
        )
    if application.name == "llmasos-app":
        application.name = manifest.name
    return application


def _storage_mb(value: str) -> int:
    number = int(value)
    if not 0 <= number <= MAX_STORAGE_MB:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_STORAGE_MB}")
    return number


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m llmasos.apps.runner", description="Run an installed app's code."
    )
    parser.add_argument("directory", type=Path, help="the app's directory")
    parser.add_argument(
        "--network", choices=("on", "off"), help="default: the manifest's permissions.network"
    )
    parser.add_argument(
        "--storage-mb", type=_storage_mb, help="default: the manifest's permissions.storage_mb"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    directory = arguments.directory.resolve()
    try:
        manifest = load_manifest(directory)
        permissions = manifest.permissions
        policy = SandboxPolicy.for_app(
            manifest.name,
            network=permissions.network if arguments.network is None else arguments.network == "on",
            storage_mb=permissions.storage_mb
            if arguments.storage_mb is None
            else arguments.storage_mb,
            environ=dict(os.environ),
        )
        install(policy)
        load_application(directory, manifest).run()
    except LLMasOSError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
