"""A tiny VITS voice of the real architecture, built at test time.

No MMS-TTS weights can be downloaded here, so the tests build one the way the hub ships
``facebook/mms-tts-eng``: a `VitsModel` (one-layer text encoder, one flow, a two-stage
HiFi-GAN of 16 samples per frame) with random weights from a fixed seed, and a `VitsTokenizer`
over lowercase letters with MMS's settings (characters, blanks between them, no phonemes),
saved with ``save_pretrained`` (config, safetensors, vocab.json, tokenizer config).

Its sound is noise, but its length is exact: the duration predictor is the deterministic one
with its output fixed at log(`FRAMES_PER_TOKEN`), so every token lasts
``ceil(FRAMES_PER_TOKEN / speed)`` frames and `samples_for` says how long any text is.
"""

from __future__ import annotations

import json
import math
import string
from pathlib import Path

FRAMES_PER_TOKEN = 7.4
"""What the duration predictor says for every token, in frames: 8 at speed 1 after VITS's
ceiling, 4 at speed 2, 15 at speed 0.5 (not a whole number at the speeds the tests use, so
float rounding in exp(log(x)) never moves the ceiling)."""
SAMPLES_PER_FRAME = 16
SAMPLING_RATE = 16_000
LANGUAGE = "eng"
ALPHABET = ["_", " ", "'", "-", *string.ascii_lowercase]
"""The vocabulary, in id order: ``_`` (id 0) is the blank put between characters."""


def build_tiny_vits(directory: Path, *, seed: int = 0) -> Path:
    """Write the tiny voice into ``directory`` (created); return it."""
    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocabulary = directory / "vocab.json"
    vocabulary.write_text(json.dumps({c: i for i, c in enumerate(ALPHABET)}), encoding="utf-8")
    tokenizer = VitsTokenizer(
        str(vocabulary),
        pad_token="_",
        unk_token="_",
        language=LANGUAGE,
        add_blank=True,
        normalize=True,
        phonemize=False,
        is_uroman=False,
    )
    torch.manual_seed(seed)
    config = VitsConfig(
        vocab_size=len(ALPHABET),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        window_size=2,
        ffn_dim=32,
        flow_size=16,
        spectrogram_bins=17,
        use_stochastic_duration_prediction=False,
        upsample_initial_channel=16,
        upsample_rates=[4, 4],
        upsample_kernel_sizes=[8, 8],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1]],
        duration_predictor_filter_channels=16,
        prior_encoder_num_flows=1,
        prior_encoder_num_wavenet_layers=1,
        posterior_encoder_num_wavenet_layers=1,
        sampling_rate=SAMPLING_RATE,
        pad_token_id=0,
    )
    model = VitsModel(config).eval()
    with torch.no_grad():
        model.duration_predictor.proj.weight.zero_()
        model.duration_predictor.proj.bias.fill_(math.log(FRAMES_PER_TOKEN))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def tokens_of(text: str) -> int:
    """Tokens the tokenizer makes of one sentence: its known characters (lowercased, the
    others dropped) with a blank before, between and after them."""
    kept = "".join(c for c in text.lower() if c in ALPHABET).strip()
    return 2 * len(kept) + 1


def samples_for(sentences: list[str], speed: float = 1.0, rate: int = 24_000) -> int:
    """Samples of the voice's audio for these sentences at ``rate`` (one forward pass each)."""
    frames = math.ceil(FRAMES_PER_TOKEN / speed)
    return sum(
        round(tokens_of(s) * frames * SAMPLES_PER_FRAME * rate / SAMPLING_RATE) for s in sentences
    )
