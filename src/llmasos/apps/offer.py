"""What the OS can suggest to a user: its named services, installed apps and built-in apps.

`recommendation_candidates` lists them with their descriptions for
`llmasos.memory.recommend.Recommender`, which ranks them per user (``GET
/v1/recommendations``, ``llmasos recommend``).
"""

from __future__ import annotations

from llmasos.apps.catalog import builtin_names, builtin_path
from llmasos.apps.manifest import load_manifest
from llmasos.apps.store import AppStore
from llmasos.config import Settings
from llmasos.memory.recommend import Candidate
from llmasos.services.registry import ServiceRegistry


def recommendation_candidates(settings: Settings) -> list[Candidate]:
    """The named services, the installed apps, and the built-in apps not installed."""
    candidates = [
        Candidate("service", d.name, d.description)
        for d in ServiceRegistry.load(settings.home).list()
    ]
    installed = {app.name: app for app in AppStore(settings.home).list()}
    for name, app in sorted(installed.items()):
        candidates.append(Candidate("app", name, app.manifest.description))
    for name in builtin_names():
        if name not in installed:
            candidates.append(Candidate("app", name, load_manifest(builtin_path(name)).description))
    return candidates
