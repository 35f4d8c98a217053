"""Request -> GenerateRequest / SamplingParams mapping, without a server."""

from __future__ import annotations

import pytest

from llmasos.errors import InvalidRequestError, UnsupportedError
from llmasos.server.ollama.common import KeepAlive, Options, sampling_from_options
from llmasos.server.ollama.generate.protocol import ChatBody, GenerateBody
from llmasos.server.ollama.generate.serving import build_chat_request, build_generate_request
from llmasos.server.openai.chat.protocol import ChatCompletionRequest
from llmasos.server.openai.chat.serving import build_generate_requests, tool_plan_of
from llmasos.server.openai.completions.protocol import CompletionRequest
from llmasos.server.openai.completions.serving import (
    build_generate_requests as build_completion_requests,
)
from llmasos.server.sampling import build_sampling
from llmasos.types import OLLAMA_PARAMETERS, SamplingParams


def chat(**fields: object) -> ChatCompletionRequest:
    body = {"messages": [{"role": "user", "content": "Hi"}], **fields}
    return ChatCompletionRequest.model_validate(body)


def chat_requests(**fields: object):  # type: ignore[no-untyped-def]
    body = chat(**fields)
    return build_generate_requests(body, tool_plan_of(body), "rid")


def test_unset_fields_keep_defaults_and_are_not_explicit() -> None:
    (request,) = chat_requests()
    assert request.sampling == SamplingParams()
    assert request.explicit == frozenset()
    assert request.apply_model_defaults and request.tenant == "anonymous"
    assert request.request_id == "rid" and request.keep_alive == ""


def test_given_fields_are_explicit() -> None:
    (request,) = chat_requests(
        temperature=0,
        top_p=0.5,
        max_completion_tokens=9,
        max_tokens=99,
        stop="END",
        seed=3,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        logit_bias={"42": -100},
        top_k=5,
        min_p=0.1,
        repetition_penalty=1.2,
        priority=-1,
        keep_alive="1m",
        user="bob",
    )
    s = request.sampling
    assert (s.temperature, s.top_p, s.max_tokens, s.stop, s.seed) == (0, 0.5, 9, ("END",), 3)
    assert s.logit_bias == {42: -100.0} and (s.top_k, s.min_p) == (5, 0.1)
    assert request.explicit == {
        "temperature",
        "top_p",
        "max_tokens",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "top_k",
        "min_p",
        "repetition_penalty",
    }
    assert (request.priority, request.keep_alive, request.tenant) == (-1, "1m", "bob")


def test_n_makes_one_request_per_choice_with_distinct_seeds() -> None:
    requests = chat_requests(n=3, seed=10)
    assert [r.sampling.seed for r in requests] == [10, 11, 12]
    assert [r.request_id for r in requests] == ["rid-0", "rid-1", "rid-2"]


def test_messages_are_normalized_for_the_template() -> None:
    (request,) = chat_requests(
        messages=[
            {"role": "developer", "content": "Rules"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"x": 1}'},
                    }
                ],
            },
            {"role": "tool", "content": "2", "tool_call_id": "c1"},
        ]
    )
    messages = list(request.messages or [])
    assert messages[0] == {"role": "system", "content": "Rules"}
    assert messages[1]["content"] == "a\nb"
    assert messages[2]["tool_calls"][0]["function"]["arguments"] == {"x": 1}
    assert messages[3]["tool_call_id"] == "c1"


def test_image_content_is_refused() -> None:
    with pytest.raises(UnsupportedError):
        chat_requests(messages=[{"role": "user", "content": [{"type": "image_url"}]}])


def test_logprobs_mapping() -> None:
    (request,) = chat_requests(logprobs=True)
    assert request.sampling.logprobs == 0
    (request,) = chat_requests(logprobs=True, top_logprobs=4)
    assert request.sampling.logprobs == 4
    (request,) = chat_requests(top_logprobs=4)
    assert request.sampling.logprobs is None


def test_bad_logit_bias_names_param() -> None:
    with pytest.raises(InvalidRequestError) as error:
        chat_requests(logit_bias={"x": 1})
    assert error.value.param == "logit_bias"
    with pytest.raises(InvalidRequestError):
        chat_requests(logit_bias={"1": 500})


