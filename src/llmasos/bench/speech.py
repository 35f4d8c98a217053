"""``llmasos bench speech``: speech and OCR quality and speed on this machine.

Speech: each sentence shipped in ``data/perception_texts.json`` is spoken by espeak-ng and
recognized by every recognizer available (pocketsphinx, and each whisper model in the store
when faster-whisper is installed) through the engines the server uses; it reports, per
recognizer, the word error rate of the round trip and the real-time factor (seconds of work
per second of audio; below 1 is faster than real time), and the voice's characters per
second and its time to the first audio chunk. OCR: the shipped English and Chinese lines are
rendered with Debian's fonts (DejaVu Sans / Serif / Sans Mono, WenQuanYi Micro Hei) at several
sizes, plus a "scanned" variant (rotated, blurred, noisy, JPEG-compressed), and the real
photographed pages shipped in ``data/scans/`` (their sources and licences in ``pages.json``),
read by tesseract; it reports the character error rate and the latency per page. Prints a
table, writes JSON.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import platform
import re
import statistics
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from llmasos.models.interface import ModelStoreInterface
from llmasos.perception.interface import SAMPLE_RATE, VOICE_SAMPLE_RATE, SpeechToTextInterface
from llmasos.perception.media import resample
from llmasos.perception.service import PerceptionEngines
from llmasos.plugins import get_registry

FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/wqy")
ENGLISH_FONTS = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")
CHINESE_FONTS = ("wqy-microhei.ttc",)
SIZES = (16, 24, 36)


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, start=1):
        current = [i]
        for j, hyp in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def characters_of(text: str) -> list[str]:
    """Characters compared for CER: whitespace dropped, full-width punctuation folded."""
    folded = text.replace("，", ",").replace("。", ".")
    return [c for c in folded if not c.isspace()]


@dataclass
class SpeechCase:
    sentence: str
    heard: str
    word_errors: int
    words: int
    audio_seconds: float
    recognize_seconds: float
    recognize_cpu_seconds: float
    """CPU time of the recognition, all its threads (pocketsphinx runs one, CTranslate2 may
    run several): what it costs the machine."""
    synthesize_seconds: float
    first_chunk_seconds: float
    engine: str = "pocketsphinx"


@dataclass
class OcrCase:
    language: str
    font: str
    size: int
    scanned: bool
    characters: int
    character_errors: int
    seconds: float
    photographed: bool = False
    """A real photographed or scanned page (``data/scans/``), not a rendered one."""


@dataclass
class PerceptionBenchReport:
    machine: dict[str, Any]
    speech: list[SpeechCase] = field(default_factory=list)
    ocr: list[OcrCase] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        speech = self.speech
        result: dict[str, Any] = {}
        engines: dict[str, list[SpeechCase]] = {}
        for spoken in speech:
            engines.setdefault(spoken.engine, []).append(spoken)
        if speech:
            first = next(iter(engines.values()))  # each sentence was spoken once
            result["speech"] = {
                "sentences": len(first),
                "tts_chars_per_second": sum(len(c.sentence) for c in first)
                / max(1e-9, sum(c.synthesize_seconds for c in first)),
                "tts_first_chunk_ms_median": 1000
                * statistics.median(c.first_chunk_seconds for c in first),
                "recognizers": {
                    engine: {
                        "wer": sum(c.word_errors for c in cases)
                        / max(1, sum(c.words for c in cases)),
                        "real_time_factor": sum(c.recognize_seconds for c in cases)
                        / (sum(c.audio_seconds for c in cases) or 1.0),
                        "real_time_factor_cpu": sum(c.recognize_cpu_seconds for c in cases)
                        / (sum(c.audio_seconds for c in cases) or 1.0),
                    }
                    for engine, cases in engines.items()
                },
            }
        groups: dict[str, list[OcrCase]] = {}
        for case in self.ocr:
            key = case.language + (
                " photographed" if case.photographed else " scanned" if case.scanned else ""
            )
            groups.setdefault(key, []).append(case)
        result["ocr"] = {
            key: {
                "pages": len(cases),
                "cer": sum(c.character_errors for c in cases)
                / max(1, sum(c.characters for c in cases)),
                "seconds_per_page_median": statistics.median(c.seconds for c in cases),
            }
            for key, cases in groups.items()
        }
        return result

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "summary": self.summary(),
            "speech": [asdict(c) for c in self.speech],
            "ocr": [asdict(c) for c in self.ocr],
        }


def load_texts() -> dict[str, list[str]]:
    text = resources.files("llmasos.bench").joinpath("data/perception_texts.json").read_text()
    data: dict[str, list[str]] = json.loads(text)
    return data


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_average_1m_at_start": round(load[0], 2),
    }


def recognizers(
    store: ModelStoreInterface | None, names: list[str] | None = None
) -> list[SpeechToTextInterface]:
    """The recognizers ``names`` picks (engines or store speech models); None: pocketsphinx
    and, where faster-whisper is installed, every whisper model in ``store``."""
    service = PerceptionEngines(store=store)
    if names is None:
        names = ["pocketsphinx"]
        if importlib.util.find_spec("faster_whisper") is not None:
            names += [name for name, _ in service.speech_models()]
    return [service.speech_engine(name) for name in names]


def bench_speech(
    sentences: list[str],
    engines: list[SpeechToTextInterface] | None = None,
    voice: str = "alloy",
) -> list[SpeechCase]:
    """Each sentence spoken once and recognized by each of ``engines`` (None: the
    default speech engine without a store, pocketsphinx)."""
    tts = get_registry().perception_engine("voice")()
    stts = engines if engines is not None else recognizers(None, ["pocketsphinx"])
    for stt in stts:  # load the decoder or the weights before timing
        stt.transcribe(b"\x00\x00" * SAMPLE_RATE, language="en", prompt=None)
    cases = []
    for sentence in sentences:
        started = time.perf_counter()
        chunks = tts.synthesize(sentence, voice=voice, speed=1.0)
        first = next(chunks)
        first_chunk = time.perf_counter() - started
        pcm = first + b"".join(chunks)
        synthesized = time.perf_counter() - started
        audio = resample(pcm, VOICE_SAMPLE_RATE, SAMPLE_RATE)
        reference = words_of(sentence)
        for stt in stts:
            started, cpu = time.perf_counter(), time.process_time()
            transcript = stt.transcribe(audio, language="en", prompt=None)
            recognized, recognized_cpu = time.perf_counter() - started, time.process_time() - cpu
            cases.append(
                SpeechCase(
                    sentence=sentence,
                    heard=transcript.text,
                    word_errors=edit_distance(reference, words_of(transcript.text)),
                    words=len(reference),
                    audio_seconds=len(audio) / (2 * SAMPLE_RATE),
                    recognize_seconds=recognized,
                    recognize_cpu_seconds=recognized_cpu,
                    synthesize_seconds=synthesized,
                    first_chunk_seconds=first_chunk,
                    engine=transcript.engine or stt.name,
                )
            )
    return cases


def _font(name: str) -> Path | None:
    for directory in FONT_DIRS:
        if (Path(directory) / name).exists():
            return Path(directory) / name
    return None


def render_page(lines: list[str], font: Path, size: int, scanned: bool) -> bytes:
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    face = ImageFont.truetype(str(font), size)
    spacing = int(size * 1.6)
    width = max(int(face.getlength(line)) for line in lines) + 80
    image = Image.new("L", (width, spacing * len(lines) + 60), 255)
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        draw.text((40, 30 + index * spacing), line, font=face, fill=0)
    out = io.BytesIO()
    if scanned:  # what a flatbed scan does to a page: skew, blur, grain, JPEG
        import numpy as np

        image = image.rotate(1.5, expand=True, fillcolor=255, resample=Image.Resampling.BICUBIC)
        image = image.filter(ImageFilter.GaussianBlur(0.8))
        pixels = np.asarray(image, dtype=np.float32)
        grain = np.random.default_rng(7).normal(0, 12, pixels.shape)
        image = Image.fromarray(np.clip(pixels + grain, 0, 255).astype("uint8"))
        image.save(out, format="JPEG", quality=40)
    else:
        image.save(out, format="PNG")
    return out.getvalue()


def bench_ocr(texts: dict[str, list[str]]) -> list[OcrCase]:
    engine = get_registry().perception_engine("ocr")()
    plans = [
        ("eng", texts["ocr_english"], ENGLISH_FONTS),
        ("chi_sim", texts["ocr_chinese"], CHINESE_FONTS),
    ]
    cases = []
    for language, lines, fonts in plans:
        for font_name in fonts:
            font = _font(font_name)
            if font is None:
                continue
            for size in SIZES:
                for scanned in (False, True) if size == SIZES[-1] else (False,):
                    page = render_page(lines, font, size, scanned)
                    started = time.perf_counter()
                    result = engine.read(page, language=language)
                    seconds = time.perf_counter() - started
                    reference = characters_of("".join(lines))
                    cases.append(
                        OcrCase(
                            language=language,
                            font=font_name,
                            size=size,
                            scanned=scanned,
                            characters=len(reference),
                            character_errors=edit_distance(reference, characters_of(result.text)),
                            seconds=seconds,
                        )
                    )
    scans = resources.files("llmasos.bench") / "data" / "scans"
    for page in json.loads((scans / "pages.json").read_text(encoding="utf-8"))["pages"]:
        started = time.perf_counter()
        result = engine.read((scans / page["file"]).read_bytes(), language=page["language"])
        seconds = time.perf_counter() - started
        reference = characters_of("".join(page["text"]))
        cases.append(
            OcrCase(
                language=page["language"],
                font=page["file"],
                size=0,
                scanned=True,
                characters=len(reference),
                character_errors=edit_distance(reference, characters_of(result.text)),
                seconds=seconds,
                photographed=True,
            )
        )
    return cases


def run_perception_bench(
    *,
    speech: bool = True,
    ocr: bool = True,
    store: ModelStoreInterface | None = None,
    models: list[str] | None = None,
) -> PerceptionBenchReport:
    """``models``: the recognizers to compare (see `recognizers`)."""
    texts = load_texts()
    report = PerceptionBenchReport(machine=machine())
    if speech:
        report.speech = bench_speech(texts["speech_sentences"], recognizers(store, models))
    if ocr:
        report.ocr = bench_ocr(texts)
    report.machine["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    return report


def table_rows(report: PerceptionBenchReport) -> list[tuple[str, str, str]]:
    """``(what, figure, detail)`` rows of the summary, for the CLI's table."""
    summary = report.summary()
    rows = []
    if "speech" in summary:
        s = summary["speech"]
        for engine, r in s["recognizers"].items():
            rows += [
                (
                    f"WER {engine}",
                    f"{r['wer']:.1%}",
                    f"{s['sentences']} sentences, espeak-ng → {engine}",
                ),
                (
                    f"RTF {engine}",
                    f"{r['real_time_factor']:.2f}",
                    f"wall seconds per audio second; {r['real_time_factor_cpu']:.2f} CPU seconds",
                ),
            ]
        rows += [
            ("TTS speed", f"{s['tts_chars_per_second']:.0f} chars/s", "espeak-ng, whole sentences"),
            (
                "TTS first chunk",
                f"{s['tts_first_chunk_ms_median']:.0f} ms",
                "median, first sentence",
            ),
        ]
    for key, o in summary["ocr"].items():
        rows.append(
            (
                f"OCR CER {key}",
                f"{o['cer']:.1%}",
                f"{o['pages']} pages, {o['seconds_per_page_median'] * 1000:.0f} ms/page median",
            )
        )
    return rows


def main() -> None:
    """``python -m llmasos.bench.speech [OUT.json]``: the table, and JSON (default
    ``perception-bench.json``)."""
    import sys

    report = run_perception_bench()
    for what, figure, detail in table_rows(report):
        print(f"{what:<22} {figure:>14}  {detail}")
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "perception-bench.json")
    out.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
