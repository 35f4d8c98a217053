"""The perception benchmark's measures: error rates, one speech case, one OCR page."""

from __future__ import annotations

from llmasos.bench.speech import (
    PerceptionBenchReport,
    bench_speech,
    characters_of,
    edit_distance,
    load_texts,
    render_page,
    table_rows,
    words_of,
)
from llmasos.perception.media import sniff
from tests.perception.media_fixtures import font, needs_espeak


def test_error_rates_count_edits() -> None:
    assert edit_distance(words_of("The cat sat."), words_of("the cat sat")) == 0
    assert edit_distance(words_of("the cat sat"), words_of("a cat sat down")) == 2
    assert characters_of("你好， 世界。") == ["你", "好", ",", "世", "界", "."]
    texts = load_texts()
    assert len(texts["speech_sentences"]) >= 20 and texts["ocr_chinese"]


@needs_espeak
def test_one_speech_case_and_the_table() -> None:
    sentence = "The library is closed on Sunday afternoon."
    (case,) = bench_speech([sentence])
    assert case.words == 7 and 0 <= case.word_errors <= 7 + len(words_of(case.heard))
    assert 0 < case.first_chunk_seconds <= case.synthesize_seconds
    assert case.audio_seconds > 1 and case.recognize_seconds > 0
    rows = table_rows(PerceptionBenchReport(machine={}, speech=[case]))
    assert [r[0] for r in rows][:2] == ["WER pocketsphinx", "RTF pocketsphinx"]


def test_pages_render_clean_and_scanned() -> None:
    dejavu = font("DejaVuSans.ttf")
    assert sniff(render_page(["Hello"], dejavu, 24, scanned=False)) == "image/png"
    assert sniff(render_page(["Hello"], dejavu, 24, scanned=True)) == "image/jpeg"