def test_completions_are_raw_and_prompt_major() -> None:
    body = CompletionRequest.model_validate({"prompt": ["a", "b"], "n": 2, "max_tokens": 3})
    requests = build_completion_requests(body, "r")
    assert [(r.prompt, r.raw) for r in requests] == [("a", True)] * 2 + [("b", True)] * 2
    assert [r.request_id for r in requests] == ["r-0", "r-1", "r-2", "r-3"]
    assert requests[0].explicit == {"max_tokens"}
    with pytest.raises(InvalidRequestError):
        build_completion_requests(CompletionRequest.model_validate({"prompt": []}), "r")


def test_ollama_options_mapping() -> None:
    options = Options.model_validate(
        {
            "num_predict": 5,
            "repeat_penalty": 1.3,
            "repeat_last_n": 32,
            "stop": ["a", ""],
            "num_ctx": 8192,
            "num_gpu": 1,
        }
    )
    sampling, explicit = sampling_from_options(options)
    assert (sampling.max_tokens, sampling.repetition_penalty, sampling.penalty_last_n) == (
        5,
        1.3,
        32,
    )
    assert sampling.stop == ("a",)
    assert explicit == {"max_tokens", "repetition_penalty", "penalty_last_n", "stop"}
    with pytest.raises(InvalidRequestError) as error:
        sampling_from_options(Options(temperature=9))
    assert error.value.param == "options.temperature"


def test_ollama_generate_and_chat_requests() -> None:
    body = GenerateBody.model_validate(
        {"model": "m", "prompt": "p", "system": "s", "format": "json"}
    )
    request = build_generate_request(body, "r")
    assert (request.prompt, request.system, request.raw) == ("p", "s", False)
    assert request.sampling.structured is not None
    assert request.sampling.structured.kind == "json_object"
    with pytest.raises(UnsupportedError):
        build_generate_request(GenerateBody(model="m", prompt="p", images=["aGk="]), "r")
    chat_body = ChatBody.model_validate(
        {
            "model": "m",
            "messages": [
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}],
                },
                {"role": "tool", "content": "1", "tool_name": "f"},
            ],
        }
    )
    chat_request, plan = build_chat_request(chat_body, "r")
    assert plan.mode == "none"
    messages = list(chat_request.messages or [])
    assert messages[0]["tool_calls"][0]["function"] == {"name": "f", "arguments": {"a": 1}}
    assert messages[1]["name"] == "f"


def test_keep_alive() -> None:
    assert KeepAlive.value(None) == "" and KeepAlive.value("5m") == "5m"
    assert KeepAlive.unloads(0) and KeepAlive.unloads("0") and not KeepAlive.unloads("5m")
    assert not KeepAlive.unloads(-1)
    with pytest.raises(InvalidRequestError):
        KeepAlive.value("soon")


def test_build_sampling_unset_means_explicit_none() -> None:
    sampling, explicit = build_sampling({"max_tokens": None}, unset=frozenset({"max_tokens"}))
    assert sampling.max_tokens is None and explicit == {"max_tokens"}


def test_ollama_options_are_the_parameter_table() -> None:
    """The Ollama ``options`` model declares exactly the parameters of the one table."""
    assert set(Options.model_fields) == set(OLLAMA_PARAMETERS)
    for name, parameter in OLLAMA_PARAMETERS.items():
        annotation = str(Options.model_fields[name].annotation)
        assert parameter.value_type.__name__ in annotation, name


def test_the_repetition_guard_is_an_option_in_both_dialects() -> None:
    (request,) = chat_requests(repetition_guard=False)
    assert request.sampling.repetition_guard is False and "repetition_guard" in request.explicit
    (request,) = chat_requests()
    assert request.sampling.repetition_guard and "repetition_guard" not in request.explicit
    sampling, explicit = sampling_from_options(Options(repetition_guard=False))
    assert sampling.repetition_guard is False and "repetition_guard" in explicit


def test_a_modelfile_parameter_reads_booleans_as_words() -> None:
    from llmasos.models.modelfile import parse_parameter

    assert parse_parameter("repetition_guard", "false") is False
    assert parse_parameter("REPETITION_GUARD", "on") is True
    with pytest.raises(InvalidRequestError, match="true or false"):
        parse_parameter("repetition_guard", "maybe")
