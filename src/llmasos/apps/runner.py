"""``python -m llmasos.apps.runner APP_DIR``: the process an installed app runs in.

`llmasos.apps.supervisor` starts it with the app's environment (``LLMASOS_BASE_URL``,
``LLMASOS_API_KEY`` — the app's capability key —, ``LLMASOS_APP_HOST``/``PORT``). It reads
the manifest, imports the entry point (``module:attribute``) with the app's directory first
on ``sys.path``, checks it is an `Application` and serves it until SIGTERM. Any failure is
one ``error:`` line on stderr (the app's log) and exit status 1.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

from llmasos.apps.application import Application
from llmasos.apps.manifest import load_manifest
from llmasos.errors import LLMasOSError


def load_application(directory: Path) -> Application:
    """Import the app's entry point and check it is an `Application`."""
    manifest = load_manifest(directory)
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
    if not isinstance(application, Application):
        raise LLMasOSError(
            f"app.entry {manifest.entry!r} is not an llmasos.Application "
            f"(found {type(application).__name__})"
        )
    if application.name == "llmasos-app":
        application.name = manifest.name
    return application


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 1:
        print("usage: python -m llmasos.apps.runner APP_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        load_application(Path(arguments[0]).resolve()).run()
    except LLMasOSError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
