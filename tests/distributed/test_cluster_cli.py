"""`llmasos cluster` and `deploy` without a cluster: the one-line errors a user sees, and
the pieces of model transfer (verified by sha256) that need no Ray."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest

from llmasos.cli.main import main
from llmasos.distributed import cluster
from llmasos.distributed.modelfetch import fetch_blob
from llmasos.errors import StorageError
from llmasos.net import free_port


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exit:
        code = int(exit.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_join_with_no_cluster_there_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{free_port()}"
    code, output = run_cli(capsys, "cluster", "join", address)
    assert code == 1
    assert f"no Ray cluster at {address}" in output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1


def test_status_with_no_cluster_there(capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{free_port()}"
    code, output = run_cli(capsys, "cluster", "status", "--address", address)
    assert code == 1 and f"no Ray cluster at {address}" in output


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--engine", "tgi"], "unknown engine 'tgi': auto, llmasos or vllm"),
        (["--engine", "vllm", "--tensor-parallel", "2"], "give --gpus-per-replica 2"),
        (["--engine", "llmasos", "--tensor-parallel", "2"], "need --engine vllm"),
        (["--pipeline-parallel", "2"], "it needs GPUs"),  # auto: a split model is vLLM's
        (["--engine", "vllm", "--pipeline-parallel", "2"], "it needs GPUs"),
    ],
)
def test_engine_options_that_do_not_fit_are_one_line_before_any_cluster(
    capsys: pytest.CaptureFixture[str], options: list[str], says: str
) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing there: the options are checked first
    code, output = run_cli(capsys, "deploy", "smollm2", *options, "--address", address)
    assert code == 1 and says in output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1


def test_start_needs_head(capsys: pytest.CaptureFixture[str]) -> None:
    code, output = run_cli(capsys, "cluster", "start")
    assert code == 2 and "--head" in output


def test_missing_ray_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    code, output = run_cli(capsys, "cluster", "stop")
    assert code == 1
    assert output.strip() == f"Error: Ray is not installed: {cluster.INSTALL_HINT}"


def test_bad_address_is_refused() -> None:
    with pytest.raises(cluster.ClusterError, match="HOST:PORT"):
        cluster.split_address("nohost")


def _blob(tmp_path: Path, data: bytes) -> tuple[Path, str]:
    path = tmp_path / "head.gguf"
    path.write_bytes(data)
    return path, f"sha256:{hashlib.sha256(data).hexdigest()}"


def test_a_model_is_copied_from_the_head_in_chunks_and_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmasos.distributed import modelfetch

    monkeypatch.setattr(modelfetch, "CHUNK_BYTES", 1000)
    data = bytes(range(256)) * 20
    head, digest = _blob(tmp_path, data)
    reads = []

    def read(blob: str, offset: int, length: int) -> bytes:
        reads.append(length)
        return head.read_bytes()[offset : offset + length]

    cache = tmp_path / "cache"
    result = fetch_blob(digest, len(data), cache, head_path=head, read=read, copy=True)
    assert result.how == "copied" and result.path.read_bytes() == data
    assert len(reads) == 6  # 5120 bytes in chunks of 1000
    again = fetch_blob(digest, len(data), cache, head_path=None, read=read)
    assert again.how == "cache" and len(reads) == 6
    shared = fetch_blob(digest, len(data), tmp_path / "other", head_path=head, read=read)
    assert shared.how == "shared" and shared.path == head


def test_a_corrupt_copy_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    data = b"weights" * 100
    _, digest = _blob(tmp_path, data)
    cache = tmp_path / "cache"
    with pytest.raises(StorageError, match="refused"):
        fetch_blob(digest, len(data), cache, head_path=None, read=lambda d, o, n: b"x" * n)
    assert not [p for p in (cache / "blobs").iterdir()]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--min", "1"], "autoscaling needs both --min and --max"),
        (["--min", "2", "--max", "1"], "--max (1) is below --min (2)"),
        (["--min", "1", "--max", "2", "--replicas", "0"], "--replicas 0 removes the model"),
    ],
)
def test_autoscaling_flags_are_checked_before_any_cluster(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, output = run_cli(capsys, "deploy", "smollm2", *args)
    assert code == 1 and message in output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1
