"""Model-written Python, run confined: the ``python_run`` tool and the runner under it.

`CodeSandbox.run` writes the source to ``main.py`` in a fresh scratch directory and runs it
with `llmasos.sandbox.spawn`: namespaces with a read-only system and Python, the scratch
directory as the only writable (and the working, home and temp) directory, the LLMasOS home
hidden, no network at all unless the admin's ``code_network`` grants the host's, seccomp,
and limits on memory, processes, CPU time, file size and wall-clock time. Its environment is
a fixed minimal one, never the server's. Standard output and error are captured up to
`OUTPUT_BYTES` each; past that the text ends with a marker saying how much was left out, never
silently. A run that passes its time is killed with its whole sandbox and says so; one the
kernel killed for memory says that. The scratch directory is removed afterwards.

The settings give every limit (`CodeSandbox.from_settings`); ``app_confinement = strict``
refuses to run code on a machine that cannot confine it (`ConfinementError`, before anything
runs). ``python_run`` needs the ``code`` scope and asks for approval (a side effect); the
workflow engine's ``code`` node calls the same runner (`llmasos.workflows.nodes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

from llmasos.sandbox import ConfinementMode, ResourceLimits, SandboxSpec, spawn
from llmasos.tools.interface import Tool, ToolContext, ToolResult, ToolSpec

if TYPE_CHECKING:
    from llmasos.config import Settings

PERMISSION: Final = "code"
MAX_CODE_CHARS: Final = 100_000
MAX_TIMEOUT_S: Final = 300.0
"""The largest ``code_timeout_s`` (the setting's bound)."""
OUTPUT_BYTES: Final = 32 * 1024
"""Standard output and standard error kept, each; the rest is counted, not kept."""
PROCESSES: Final = 32
FILE_SIZE_MB: Final = 64
OPEN_FILES: Final = 256
GRACE_S: Final = 5.0
"""How long the output readers may go on after the program ended."""
SCRIPT: Final = "main.py"
ENVIRONMENT: Final = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class CodeResult:
    """What one run did. ``exit_code`` is negative for a signal (``-9``: killed)."""

    exit_code: int
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool
    reason: str | None
    """Why the sandbox ended it, when it did: the time, memory or CPU limit."""
    duration_ms: int
    confinement: str
    """The layers in force (`ConfinementReport.summary`)."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CodeSandbox:
    """How code runs here: the mode and limits, from the settings."""

    mode: ConfinementMode = ConfinementMode.STRICT
    network: bool = False
    timeout_s: float = 30.0
    memory_mb: int = 256
    processes: int = PROCESSES
    file_size_mb: int = FILE_SIZE_MB
    output_bytes: int = OUTPUT_BYTES
    hidden: tuple[Path, ...] = ()
    """Directories no run may see even where a readable one holds them (the LLMasOS home)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> CodeSandbox:
        return cls(
            mode=ConfinementMode(settings.app_confinement),
            network=settings.code_network,
            timeout_s=settings.code_timeout_s,
            memory_mb=settings.code_memory_mb,
            hidden=(Path(settings.home),),
        )

    def spec(self, scratch: Path, timeout_s: float) -> SandboxSpec:
        return SandboxSpec(
            name="code",
            network=self.network,
            writable=(scratch,),
            hidden=self.hidden,
            limits=ResourceLimits(
                memory_mb=self.memory_mb,
                processes=self.processes,
                open_files=OPEN_FILES,
                file_size_mb=self.file_size_mb,
                cpu_seconds=max(1, int(timeout_s + 0.999)),
            ),
        )

    def run(
        self,
        code: str,
        *,
        stdin: bytes | None = None,
        timeout_s: float | None = None,
        cancel: threading.Event | None = None,
    ) -> CodeResult:
        """Run ``code`` to its end, its time limit (``timeout_s``, at most the sandbox's), or
        ``cancel``; ``stdin`` is its standard input. `ConfinementError` in strict mode on a
        machine that cannot confine it."""
        limit = min(timeout_s or self.timeout_s, self.timeout_s)
        scratch = Path(tempfile.mkdtemp(prefix="llmasos-code-"))
        try:
            (scratch / SCRIPT).write_text(code, encoding="utf-8")
            return self._run(scratch, stdin, limit, cancel or threading.Event())
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    async def run_async(
        self, code: str, *, stdin: bytes | None = None, timeout_s: float | None = None
    ) -> CodeResult:
        """`run` in a worker thread; a cancelled caller (a timeout above) kills the run."""
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(
                self.run, code, stdin=stdin, timeout_s=timeout_s, cancel=cancel
            )
        except asyncio.CancelledError:
            cancel.set()
            raise

    def _run(
        self, scratch: Path, stdin: bytes | None, limit: float, cancel: threading.Event
    ) -> CodeResult:
        environment = {**ENVIRONMENT, "HOME": str(scratch), "TMPDIR": str(scratch)}
        if os.environ.get("PYTHONPATH"):  # where the sandbox's own first process is found
            environment["PYTHONPATH"] = os.environ["PYTHONPATH"]
        spec = self.spec(scratch, limit)
        started = time.monotonic()
        process = spawn(
            # -E: the program ignores PYTHON* variables (PYTHONPATH above is the sandbox's);
            # -s: no user site; -u: output as it is written; -X utf8: UTF-8 whatever the locale
            [sys.executable, "-E", "-s", "-u", "-X", "utf8", SCRIPT],
            spec,
            mode=self.mode,
            cwd=scratch,
            env=environment,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        with process:
            assert process.stdout is not None and process.stderr is not None
            readers = [_Capture(process.stdout, self.output_bytes)]
            readers.append(_Capture(process.stderr, self.output_bytes))
            if stdin and process.stdin is not None:
                _feed(process.stdin, stdin)
            deadline = started + limit
            timed_out = False
            while process.poll() is None:
                if cancel.is_set() or time.monotonic() >= deadline:
                    timed_out = not cancel.is_set()
                    process.kill()
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.05)
            code = process.wait()
            for reader in readers:
                reader.join(GRACE_S)
            reason = process.exit_reason()
        if timed_out:
            reason = f"stopped at the time limit of {limit:g} s"
        elif cancel.is_set():
            reason = "cancelled"
        elif reason is None and code == -signal.SIGXCPU:
            reason = f"stopped at the CPU time limit of {spec.limits.cpu_seconds} s"
        stdout, stderr = readers
        return CodeResult(
            exit_code=code,
            stdout=stdout.text(),
            stderr=stderr.text(),
            stdout_truncated=stdout.truncated,
            stderr_truncated=stderr.truncated,
            timed_out=timed_out,
            reason=reason,
            duration_ms=int((time.monotonic() - started) * 1000),
            confinement=process.report.summary(),
        )


class _Capture(threading.Thread):
    """Read a stream to its end, keeping the first ``limit`` bytes and counting the rest
    (the program never blocks on a full pipe)."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.limit = limit
        self.kept = bytearray()
        self.total = 0
        self.start()

    def run(self) -> None:
        descriptor = self.stream.fileno()
        with contextlib.suppress(OSError, ValueError):
            while chunk := os.read(descriptor, 65536):
                self.total += len(chunk)
                room = self.limit - len(self.kept)
                if room > 0:
                    self.kept += chunk[:room]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.kept)

    def text(self) -> str:
        text = bytes(self.kept).decode("utf-8", errors="replace")
        if self.truncated:
            left = self.total - len(self.kept)
            text += f"\n[output truncated: {left} more bytes not shown (the limit is {self.limit})]"
        return text


def _feed(stream: IO[bytes], data: bytes) -> None:
    """Write ``data`` to the program's standard input in a thread, then close it (a program
    that never reads it must not block the runner)."""

    def write() -> None:
        with contextlib.suppress(OSError, ValueError):
            stream.write(data)
        with contextlib.suppress(OSError, ValueError):
            stream.close()

    threading.Thread(target=write, daemon=True).start()


class PythonRun(Tool):
    spec = ToolSpec(
        name="python_run",
        description=(
            "Run a Python 3 program and get its exit status, standard output and standard "
            "error. It runs in a sandbox: no network, no files but an empty scratch "
            "directory (its working directory), limited memory, processes and time. Print "
            "what you want to see; long output is cut and says so."
        ),
        parameters={
            "type": "object",
            "properties": {
                "code": {"type": "string", "minLength": 1, "maxLength": MAX_CODE_CHARS},
                "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_S},
            },
            "required": ["code"],
            "additionalProperties": False,
        },
        permission=PERMISSION,
        side_effect=True,
        group="code",
        timeout_s=MAX_TIMEOUT_S + 15.0,  # the runner's own limit comes first
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        sandbox = CodeSandbox.from_settings(context.system.settings)
        result = await sandbox.run_async(arguments["code"], timeout_s=arguments.get("timeout_s"))
        output = result.to_dict()
        del output["confinement"]
        lines = len(arguments["code"].splitlines())
        effect = f"ran {lines} line(s) of Python in the sandbox: exit status {result.exit_code}"
        if result.reason:
            effect += f" ({result.reason})"
        if not result.confinement.startswith("full"):
            effect += f"; confinement {result.confinement}"
        return ToolResult(output, is_error=not result.ok, effects=(effect,))

    async def describe(self, arguments: dict[str, Any], context: ToolContext) -> str:
        sandbox = CodeSandbox.from_settings(context.system.settings)
        code: str = arguments["code"]
        shown = code if len(code) <= 2000 else code[:2000] + f"\n... ({len(code) - 2000} more)"
        network = "with the network" if sandbox.network else "without network"
        limit = min(arguments.get("timeout_s") or sandbox.timeout_s, sandbox.timeout_s)
        return (
            f"run this Python in the sandbox ({network}, up to {limit:g} s and "
            f"{sandbox.memory_mb} MB):\n{shown}"
        )
