"""The last measured quality of each named service, as `GET /v1/services/{name}` reports it.

``llmasos eval service:NAME`` records one entry per service in
``$LLMASOS_HOME/eval/services.json``: the dataset, the main metric and its value for the
service and for its two references (the content-free baseline and the same task asked
plainly in chat), the model, the number of items and the date. A later run of the same
service replaces its entry. The file is written whole and renamed into place, so a reader
never sees half of it; a missing or unreadable file means "not measured yet".
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

QUALITY_FILE = Path("eval") / "services.json"


def quality_path(home: Path) -> Path:
    return Path(home) / QUALITY_FILE


def read_all(home: Path) -> dict[str, dict[str, Any]]:
    """Every recorded entry by service name ({} when nothing was measured)."""
    try:
        data = json.loads(quality_path(home).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def read_quality(home: Path, service: str) -> dict[str, Any] | None:
    """The last measured quality of ``service``, or None."""
    return read_all(home).get(service)


def record_quality(home: Path, service: str, entry: dict[str, Any]) -> Path:
    """Store ``entry`` as the last measured quality of ``service``; returns the file."""
    path = quality_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = read_all(home)
    data[service] = entry
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".services-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=2, ensure_ascii=False, sort_keys=True)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
