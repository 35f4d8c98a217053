"""Offline, deterministic request sets for serving benchmarks: ``random`` and ``chat``.

A workload is a list of `BenchRequest` (chat messages, a ``max_tokens`` cap, an optional
tenant). The same name, size, lengths and seed always give the same list, on any machine,
with nothing downloaded. ``random`` prompts are an instruction plus random common English
words, each of which is one token in GPT-2-style BPE vocabularies (SmolLM2, Llama 3, Qwen),
so a prompt of ``input_len`` words is about ``input_len`` tokens before the chat template.
``chat`` mixes short questions, explanations, long writing tasks and multi-turn contexts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from llmasos.errors import InvalidRequestError

WorkloadName = Literal["random", "chat"]
WORKLOADS: tuple[str, ...] = ("random", "chat")

# Common words that are single tokens (with a leading space) in GPT-2-style BPE vocabularies.
WORDS: tuple[str, ...] = tuple(
    [
        "time",
        "year",
        "people",
        "way",
        "day",
        "man",
        "thing",
        "woman",
        "life",
        "child",
        "world",
        "school",
        "state",
        "family",
        "student",
        "group",
        "country",
        "problem",
        "hand",
        "part",
        "place",
        "case",
        "week",
        "company",
        "system",
        "program",
        "question",
        "work",
        "government",
        "number",
        "night",
        "point",
        "home",
        "water",
        "room",
        "mother",
        "area",
        "money",
        "story",
        "fact",
        "month",
        "lot",
        "right",
        "study",
        "book",
        "eye",
        "job",
        "word",
        "business",
        "issue",
        "side",
        "kind",
        "head",
        "house",
        "service",
        "friend",
        "father",
        "power",
        "hour",
        "game",
        "line",
        "end",
        "member",
        "law",
        "car",
        "city",
        "community",
        "name",
        "president",
        "team",
        "minute",
        "idea",
        "kid",
        "body",
        "information",
        "back",
        "parent",
        "face",
        "others",
        "level",
        "office",
        "door",
        "health",
        "person",
        "art",
        "war",
        "history",
        "party",
        "result",
        "change",
        "morning",
        "reason",
        "research",
        "girl",
        "guy",
        "moment",
        "air",
        "teacher",
        "force",
        "education",
        "river",
        "mountain",
        "garden",
        "window",
        "bread",
        "music",
        "light",
        "paper",
        "table",
        "green",
        "blue",
        "red",
        "small",
        "large",
        "old",
        "new",
        "good",
        "great",
        "little",
        "long",
        "high",
        "young",
        "early",
        "important",
        "public",
        "bad",
        "same",
        "able",
    ]
)

RANDOM_INSTRUCTION = "Write a long story that uses these words:"

TOPICS: tuple[str, ...] = (
    "the ocean",
    "a lighthouse keeper",
    "volcanoes",
    "the history of bread",
    "a robot learning to paint",
    "photosynthesis",
    "the moon landing",
    "a small mountain village",
    "how computers store numbers",
    "a lost cat finding its way home",
    "the water cycle",
    "ancient Rome",
    "learning a new language",
    "a rainy afternoon in a library",
    "bees and flowers",
    "the first day at a new school",
)

SHORT_TASKS: tuple[str, ...] = (
    "What is {topic}? Answer in one sentence.",
    "Give me three facts about {topic}.",
    "Name one interesting thing about {topic}.",
)
MEDIUM_TASKS: tuple[str, ...] = (
    "Explain {topic} to a ten-year-old in a few paragraphs.",
    "Write a short poem about {topic}.",
    "List the pros and cons of studying {topic}, with a sentence for each.",
)
LONG_TASKS: tuple[str, ...] = (
    "Write a long story about {topic}. Describe every scene in detail.",
    "Write a detailed essay about {topic}, with an introduction, several sections and a "
    "conclusion.",
    "Write a long letter to a friend telling them everything you know about {topic}.",
)
FOLLOW_UPS: tuple[str, ...] = (
    "Tell me more, and make it longer.",
    "Now continue the story from where you stopped.",
    "Can you explain that again with an example?",
    "Rewrite your answer for an expert audience.",
)
CANNED_ANSWER = (
    "Here is what I know about {topic}. It has a long history, and people have studied it "
    "for many years. There are several parts to it, and each of them matters in its own way."
)


@dataclass
class BenchRequest:
    """One request of a workload: the chat messages and how many tokens to ask for."""

    messages: list[dict[str, str]]
    max_tokens: int
    kind: str = "random"
    user: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def prompt_words(self) -> int:
        """Whitespace-separated words in all messages (a rough size, not tokens)."""
        return sum(len(m["content"].split()) for m in self.messages)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise InvalidRequestError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def random_workload(
    num_prompts: int, input_len: int, output_len: int, seed: int = 0
) -> list[BenchRequest]:
    """``num_prompts`` prompts of about ``input_len`` tokens, each asking for ``output_len``."""
    _check_positive(num_prompts=num_prompts, input_len=input_len, output_len=output_len)
    rng = random.Random(f"random-{seed}")
    instruction_words = len(RANDOM_INSTRUCTION.split())
    filler = max(1, input_len - instruction_words)
    requests = []
    for _ in range(num_prompts):
        words = " ".join(rng.choice(WORDS) for _ in range(filler))
        content = f"{RANDOM_INSTRUCTION} {words}"
        requests.append(
            BenchRequest(
                messages=[{"role": "user", "content": content}],
                max_tokens=output_len,
                kind="random",
            )
        )
    return requests


def _chat_request(rng: random.Random, output_len: int) -> BenchRequest:
    topic = rng.choice(TOPICS)
    roll = rng.random()
    if roll < 0.3:
        kind, template, share = "short", rng.choice(SHORT_TASKS), 0.25
    elif roll < 0.6:
        kind, template, share = "medium", rng.choice(MEDIUM_TASKS), 0.5
    else:
        kind, template, share = "long", rng.choice(LONG_TASKS), 1.0
    messages: list[dict[str, str]] = []
    if rng.random() < 0.2:
        messages.append({"role": "system", "content": "You are a helpful assistant."})
    turns = rng.choice((0, 0, 1, 2))
    if turns:
        kind = f"{kind}+{turns}turn"
    for _ in range(turns):
        earlier = rng.choice(TOPICS)
        messages.append({"role": "user", "content": rng.choice(MEDIUM_TASKS).format(topic=earlier)})
        answer = " ".join([CANNED_ANSWER.format(topic=earlier)] * rng.randint(1, 4))
        messages.append({"role": "assistant", "content": answer})
    question = template.format(topic=topic)
    if turns and rng.random() < 0.5:
        question = rng.choice(FOLLOW_UPS)
    messages.append({"role": "user", "content": question})
    max_tokens = max(1, round(output_len * share * rng.uniform(0.75, 1.0)))
    return BenchRequest(messages=messages, max_tokens=max_tokens, kind=kind)


def chat_workload(num_prompts: int, output_len: int, seed: int = 0) -> list[BenchRequest]:
    """A mixed chat workload; ``output_len`` is the cap of the longest tasks."""
    _check_positive(num_prompts=num_prompts, output_len=output_len)
    rng = random.Random(f"chat-{seed}")
    return [_chat_request(rng, output_len) for _ in range(num_prompts)]


def build_workload(
    name: str, num_prompts: int, *, input_len: int, output_len: int, seed: int = 0
) -> list[BenchRequest]:
    """The named workload; an unknown name raises `InvalidRequestError`."""
    if name == "random":
        return random_workload(num_prompts, input_len, output_len, seed)
    if name == "chat":
        return chat_workload(num_prompts, output_len, seed)
    raise InvalidRequestError(
        f"unknown workload {name!r}; choose one of: {', '.join(WORKLOADS)}", param="workload"
    )
