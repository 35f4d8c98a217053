"""A light core: `import llmasos` and `llmasos --help` work without torch or transformers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK_HEAVY = textwrap.dedent(
    """
    import sys

    class Block:
        heavy = ("torch", "transformers", "sentence_transformers", "accelerate", "llguidance")

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.heavy:
                raise ImportError(f"{name} is blocked for this test")
            return None

    sys.meta_path.insert(0, Block())
    """
)


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_HEAVY + code],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_without_heavy_dependencies() -> None:
    result = run_python(
        "import llmasos, llmasos.kernel.client, llmasos.server.app, llmasos.plugins\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in Block.heavy]\n"
        "assert not heavy, heavy\n"
        "print(llmasos.__version__)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_cli_help_without_heavy_dependencies() -> None:
    result = run_python(
        "from llmasos.cli.main import main\n"
        "sys.argv = ['llmasos', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    assert exit.code in (0, None), exit.code\n"
    )
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout and "run" in result.stdout


def test_missing_backend_dependency_is_a_clear_error() -> None:
    result = run_python(
        "from llmasos.plugins import get_registry\n"
        "from llmasos.errors import BackendUnavailableError\n"
        "try:\n"
        "    get_registry().backend('transformers')\n"
        "except BackendUnavailableError as error:\n"
        "    print(error)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "not installed" in result.stdout
