"""A tiny vision-language model of a real architecture, built at test time.

No vision-language weights can be downloaded here, so the tests build one: Idefics3 (the
architecture of SmolVLM) with a one-layer vision tower, a two-layer Llama text model and a
byte-level BPE tokenizer trained on a few sentences, randomly initialised from a fixed seed
and saved with ``save_pretrained`` the way the hub ships SmolVLM (config, safetensors,
tokenizer, processor, chat template). ``AutoModelForImageTextToText`` and
``AutoProcessor`` load it. Its answers are noise, but deterministic noise that depends on
the image: that is what the tests check.

A 64x64 image (no splitting) becomes ``<fake_token_around_image><global-img>``, then
`IMAGE_SEQ_LEN` ``<image>`` tokens (16 patches of 16 px, merged 2x2 by the pixel shuffle),
then ``<fake_token_around_image>``: `TOKENS_PER_IMAGE` prompt tokens in all.
"""

from __future__ import annotations

import io
from pathlib import Path

IMAGE_SIZE = 64
PATCH_SIZE = 16
SCALE_FACTOR = 2
IMAGE_SEQ_LEN = (IMAGE_SIZE // PATCH_SIZE) ** 2 // SCALE_FACTOR**2
TOKENS_PER_IMAGE = IMAGE_SEQ_LEN + 3

# SmolVLM's chat template (HuggingFaceTB/SmolVLM-256M-Instruct), unchanged.
SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
    "<global-img>",
    *(f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)),
]
CORPUS = [
    "User: What is in this image? Describe the picture in one sentence.",
    "Assistant: A red square, a blue circle, a cat and a dog on green grass.",
]


def build_tiny_vlm(directory: Path, *, seed: int = 0) -> Path:
    """Write the tiny model into ``directory`` (created); return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
        PreTrainedTokenizerFast,
    )

    tokenizer_model = Tokenizer(models.BPE())
    tokenizer_model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer_model.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer_model.train_from_iterator(CORPUS * 10, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer_model,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[2:]})
    torch.manual_seed(seed)
    config = Idefics3Config(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 512,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "tie_word_embeddings": False,
        },
        scale_factor=SCALE_FACTOR,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Idefics3ForConditionalGeneration(config).eval()
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False,
        size={"longest_edge": IMAGE_SIZE},
        max_image_size={"longest_edge": IMAGE_SIZE},
    )
    processor = Idefics3Processor(
        image_processor, tokenizer, image_seq_len=IMAGE_SEQ_LEN, chat_template=SMOLVLM_TEMPLATE
    )
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    """A PNG of one colour, with a square of the inverse colour (so resizing keeps detail)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, color)
    inverse = tuple(255 - c for c in color)
    ImageDraw.Draw(image).rectangle((4, 4, size[0] // 2, size[1] // 2), fill=inverse)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
